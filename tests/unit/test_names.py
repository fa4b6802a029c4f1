"""File names are bytes: the display rule (goexd/names.py) and the journal's lossless paths."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from goexd.domain import codec
from goexd.domain.models import ActionState
from goexd.domain.names import display_path, utf8_text
from goexd.domain.snapshots import ChangeKind, ChangeSet, FileChange
from goexd.engine.journal import Journal
from tests.unit.test_journal import _action, _session

# name as on disk -> how goexd shows it (written out by hand: this is the rule).
SHOWN = [
    (b"plain.txt", "plain.txt"),
    (b"sp ace/x", "sp ace/x"),
    ("ünï/日本.txt".encode(), "ünï/日本.txt"),  # printable UTF-8 as it is
    ("😀".encode(), "😀"),
    (b"bad\xff", "bad\\xff"),  # a byte that is not UTF-8
    (b"d\xfe/s\x80/f\xff", "d\\xfe/s\\x80/f\\xff"),  # in directories that are not UTF-8
    (b"\xc3\x28", "\\xc3("),  # a lead byte without its continuation
    (b"\xe2\x82", "\\xe2\\x82"),  # a sequence cut short
    (b"\xed\xa0\x80", "\\xed\\xa0\\x80"),  # an encoded surrogate (invalid in UTF-8)
    (b"\xc0\xaf", "\\xc0\\xaf"),  # an overlong "/"
    (b"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"),  # past U+10FFFF
    (b"nl\nname", "nl\\nname"),
    (b"t\tr\r", "t\\tr\\r"),
    (b"back\\slash", "back\\\\slash"),  # a backslash is doubled, so no name looks like an escape
    (b"bad\\xff", "bad\\\\xff"),  # ... of another name
    (b"\x1b[31mred", "\\x1b[31mred"),  # no terminal escape sequence reaches a reviewer's terminal
    (b"del\x7f", "del\\x7f"),
    ("nel\u0085".encode(), "nel\\u0085"),  # a C1 control (valid UTF-8): a character, not the byte \x85
    (b"nel\x85", "nel\\x85"),  # the byte 0x85 alone
    ("rtl\u202egnp.exe".encode(), "rtl\\u202egnp.exe"),  # a bidi override (format character)
    ("no\u00a0break".encode(), "no\\u00a0break"),
    ("tag\U000e0001".encode(), "tag\\U000e0001"),
    (b"\xff" * 255, "\\xff" * 255),  # the longest name Linux takes
]


@pytest.mark.parametrize(("raw", "shown"), SHOWN, ids=[repr(r)[2:30] for r, _ in SHOWN])
def test_display_rule(raw: bytes, shown: str) -> None:
    assert display_path(raw) == shown
    assert display_path(os.fsdecode(raw)) == shown  # goexd's str paths (surrogateescape) show the same


_ESCAPE = re.compile(r"\\(?:(\\)|([tnr])|x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8}))")


def parse_display(text: str) -> bytes:
    """A reference inverse of display_path: proves two names never share a display form."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += text[pos : m.start()].encode()
        backslash, short, byte, u4, u8 = m.groups()
        if backslash:
            out += b"\\"
        elif short:
            out += {"t": b"\t", "n": b"\n", "r": b"\r"}[short]
        elif byte:
            out.append(int(byte, 16))  # < 80: an ASCII control; >= 80: a byte that is not UTF-8
        else:
            out += chr(int(u4 or u8, 16)).encode()
        pos = m.end()
    assert "\\" not in text[pos:]
    return bytes(out + text[pos:].encode())


@given(st.binary(max_size=64) | st.text(max_size=32).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_display_is_one_printable_line_and_reversible(raw: bytes) -> None:
    shown = display_path(raw)
    assert shown.isprintable() or shown == ""  # no newline, no control, no surrogate
    shown.encode("utf-8")  # fits a protobuf string, SQLite TEXT, a JSON document
    assert parse_display(shown) == raw


def test_a_message_quoting_a_name_becomes_utf8() -> None:
    assert utf8_text("cannot read bad\udcff: no") == "cannot read bad\\xff: no"
    assert utf8_text("ünï \ud800") == "ünï \\ud800"  # a surrogate no name decodes to
    assert utf8_text("plain") == "plain"


def _journal_with_action(path: Path) -> Journal:
    journal = Journal(path)
    journal.insert_session(_session("s1", "/w"))
    journal.insert_action(_action("a1", "s1"))
    return journal


def test_journal_keeps_change_set_paths_exactly_and_notes_escaped(tmp_path: Path) -> None:
    names = [os.fsdecode(raw) for raw, _ in SHOWN]
    changes = ChangeSet(
        changes=tuple(FileChange(ChangeKind.ADDED, n, 0, 0o100644) for n in names),
        added=len(names),
        modified=0,
        deleted=0,
        truncated=False,
        warnings=("removed the set-user-ID bit of bad\udcff",),
    )
    journal = _journal_with_action(tmp_path / "j.sqlite3")
    journal.transition(
        "a1",
        ActionState.PROPOSED,
        ActionState.PREPARING,
        note="restore failed at d\udcfe/f",
        error="cannot read bad\udcff",
        changes=codec.dumps(codec.changes_to_json(changes)),
    )
    journal.close()

    reopened = Journal(tmp_path / "j.sqlite3")  # what a restarted goexd reads
    got = reopened.get_action("a1")
    assert got is not None and got.changes is not None
    assert [os.fsencode(c.path) for c in got.changes.changes] == [raw for raw, _ in SHOWN]
    assert got.changes.warnings == changes.warnings
    assert got.error == "cannot read bad\\xff"
    assert reopened.transitions("a1")[-1][3] == "restore failed at d\\xfe/f"
