"""Secrets are hidden from any text that may be shown, in every form they may be echoed in."""

from __future__ import annotations

import urllib.parse

import orjson
import pytest

from vbot_cdr._redact import HIDDEN, redact


def forms_of(secret: str) -> list[str]:
    """The secret as sent, JSON-escaped, and URL-encoded both ways."""
    return [
        secret,
        orjson.dumps(secret).decode()[1:-1],
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret),
    ]


@pytest.mark.parametrize(
    "secret",
    ["plain-S3CRET", 'quo"te/S3CRET\\x', "khóa-bí-mật S3CRET+&="],
    ids=["plain", "json-escaped", "url-encoded"],
)
def test_every_form_of_a_secret_is_hidden(secret: str) -> None:
    """A secret is blanked out as sent, JSON-escaped and URL-encoded (quote and quote_plus)."""
    forms = forms_of(secret)
    shown = redact(" | ".join(forms), [secret])
    assert shown == " | ".join([HIDDEN] * len(forms))


def test_empty_secrets_are_ignored_and_other_text_kept() -> None:
    """An empty secret hides nothing; text around a secret is kept as it was."""
    assert redact("token=abc; rest", ["", "abc"]) == f"token={HIDDEN}; rest"
    assert redact("nothing secret", [""]) == "nothing secret"


def test_several_secrets_are_all_hidden() -> None:
    """Each of several secrets is hidden, wherever and however often it appears."""
    shown = redact("user pw1 then rt-2 and pw1 again", ("pw1", "rt-2"))
    assert shown == f"user {HIDDEN} then {HIDDEN} and {HIDDEN} again"


def test_a_form_holding_another_is_hidden_whole() -> None:
    """Where one form contains another (``5%`` URL-encoded is ``5%25``), the longer is hidden
    whole, leaving no piece of it behind."""
    assert urllib.parse.quote("5%") == "5%25"
    assert redact("key=5%25 and 5%", ["5%"]) == f"key={HIDDEN} and {HIDDEN}"
