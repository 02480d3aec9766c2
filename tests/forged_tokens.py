"""Tokens the services must refuse, made against a given settings' keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from events.envelope import Role
from services import auth
from services.settings import Settings


def hand_signed(header: dict[str, str], claims: dict[str, object], secret: bytes) -> str:
    """An HMAC-SHA256 JWS made without PyJWT, which refuses to make these confused ones."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = f"{part(json.dumps(header).encode())}.{part(json.dumps(claims).encode())}"
    return f"{signing}.{part(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}"


def public_pem() -> bytes:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(
    ).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def forgeries(settings: Settings, scope: list[str]) -> dict[str, str]:
    """Each way a token can be stale or forged, by name; every one must answer 401."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "w-forged", "role": Role.worker.value, "scope": scope,
        "iss": settings.token_issuer, "aud": settings.token_audience, "iat": now,
        "exp": now + 600}
    kid = auth.signing_kid(settings)
    secret = auth.key_set(settings.key_ring)[kid].key

    def signed(**changes: object) -> str:
        return jwt.encode({**claims, **changes}, secret, algorithm="HS256",
                          headers={"kid": kid})

    return {
        "expired": auth.issue(settings, sub="w-forged", role=Role.worker, scope=scope,
                              ttl_seconds=-10),
        "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": kid}),
        "wrong audience": signed(aud="elsewhere"),
        "wrong issuer": signed(iss="elsewhere"),
        "no kid": jwt.encode(claims, secret, algorithm="HS256"),
        "another algorithm": jwt.encode(claims, secret, algorithm="HS512", headers={"kid": kid}),
        # the secret's HMAC under an RS256 header: a verifier trusting the header is fooled
        "RS256 header": hand_signed({"alg": "RS256", "kid": kid}, claims, secret),
        "HS256 over a public key": hand_signed({"alg": "HS256", "kid": kid}, claims,
                                               public_pem()),
        "retired key": jwt.encode(claims, "Rk3-retired-Vx8Qm2Lp7Nz4Ht9Jc5Wb1" * 2,
                                  algorithm="HS256", headers={"kid": "retired"}),
    }
