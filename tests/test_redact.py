"""Masking credentials out of text: what is a URL's user:password@ and what is not."""

from __future__ import annotations

import pytest

from incident_cli.redact import mask_userinfo


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("https://u:p4ss@h/x", "https://***@h/x"),
        ("//u:p4ss@h/x", "//***@h/x"),
        ("source at u:p4ss@h:9093 down", "source at ***@h:9093 down"),
        ("[https://u:p@h, http://v:q@i]", "[https://***@h, http://***@i]"),
    ],
)
def test_a_password_in_a_url_is_masked(text: str, masked: str) -> None:
    assert mask_userinfo(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        # The refusal of an unsafe label value names the characters it allows.
        "contains ';', which is not in [A-Za-z0-9_.:@/+=-]",
        "mail to ops@example.com failed",
        "user u:@h has no password",
    ],
)
def test_text_without_a_password_is_left_as_it_is(text: str) -> None:
    assert mask_userinfo(text) == text
