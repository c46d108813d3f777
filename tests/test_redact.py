"""`redact`: a secret is hidden in every form a server or a URL may show it in."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import orjson
import pytest

from vbot_cdr._redact import HIDDEN, redact

SECRET = 'p@ss wörd/"&+x\\'


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        orjson.dumps(SECRET).decode()[1:-1],  # inside a JSON string
        quote(SECRET),  # in a URL path
        quote_plus(SECRET),  # in a query string or a form body
    ],
    ids=["as-sent", "json-escaped", "url-quoted", "form-quoted"],
)
def test_each_form_of_a_secret_is_hidden(form: str) -> None:
    assert form != HIDDEN
    assert redact(f"before {form} after", [SECRET]) == f"before {HIDDEN} after"


def test_every_secret_and_every_occurrence_is_hidden() -> None:
    text = "token=abc123 key=k-9 again abc123"
    assert redact(text, ["abc123", "k-9"]) == f"token={HIDDEN} key={HIDDEN} again {HIDDEN}"


def test_the_longest_form_goes_first_so_no_part_of_a_secret_is_left() -> None:
    """A secret whose JSON form contains the plain one leaves no backslash or tail behind."""
    secret = 'a"b'
    json_form = orjson.dumps(secret).decode()[1:-1]  # a\"b
    assert redact(f"[{json_form}]", [secret]) == f"[{HIDDEN}]"


def test_empty_secrets_are_ignored_and_text_without_secrets_is_unchanged() -> None:
    text = "nothing to hide here"
    assert redact(text, ["", "absent"]) == text
    assert redact(text, []) == text
