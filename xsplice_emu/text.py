"""Text from outside (payload names above all) made safe to show: `printable`.

A name is any bytes (Xen's rule), carried as a str in which bytes that are
not UTF-8 stand as surrogate escapes. Shown as it is, it could end a line,
move the cursor, or fail to encode at all; `printable` writes every such
character as the `\\xNN` escapes of its bytes, so what is shown is one line
of plain text that says which bytes were there.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` with every character that is not printable (controls, line breaks, format characters, undecodable
    bytes) written as `\\xNN` escapes of its UTF-8 bytes (a lone surrogate of no byte as `\\uNNNN`)."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    try:
        data = char.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return f"\\u{ord(char):04x}"
    return "".join(f"\\x{byte:02x}" for byte in data)
