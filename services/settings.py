"""One settings object, read from GRIDGOV_* environment variables and passed in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    home: Path = Path(".gridgov")
    kafka_bootstrap: str | None = None  # set: use that cluster, start no embedded broker
    database_url: str | None = None  # set: use that PostgreSQL, start no embedded one
    # a secured cluster (deploy/): this service's own SASL/SCRAM principal, TLS in production
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = \
        "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_username: str | None = None
    kafka_password: str | None = Field(default=None, repr=False)
    kafka_ca_file: Path | None = None  # the cluster's CA certificate (SSL, SASL_SSL)
    partitions: int = Field(default=12, ge=1, le=1000)
    token_secret: str = Field(min_length=32, repr=False)
    token_issuer: str = "gridgov"  # noqa: S105 - a name, not a secret
    token_audience: str = "gridgov"  # noqa: S105 - a name, not a secret
    host: str = "127.0.0.1"
    ingest_port: int = 8000
    query_port: int = 8001
    projector_metrics_port: int = 9101  # the archive's; five_have +1, the decider +2,
    #                                     points_ledger +3, the points decider +4
    broker_port: int = 9092
    max_body_bytes: int = 64 * 1024
    max_batch_items: int = 500
    max_batch_bytes: int = 4 * 1024 * 1024
    log_level: str = "info"
    sla_file: Path | None = None  # SLA rules and working calendar; default projections/sla.toml
    points_rules_file: Path | None = None  # 积分 rules; default projections/points_rules.toml
    command_wait_seconds: float = 5.0  # how long POST /v1/commands waits before answering 202
    read_wait_seconds: float = 5.0  # how long a read with min_offsets waits before a 409
    min_cases: int = 5  # a rate over fewer cases is shown, not ranked

    @field_validator("token_secret")
    @classmethod
    def _not_a_default(cls, value: str) -> str:
        if value.lower() in {"changeme" * 4, "secret" * 6} or len(set(value)) < 8:
            raise ValueError("GRIDGOV_TOKEN_SECRET must be a real random secret")
        return value

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            name: env[f"GRIDGOV_{name.upper()}"]
            for name in cls.model_fields
            if f"GRIDGOV_{name.upper()}" in env
        }
        values.update(overrides)
        return cls.model_validate(values)

    def as_env(self) -> dict[str, str]:
        """The same settings as environment variables, for child processes."""
        return {
            f"GRIDGOV_{name.upper()}": str(value)
            for name, value in self.model_dump().items()
            if value is not None
        }
