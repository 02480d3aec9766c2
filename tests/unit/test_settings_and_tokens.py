"""Settings refuse weak secrets; tokens pin their algorithm; the producer refuses weak acks."""

from __future__ import annotations

import time

import jwt
import pytest
from pydantic import ValidationError

from events.envelope import Role
from events.log import durable_producer_config
from services import auth
from services.errors import Unauthenticated
from services.settings import Settings

SETTINGS = Settings(token_secret="q7Hk2-vR9xLw4Zp8nB3mT6yC1sD5fG0jK" * 2)


@pytest.mark.parametrize("secret", ["short", "a" * 40, "secret" * 6])
def test_settings_refuse_a_default_or_weak_token_secret(secret: str) -> None:
    with pytest.raises(ValidationError):
        Settings(token_secret=secret)


def test_settings_come_from_gridgov_environment_variables() -> None:
    settings = Settings.from_env({"GRIDGOV_TOKEN_SECRET": SETTINGS.token_secret,
                                  "GRIDGOV_PARTITIONS": "6", "OTHER": "x"})
    assert settings.partitions == 6
    assert Settings.from_env(settings.as_env()) == settings


def test_a_token_round_trips_its_role_and_scope() -> None:
    token = auth.issue(SETTINGS, sub="w-1", role=Role.worker, scope=["430382/101/003/07"])
    principal = auth.verify(SETTINGS, token)
    assert (principal.sub, principal.role, principal.scope) == \
        ("w-1", Role.worker, ("430382/101/003/07",))


def test_a_token_signed_with_another_algorithm_is_refused() -> None:
    claims = {"sub": "w-1", "role": "worker", "scope": ["*"], "iss": "gridgov", "aud": "gridgov",
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    token = jwt.encode(claims, SETTINGS.token_secret, algorithm="HS512")
    with pytest.raises(Unauthenticated):
        auth.verify(SETTINGS, token)


def test_a_token_with_an_unknown_role_is_refused() -> None:
    claims = {"sub": "w-1", "role": "mayor", "scope": ["*"], "iss": "gridgov", "aud": "gridgov",
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    with pytest.raises(Unauthenticated, match="role"):
        auth.verify(SETTINGS, jwt.encode(claims, SETTINGS.token_secret, algorithm="HS256"))


@pytest.mark.parametrize("weak", [{"acks": 1}, {"acks": 0}, {"enable_idempotence": False}])
def test_the_producer_refuses_anything_short_of_acks_all_with_idempotence(weak: dict) -> None:
    with pytest.raises(ValueError, match="acks=all"):
        durable_producer_config("127.0.0.1:9092", **weak)
