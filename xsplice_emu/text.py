"""Text from outside (payload names above all) made safe to show: `printable`.

A name is any bytes (Xen's rule), carried as a str in which bytes that are
not UTF-8 stand as surrogate escapes. Shown as it is, it could end a line,
move the cursor, or fail to encode at all; `printable` writes every such
character as an escape, so what is shown is one line of plain text that
says what was there.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` with every character that is not printable escaped: an undecodable byte as `\\xNN` (that byte),
    any other (a control, a line break, a format character) as Python writes it in a string literal."""
    if text.isprintable():
        return text
    return "".join(map(_printable, text))


def _printable(char: str) -> str:
    if char.isprintable():
        return char
    if 0xDC80 <= ord(char) <= 0xDCFF:  # surrogateescape's stand-in for a byte
        return f"\\x{ord(char) - 0xDC00:02x}"
    return repr(char)[1:-1]
