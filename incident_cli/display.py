"""Untrusted text made safe to show: the one function every human view passes label text through.

Labels, annotations, titles, what a source or a command said and what a channel answered all
come from outside. Printed raw, an escape sequence in them clears the screen, sets the window
title, plants an OSC 8 link or an OSC 52 clipboard write, or hides text; a line break forges a
line of output; a bidi override makes text read backwards. `printable` turns each of those into
something visible and inert. JSON output keeps the exact text (see `json_text`).
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"  # shows that something was there, without doing what it would do
LINE_BREAK_MARK = "⏎"

_LINE_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
# C0 controls (ESC, BEL, BS, ...) but tab and the line breaks handled above; DEL; C1 controls
# (CSI, OSC, ST... as single code points); the bidi embeddings, overrides, isolates and marks
# (they reorder what is shown: "Trojan source"); lone surrogates (they cannot be encoded).
# Other format characters (the zero-width joiner inside emoji, soft hyphens) stay: they change
# how text looks, not where it goes or what the terminal does.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f"
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def printable(text: object, *, multiline: bool = False, limit: int | None = None) -> str:
    """`text` with nothing a terminal, pager or editor would act on.

    Control, C1, bidi-control and lone surrogate characters become U+FFFD. A line break (CR,
    LF, CRLF, NEL, U+2028/2029) becomes `⏎`, or stays a newline when `multiline` (a field shown
    over several lines); a tab becomes a space. Text longer than `limit` is cut and ends in `…`.
    """
    text = str(text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    if text.isprintable():  # the common case: nothing to replace (a space is printable)
        return text
    text = _LINE_BREAKS.sub("\n" if multiline else LINE_BREAK_MARK, text)
    return _UNSAFE.sub(REPLACEMENT, text.replace("\t", " "))


def safe_markup(text: object, *, multiline: bool = False, limit: int | None = None) -> str:
    """`printable` text for a rich markup string: `[red]` or `[link=...]` in it stay literal."""
    from rich.markup import escape

    return escape(printable(text, multiline=multiline, limit=limit))


# Characters json.dumps(ensure_ascii=False) leaves raw although a terminal may act on them.
_JSON_RAW = re.compile(
    "[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ud800-\udfff]"
)


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """JSON for stdout: the exact text, with every control character written as an escape.

    json.dumps already escapes C0 controls; DEL, C1, bidi controls and line separators would
    pass raw with ensure_ascii=False. They can only occur inside strings, so `\\uXXXX` there
    is the same JSON value.
    """
    import json

    text = json.dumps(data, ensure_ascii=False, indent=indent)
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
