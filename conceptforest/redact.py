"""Secrets kept out of messages: API keys and tokens in text, credentials in URIs (a light module: only ``re``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"
_VALUE = r"[^\s\"',;}\]]"  # a token runs to the next blank, quote, comma, semicolon or closing bracket
_NOT_DONE = r"(?!\[redacted\])"  # a mark already written is never redacted again
_TOKEN_PATTERNS = (
    re.compile(rf"(?i)(\bbearer\s+){_NOT_DONE}{_VALUE}+"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),
    # api_key=..., "api-key": "...": a value with a digit, capital or sign (so the words of a hint stay)
    re.compile(rf"(?i)(\bapi[-_ ]?key[\"']?\s*[:=]\s*[\"']?){_NOT_DONE}(?={_VALUE}*[^a-z\s\"',;}}\]]){_VALUE}+"),
)
# a query parameter whose name says it carries a credential (?secret_key=..., &X-Amz-Signature=..., &token=...)
_CREDENTIAL_QUERY = re.compile(
    r"(?i)([?&;][^=&#\s'\"]*(?:secret|key|token|password|passwd|pwd|credential|signature|sig|auth|session)"
    r"[^=&#\s'\"]*=)[^&#\s'\"]+"
)
# up to the last "@" of the authority: an unencoded "/" in a pasted secret key must not end the match early
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^@?#\s'\"]*@")


def redact_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with the given secrets and anything that looks like a token (``Bearer ...``, ``sk-...``,
    ``api_key=...``) replaced by ``[redacted]``; redacting twice changes nothing."""
    for secret in secrets:
        if secret and len(secret) >= 8:  # shorter ones are placeholders, not secrets
            text = text.replace(secret, REDACTED)
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


def redact_uri_text(text: str) -> str:
    """``text`` (a URI, or a message quoting one) with a URI's user and password (``s3://KEY:SECRET@bucket``) and
    credential-like query values (``?secret_key=...``) hidden as ``***``."""
    return _CREDENTIAL_QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", text))
