"""File names are bytes: how goexd carries them and how it shows them.

Inside goexd a workspace path is a `str` as `os.fsdecode` gives it (surrogateescape: every
byte that is not part of valid UTF-8 becomes a lone surrogate U+DC80..U+DCFF), which
`os.fsencode` turns back into the exact bytes. That string cannot go where UTF-8 text
goes (protobuf strings, SQLite TEXT, JSON for an LLM), so the edges convert:

- the API carries the exact bytes (`FileChange.path_bytes`) beside a display form;
- the journal keeps paths in JSON with `\\uDCxx` escapes (codec.dumps, ensure_ascii),
  which `json.loads` turns back into the same surrogates: lossless;
- people see `display_path(path)`: one escaping rule for the CLI, error messages and
  journal notes, modelled on `ls -b` and git's quoted paths, but keeping printable
  UTF-8 as it is:

      \\\\        a backslash
      \\t \\n \\r  tab, newline, carriage return
      \\xHH      a byte that is not part of valid UTF-8 (HH >= 80), or another ASCII
                control character or DEL (HH < 80)
      \\uHHHH    a character that is not printable (str.isprintable: C1 controls,
      \\UHHHHHHHH format characters such as U+202E, separators other than " ", ...)

  Everything else is shown as it is. The rule is injective (two names never look the
  same), a displayed name is one line of printable text (no terminal escape sequences),
  and a printable UTF-8 name without a backslash is shown unchanged.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence

# With a UTF-8 file-system encoding (every Linux locale since Python 3.7 but a legacy
# 8-bit one), a printable str holds no surrogate and encodes to the same characters.
_FS_UTF8 = sys.getfilesystemencoding().lower().replace("-", "") == "utf8"
_SHORT = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def display_path(path: str | bytes) -> str:
    """The display form of a file name or relative path (see the module's rule)."""
    if isinstance(path, bytes):
        raw = path
    else:
        if _FS_UTF8 and path.isprintable() and "\\" not in path:
            return path  # the common case, and cheap: most names need nothing
        try:
            raw = os.fsencode(path)
        except UnicodeEncodeError:  # a surrogate no file name decodes to: shown as \uHHHH
            return "".join(_escape_char(c) for c in path)
    text = raw.decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape_char(c) for c in text)


def display_paths(paths: Sequence[str], suffix: str = "", limit: int = 10) -> str:
    """Relative paths for a message: display forms ("." for the root), the first `limit`, then a count."""
    shown = ", ".join(display_path(p) + suffix if p else "." for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _escape_char(c: str) -> str:
    if c in _SHORT:
        return _SHORT[c]
    if c.isprintable():
        return c
    code = ord(c)
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, from surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def utf8_text(text: str) -> str:
    """`text` (a message that may quote paths) as valid UTF-8: each lone surrogate (an
    undecodable byte of a name) becomes `\\xHH` as in display_path; the rest is kept.
    For the edges that need UTF-8 (protobuf strings, SQLite TEXT) when a message was
    written without display_path."""
    if text.isascii():
        return text
    return _LONE_SURROGATE.sub(_escape_surrogate, text)


def _escape_surrogate(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"
