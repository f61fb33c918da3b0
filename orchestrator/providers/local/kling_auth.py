"""Kling direct's authentication, as the kling dialect checks it: a short-lived HS256 JWT per request.

The client signs ``{"iss": <access key>, "exp": now + 1800, "nbf": now - 5}`` with its secret key and sends it as
``Authorization: Bearer <jwt>`` (docs/wire.md, "Kling direct"). The simulator finds the secret by the token's
``iss``, checks the signature and both times, and maps each failure onto Kling's business codes: 1000 the token is
not ours (bad signature, unknown issuer), 1001 no header, 1002 a header or token that cannot be read, 1003 not yet
valid, 1004 expired.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import jwt

ALGORITHM = "HS256"
TOKEN_LIFETIME = 1800  # seconds, as Kling's own examples sign them


class AuthFailure(Exception):
    """A request Kling would answer HTTP 401 with this business code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def sign_token(access_key: str, secret_key: str, *, now: float | None = None, lifetime: int = TOKEN_LIFETIME) -> str:
    """A token as a Kling client signs it (for tests and examples; the simulator itself only verifies)."""
    issued = int(time.time() if now is None else now)
    claims = {"iss": access_key, "exp": issued + lifetime, "nbf": issued - 5}
    return jwt.encode(claims, secret_key, algorithm=ALGORITHM, headers={"typ": "JWT"})


def bearer_token(header: str | None, *, what: str = "jwt") -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ``AuthFailure`` 1001/1002."""
    if header is None:
        raise AuthFailure(1001, "Authorization header is missing")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthFailure(1002, f"Authorization header is invalid: expected 'Bearer <{what}>'")
    return token


def verify_token(token: str, keys: Mapping[str, str]) -> str:
    """The access key that signed ``token``, after checking issuer, signature, ``exp`` and ``nbf``."""
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.DecodeError:
        raise AuthFailure(1002, "Authorization header is invalid: the token is not a JWT") from None
    if not isinstance(issuer, str) or issuer not in keys:
        raise AuthFailure(1000, "authentication failed: unknown access key (iss)")
    try:
        jwt.decode(token, keys[issuer], algorithms=[ALGORITHM], options={"require": ["iss", "exp"]})
    except jwt.ExpiredSignatureError:
        raise AuthFailure(1004, "authentication failed: the token has expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthFailure(1003, "authentication failed: the token is not yet valid (nbf)") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthFailure(1002, f"Authorization header is invalid: the token has no {exc.claim!r} claim") from None
    except jwt.InvalidTokenError:
        raise AuthFailure(1000, "authentication failed: the token's signature does not match") from None
    return issuer
