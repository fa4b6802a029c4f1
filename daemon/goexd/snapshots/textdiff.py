"""Unified diffs between two snapshots, for a person reviewing what an action (or they) changed.

Which entries differ, with their exact type, mode and owner, comes from treediff.diff (libgit2's
tree diffs: O(changed paths)). Each changed file's or symlink's text diff is libgit2's as well
(pygit2.Patch.create_from: xdiff, context lines, binary detection), made from the two contents
after the vault's redactor ran over each one whole: a secret is caught even where it spans lines
(a PEM key), which a diff would split into "+" lines no redactor recognises. The header above each
patch is written here, git-style, from the snapshot (exact modes, owners, the blob ids of the real
contents), so a diff of text files applies with `git apply`:

    diff --git a/P b/P
    old mode 100644 / new mode 100755       or "new file mode ...", "deleted file mode ..."
    old owner 1000:1000 / new owner 0:0     goex's own lines (git apply skips them)
    index <old blob id>..<new blob id>
    --- a/P / +++ b/P and the hunks          or "Binary files a/P and b/P differ"

A symlink's content is its target (mode 120000), as in git. A directory has no unified-diff
form: its change is one line, "Directory P/: added, mode 0755". Directories that gain or lose
files are implied by those files, as in the change set.

Caps, each named in a note when it cuts: patch bytes per file and in all (cut at a line end),
entries listed, and what goexd reads: a side over MAX_READ_BYTES, or past READ_BUDGET bytes in
all, is not compared (sizes and blob ids only).
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from goexd.domain.names import display_path
from goexd.domain.snapshots import ChangeKind, SnapshotError
from goexd.snapshots.git_store import DEFAULT_OWNER_KEY
from goexd.snapshots.layout import Owner, decode_owner
from goexd.snapshots.treediff import DIR, FILE, LINK, Entry, MetaReader, SnapshotTrees, diff, has_files_below, load

Redact = Callable[[bytes], bytes]

DEFAULT_FILE_BYTES = 256 * 1024
DEFAULT_TOTAL_BYTES = 4 * 1024 * 1024
DEFAULT_FILES = 1000
DEFAULT_CONTEXT = 3
MAX_READ_BYTES = 16 * 1024 * 1024  # a side larger than this is not read: a diff of it would not be read either
READ_BUDGET = 256 * 1024 * 1024  # what one diff reads in all, whatever its caps on what it returns
_NAMES_SHOWN = 10  # a note lists this many names, then "and N more"


class Content(enum.StrEnum):
    NONE = "none"  # no content changed: mode, owner, a directory
    TEXT = "text"  # compared as text: additions and deletions count lines
    BINARY = "binary"  # compared, binary: sizes and hashes only
    NOT_READ = "not_read"  # not compared (too large, or past the read budget): sizes and blob ids


@dataclass(frozen=True)
class DiffOptions:
    max_file_bytes: int = DEFAULT_FILE_BYTES  # patch bytes per entry
    max_total_bytes: int = DEFAULT_TOTAL_BYTES  # patch bytes in all
    max_files: int = DEFAULT_FILES  # entries listed
    context_lines: int = DEFAULT_CONTEXT
    stat_only: bool = False  # counts only, no patch text


@dataclass(frozen=True)
class Side:
    """One side of a changed entry."""

    mode: int  # full st_mode
    owner: Owner
    size: int = 0  # content bytes: a file's, a symlink target's
    blob_id: str = ""  # git's id of the content (`git hash-object FILE`); "" for a directory
    sha256: str = ""  # of the content, when it was read


@dataclass(frozen=True)
class EntryDiff:
    path: str  # as the snapshot holds it (os.fsdecode of the name's bytes)
    shown: str  # display form (names.display_path), redacted; a directory's ends with "/"
    kind: ChangeKind
    old: Side | None
    new: Side | None
    content: Content
    additions: int = 0
    deletions: int = 0
    patch: bytes = b""  # git-style, redacted, capped
    patch_truncated: bool = False
    note: str = ""


@dataclass(frozen=True)
class SnapshotDiff:
    entries: tuple[EntryDiff, ...]  # sorted by the names' bytes; capped at max_files
    total: int  # changed entries, listed or not
    additions: int  # lines, over the entries compared as text
    deletions: int
    truncated: bool  # a cap left something out: see notes
    notes: tuple[str, ...] = ()


def open_store(git_dir: Path) -> tuple[pygit2.Repository, MetaReader]:
    """A handle of its own on a snapshot store (never the live store's: libgit2 handles are not
    shared between threads), and the store's metadata reader."""
    try:
        repo = pygit2.Repository(str(git_dir))
        owner = decode_owner(str(repo.config[DEFAULT_OWNER_KEY]))
    except (pygit2.GitError, KeyError, ValueError) as e:
        raise SnapshotError(f"cannot read snapshot store {git_dir}: {e}") from e
    return repo, MetaReader(repo, owner)


def diff_snapshots(
    repo: pygit2.Repository, old_id: str, new_id: str, metas: MetaReader, redact: Redact, options: DiffOptions
) -> SnapshotDiff:
    """What differs from snapshot `old_id` to `new_id`, entry by entry (see the module's docstring)."""
    old, new = load(repo, old_id), load(repo, new_id)
    changed = [
        (path, o, n)
        for path, (o, n) in diff(repo, old, new, metas).items()
        if o != n and not _implied(path, o, n, old, new)
    ]
    changed.sort(key=lambda c: os.fsencode(c[0]))
    maker = _Maker(repo, metas.default_owner, redact, options)
    try:
        entries = tuple(maker.entry(path, o, n) for path, o, n in changed[: max(options.max_files, 0)])
    except (KeyError, pygit2.GitError) as e:  # an object the snapshot names is gone
        raise SnapshotError(f"snapshot {new_id} or {old_id} is incomplete: {e}") from e
    notes = maker.notes()
    if len(changed) > len(entries):
        notes.insert(
            0, f"{len(changed) - len(entries)} more changed entries not listed (max_files {options.max_files})"
        )
    return SnapshotDiff(
        entries=entries,
        total=len(changed),
        additions=sum(e.additions for e in entries),
        deletions=sum(e.deletions for e in entries),
        truncated=bool(notes),
        notes=tuple(notes),
    )


def _implied(path: str, o: Entry | None, n: Entry | None, old: SnapshotTrees, new: SnapshotTrees) -> bool:
    """A directory added or removed with files in it: the files say it (as in the change set)."""
    if o is None and n is not None and n.kind == DIR:
        return has_files_below(new.work, path)
    if n is None and o is not None and o.kind == DIR:
        return has_files_below(old.work, path)
    return False


def _kind(o: Entry | None, n: Entry | None) -> ChangeKind:
    if o is None:
        return ChangeKind.ADDED
    if n is None:
        return ChangeKind.DELETED
    if o.kind != n.kind:
        return ChangeKind.TYPE_CHANGED
    return ChangeKind.MODIFIED if o.oid != n.oid else ChangeKind.MODE_CHANGED


@dataclass
class _Part:
    """One block of an entry's patch, and what comparing its content found."""

    text: bytes
    content: Content
    additions: int = 0
    deletions: int = 0
    note: str = ""


@dataclass
class _Maker:
    """Builds the entries in order, spending the caps as it goes and noting what they cut."""

    repo: pygit2.Repository
    default_owner: Owner
    redact: Redact
    options: DiffOptions
    total_left: int = field(init=False)
    read_left: int = READ_BUDGET
    cut: list[str] = field(default_factory=list)  # by the per-file cap
    cut_total: list[str] = field(default_factory=list)  # by the total cap
    not_read: dict[str, list[str]] = field(default_factory=dict)  # reason -> names
    hashes: dict[pygit2.Oid, str] = field(default_factory=dict)  # sha256 of the contents read
    sizes: dict[pygit2.Oid, int] = field(default_factory=dict)  # each content's, looked up once

    def __post_init__(self) -> None:
        self.total_left = max(self.options.max_total_bytes, 0)

    def entry(self, path: str, o: Entry | None, n: Entry | None) -> EntryDiff:
        now = n if n is not None else o
        shown = self._text(display_path(path) + ("/" if now is not None and now.kind == DIR else ""))
        parts = [self._content(path, *files) for files in _content_pairs(o, n)]
        if any(e is not None and e.kind == DIR for e in (o, n)):
            parts.append(_Part(self._dir_line(path, o, n), Content.NONE))
        found = [p.content for p in parts]
        content = next((c for c in (Content.NOT_READ, Content.BINARY, Content.TEXT) if c in found), Content.NONE)
        full = b"".join(p.text for p in parts)
        patch, note = self._capped(shown, full)
        notes = [p.note for p in parts if p.note] + ([note] if note else [])
        return EntryDiff(
            path=path,
            shown=shown,
            kind=_kind(o, n),
            old=self._side(o),
            new=self._side(n),
            content=content,
            additions=sum(p.additions for p in parts),
            deletions=sum(p.deletions for p in parts),
            patch=patch,
            patch_truncated=len(patch) < len(full) and not self.options.stat_only,
            note="; ".join(notes),
        )

    # -- one block -----------------------------------------------------------------

    def _content(self, path: str, o: Entry | None, n: Entry | None) -> _Part:
        """The git-style patch of a file or symlink (o, n: None when absent on that side)."""
        a, b = _quoted(b"a/", path), _quoted(b"b/", path)
        head = [b"diff --git " + a + b" " + b]
        if o is None and n is not None:
            head.append(b"new file mode " + _git_mode(n))
        elif n is None and o is not None:
            head.append(b"deleted file mode " + _git_mode(o))
        elif o is not None and n is not None and _git_mode(o) != _git_mode(n):
            head += [b"old mode " + _git_mode(o), b"new mode " + _git_mode(n)]
        head += self._owner_lines(o, n)
        if o is not None and n is not None and o.oid == n.oid:  # mode or owner only
            return _Part(_lines(head), Content.NONE)
        index = b"index " + _blob_hex(o).encode() + b".." + _blob_hex(n).encode()
        if o is not None and n is not None and _git_mode(o) == _git_mode(n):
            index += b" " + _git_mode(o)
        head.append(index)
        why = self._unread(o, n)
        if why:
            self.not_read.setdefault(why, []).append(self._text(display_path(path)))
            return _Part(_lines(head), Content.NOT_READ, note=f"content not compared: {why}")
        old_data, new_data = self._read(o), self._read(n)
        redacted_old, redacted_new = self.redact(old_data), self.redact(new_data)
        patch = pygit2.Patch.create_from(
            redacted_old if o is not None else None,
            redacted_new if n is not None else None,
            old_as_path="x",
            new_as_path="x",
            context_lines=self.options.context_lines,
        )
        if patch.delta.is_binary:
            head.append(
                b"Binary files " + (a if o else b"/dev/null") + b" and " + (b if n else b"/dev/null") + b" differ"
            )
            return _Part(self.redact(_lines(head)), Content.BINARY)
        if redacted_old == redacted_new:
            # An empty file added or removed has no hunk; other contents differ (their ids do) in secrets only.
            secrets = old_data != new_data
            note = "the contents differ only in redacted secrets" if secrets else ""
            return _Part(self.redact(_lines(head)), Content.TEXT, note=note)
        head += [b"--- " + (a if o else b"/dev/null"), b"+++ " + (b if n else b"/dev/null")]
        data = patch.data
        at = data.find(b"\n@@ ")  # libgit2's own header (of the placeholder path "x") is replaced by ours
        hunks = data[at + 1 :] if at >= 0 else b""
        _, additions, deletions = patch.line_stats
        return _Part(self.redact(_lines(head) + hunks), Content.TEXT, additions, deletions)

    def _unread(self, o: Entry | None, n: Entry | None) -> str:
        """Why the contents are not to be read, or "" (they are: the read budget is spent)."""
        sizes = [self._size(e) for e in (o, n) if e is not None]
        if max(sizes) > MAX_READ_BYTES:
            return f"larger than the {_size_text(MAX_READ_BYTES)} goexd reads of a file for a diff"
        if sum(sizes) > self.read_left:
            return f"the {_size_text(READ_BUDGET)} goexd reads for one diff were used up"
        self.read_left -= sum(sizes)
        return ""

    def _read(self, e: Entry | None) -> bytes:
        """The content of a file or symlink (b"" when absent), its sha256 noted for its side."""
        if e is None or e.oid is None:
            return b""
        blob = self.repo[e.oid]
        if not isinstance(blob, pygit2.Blob):
            raise SnapshotError(f"damaged content object {e.oid}")
        data: bytes = blob.data
        self.hashes[e.oid] = hashlib.sha256(data).hexdigest()
        return data

    def _size(self, e: Entry) -> int:
        if e.oid is None:
            return 0
        size = self.sizes.get(e.oid)
        if size is None:
            size = self.sizes[e.oid] = int(self.repo.odb.read_header(e.oid)[1])
        return size

    def _owner_lines(self, o: Entry | None, n: Entry | None) -> list[bytes]:
        if o is not None and n is not None and o.owner != n.owner:
            return [b"old owner " + _owner(o.owner), b"new owner " + _owner(n.owner)]
        if o is None and n is not None and n.owner != self.default_owner:
            return [b"new owner " + _owner(n.owner)]
        return []

    def _dir_line(self, path: str, o: Entry | None, n: Entry | None) -> bytes:
        o_dir = o if o is not None and o.kind == DIR else None
        n_dir = n if n is not None and n.kind == DIR else None
        if o_dir is None and n_dir is not None:
            what = f"added, mode {n_dir.perm:04o}"
            if n_dir.owner != self.default_owner:
                what += f", owner {n_dir.owner[0]}:{n_dir.owner[1]}"
        elif n_dir is None:
            what = "deleted"
        else:
            changes = []
            if o_dir is not None and o_dir.perm != n_dir.perm:
                changes.append(f"mode {o_dir.perm:04o} -> {n_dir.perm:04o}")
            if o_dir is not None and o_dir.owner != n_dir.owner:
                changes.append(f"owner {o_dir.owner[0]}:{o_dir.owner[1]} -> {n_dir.owner[0]}:{n_dir.owner[1]}")
            what = ", ".join(changes)
        return self.redact(f"Directory {display_path(path)}/: {what}\n".encode())

    # -- caps ----------------------------------------------------------------------

    def _capped(self, shown: str, full: bytes) -> tuple[bytes, str]:
        if self.options.stat_only:
            return b"", ""
        patch, note = full, ""
        limit = max(self.options.max_file_bytes, 0)
        if len(patch) > limit:
            patch = _cut(patch, limit)
            self.cut.append(shown)
            note = f"patch cut at {len(patch)} of {len(full)} bytes (max_file_bytes {limit})"
        if len(patch) > self.total_left:
            patch = _cut(patch, self.total_left)
            self.cut_total.append(shown)
            note = f"patch cut at {len(patch)} of {len(full)} bytes: the total cap was reached"
        self.total_left -= len(patch)
        return patch, note

    def notes(self) -> list[str]:
        out = []
        if self.cut:
            out.append(f"the per-file cap ({_size_text(self.options.max_file_bytes)}) cut {_names(self.cut)}")
        if self.cut_total:
            total = _size_text(self.options.max_total_bytes)
            out.append(f"the total cap ({total} of patch text) cut or left out {_names(self.cut_total)}")
        out += [f"content not compared ({why}): {_names(names)}" for why, names in self.not_read.items()]
        return out

    # -- helpers -------------------------------------------------------------------

    def _side(self, e: Entry | None) -> Side | None:
        if e is None:
            return None
        if e.oid is None:
            return Side(e.st_mode, e.owner)
        return Side(e.st_mode, e.owner, self._size(e), str(e.oid), self.hashes.get(e.oid, ""))

    def _text(self, text: str) -> str:
        return self.redact(text.encode("utf-8", "surrogateescape")).decode("utf-8", "replace")


def _content_pairs(o: Entry | None, n: Entry | None) -> list[tuple[Entry | None, Entry | None]]:
    """The file/symlink blocks of an entry: one, or two when it changed between file and symlink."""
    o_c = o if o is not None and o.kind in (FILE, LINK) else None
    n_c = n if n is not None and n.kind in (FILE, LINK) else None
    if o_c is not None and n_c is not None and o_c.kind != n_c.kind:
        return [(o_c, None), (None, n_c)]
    return [(o_c, n_c)] if o_c is not None or n_c is not None else []


def _git_mode(e: Entry) -> bytes:
    return b"120000" if e.kind == LINK else b"%o" % e.st_mode


def _blob_hex(e: Entry | None) -> str:
    return str(e.oid) if e is not None and e.oid is not None else "0" * 40


def _owner(owner: Owner) -> bytes:
    return b"%d:%d" % owner


def _lines(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


_PLAIN = re.compile(rb'[^\x00-\x1f\x7f"\\\x80-\xff]*')  # printable ASCII but for a quote and a backslash
_C_ESCAPES = {0x07: b"\\a", 0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0B: b"\\v", 0x0C: b"\\f", 0x0D: b"\\r"}


def _quoted(prefix: bytes, path: str) -> bytes:
    """prefix + path as git writes it in a diff header: C-quoted when it holds a control
    character, a quote, a backslash or bytes that are not UTF-8 (as octal, which git apply reads)."""
    raw = prefix + os.fsencode(path)
    if _PLAIN.fullmatch(raw):  # the common case, and cheap
        return raw
    text = raw.decode("utf-8", "surrogateescape")
    if all(" " <= c != "\x7f" and c not in '"\\' and not 0xDC80 <= ord(c) <= 0xDCFF for c in text):
        return raw
    out = bytearray(b'"')
    for c in text:
        code = ord(c)
        if 0xDC80 <= code <= 0xDCFF:
            out += b"\\%03o" % (code - 0xDC00)
        elif code in _C_ESCAPES:
            out += _C_ESCAPES[code]
        elif c in '"\\':
            out += b"\\" + c.encode()
        elif code < 0x20 or code == 0x7F:
            out += b"\\%03o" % code
        else:
            out += c.encode()
    return bytes(out + b'"')


def _cut(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes of data, ending at a line end."""
    if len(data) <= limit:
        return data
    end = data.rfind(b"\n", 0, limit)
    return data[: end + 1] if end >= 0 else b""


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown + (f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else "")


def _size_text(n: int) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"
