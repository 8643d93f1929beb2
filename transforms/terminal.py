"""Text from data, a stats.json or the Hub, made safe to print: control characters escaped.

A split name, a dead-letter reason or a Hub error message is not poet's text: an
ESC sequence in it would set the terminal's title or clear its screen. Every
control character (C0, DEL, C1) is printed as its Python escape (``\\x1b``), so
the line shows what the data holds and does nothing to the terminal.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every control character escaped; with ``lines``, its line breaks are kept."""
    pattern = _CONTROL_BUT_LINES if lines else _CONTROL
    return pattern.sub(lambda m: repr(m.group())[1:-1], text)
