"""Masking secrets out of any text before it is printed, logged or stored."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and its URL-encoded form) replaced by ***."""
    from urllib.parse import quote

    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
        encoded = quote(secret, safe="")
        if encoded != secret:
            text = text.replace(encoded, MASK)
    return text


# Up to the last `@` of the URL: a password may hold `/`, `?` or `#` when not percent-encoded.
# With a scheme (`https://u:p@h`), scheme-relative (`//u:p@h`), or bare (`u:p@h`, at the start
# of a word: a user, a colon, a password that is not empty; so an e-mail address, or a
# character class such as `[A-Za-z0-9_.:@/]` in a message, stays as it is). An opening
# bracket before it is not part of the user: `[https://u:p@h, …]` keeps its scheme.
_USERINFO = re.compile(
    r"(?:(\b[A-Za-z][A-Za-z0-9+.-]*://|(?<![\w:/])//)[^\s'\"<>@]*"
    r"|(?<![^\s'\"(\[{<=,])[^\s'\"<>@:/(\[{]+:[^\s'\"<>@]+)@"
)


def mask_userinfo(text: str) -> str:
    """`text` with the user:password@ part of every URL in it replaced by ***@."""
    return _USERINFO.sub(rf"\1{MASK}@", text) if "@" in text else text


def mask_url(url: str) -> str:
    """A URL with its password (if any) replaced by ***, its user and host kept: how a
    postgresql:// state DB is named in output."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:
        return mask_userinfo(url)
    if password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:{MASK}@{host}" + (f":{port}" if port else "")
    return urlunsplit(parts._replace(netloc=netloc))
