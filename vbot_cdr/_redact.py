"""Hiding secrets in text that may be shown: error messages, log lines, run summaries."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import orjson

__all__ = ["HIDDEN", "redact"]

#: What stands where a secret was.
HIDDEN = "<hidden>"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets``, as sent, JSON-escaped or URL-encoded, replaced by
    ``<hidden>``; empty secrets are ignored.

    Every server body an error keeps or quotes, and every line the CLI writes, goes through here
    first, so a server that echoes a credential back cannot make it visible.
    """
    for secret in filter(None, secrets):
        forms = {secret, orjson.dumps(secret).decode()[1:-1], quote(secret), quote_plus(secret)}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, HIDDEN)
    return text
