"""Upload tokens: proof that an object was uploaded through POST /v1/uploads for one device.

A token is an HMAC-SHA256, under ``upload_token_secret``, of the upload's input_id, its object key
and the ``anonymous_id`` that asked. Invariant: POST /v1/jobs takes an input (and a mask) only with
its token and for the same ``anonymous_id``; every collector shares the secret, and changing it
voids the tokens already handed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from uuid import UUID

import orjson
from pydantic import SecretStr


def upload_token(secret: SecretStr, input_id: UUID, key: str, anonymous_id: str) -> str:
    # A JSON array keeps the three parts apart whatever they contain.
    message = orjson.dumps([str(input_id), key, anonymous_id])
    digest = hmac.new(secret.get_secret_value().encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_matches(secret: SecretStr, token: str, input_id: UUID, key: str, anonymous_id: str) -> bool:
    return hmac.compare_digest(token.encode(), upload_token(secret, input_id, key, anonymous_id).encode())
