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
from tests.forged_tokens import forgeries

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
    token = jwt.encode(claims, SETTINGS.token_secret, algorithm="HS512",
                       headers={"kid": "primary"})
    with pytest.raises(Unauthenticated):
        auth.verify(SETTINGS, token)


def test_a_token_with_an_unknown_role_is_refused() -> None:
    claims = {"sub": "w-1", "role": "mayor", "scope": ["*"], "iss": "gridgov", "aud": "gridgov",
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    with pytest.raises(Unauthenticated, match="role"):
        auth.verify(SETTINGS, jwt.encode(claims, SETTINGS.token_secret, algorithm="HS256",
                                         headers={"kid": "primary"}))


OLD, NEW = "8fK2-qLp9ZxW3vB7nR1tY5uH0jM4cD6sA" * 2, "Tz4-Wm8Qy1Rb5Nc9Xv3Lk7Jh2Gf6Ds0Pa" * 2


def test_an_old_key_is_accepted_until_it_is_retired() -> None:
    before = SETTINGS.model_copy(update={"token_keys": f"2026-10:{OLD}"})
    rotated = SETTINGS.model_copy(update={"token_keys": f"2026-11:{NEW},2026-10:{OLD}"})
    retired = SETTINGS.model_copy(update={"token_keys": f"2026-11:{NEW}"})
    old_token = auth.issue(before, sub="w-1", role=Role.worker, scope=["*"])
    new_token = auth.issue(rotated, sub="w-1", role=Role.worker, scope=["*"])
    assert jwt.get_unverified_header(new_token)["kid"] == "2026-11"  # the first key signs
    assert auth.verify(rotated, old_token).sub == auth.verify(retired, new_token).sub == "w-1"
    with pytest.raises(Unauthenticated, match="retired"):
        auth.verify(retired, old_token)


@pytest.mark.parametrize("ring", ["nokid", f":{NEW}", f"a:{NEW},a:{OLD}", "a:short"])
def test_settings_refuse_a_key_ring_with_unnamed_repeated_or_weak_keys(ring: str) -> None:
    with pytest.raises(ValidationError):
        SETTINGS.model_validate({**SETTINGS.model_dump(), "token_keys": ring})


@pytest.mark.parametrize("forgery", list(forgeries(SETTINGS, ["*"])))
def test_a_forged_or_stale_token_is_refused(forgery: str) -> None:
    with pytest.raises(Unauthenticated):
        auth.verify(SETTINGS, forgeries(SETTINGS, ["*"])[forgery])


@pytest.mark.parametrize("weak", [{"acks": 1}, {"acks": 0}, {"enable_idempotence": False}])
def test_the_producer_refuses_anything_short_of_acks_all_with_idempotence(weak: dict) -> None:
    with pytest.raises(ValueError, match="acks=all"):
        durable_producer_config("127.0.0.1:9092", **weak)


@pytest.mark.parametrize(("option", "value"), [
    ("--sub", "w 0001"), ("--sub", ""), ("--sub", "w/0001"), ("--sub", "w" * 57),
    ("--device", "phone 7f3a"), ("--device", "手机"), ("--place", ""), ("--place", "4" * 101)])
def test_token_issue_with_an_invalid_id_is_a_usage_error_not_a_traceback(
    option: str, value: str,
) -> None:
    from click.testing import CliRunner

    from services.cli import main

    given = {"--sub": "w-0001", "--device": "phone-7f3a", "--place": "430382", option: value}
    result = CliRunner().invoke(main, ["token", "issue", "--role", "worker",
                                       *[a for o, v in given.items() for a in (o, v)]])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def test_token_revoke_with_an_invalid_id_is_a_usage_error() -> None:
    from click.testing import CliRunner

    from services.cli import main

    result = CliRunner().invoke(main, ["token", "revoke", "--device", "phone 7f3a",
                                       "--reason", "手机遗失"])
    assert result.exit_code == 2 and "Invalid value for '--device'" in result.output
