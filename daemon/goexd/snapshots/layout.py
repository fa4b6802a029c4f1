"""How a snapshot is laid out inside the git store, and which names it can hold.

A snapshot is one root tree with two entries:

    w   the workspace files, as git records them (100644, 100755, 120000)
    m   metadata git cannot record: exact permission bits (set-id and sticky bits
        included) and owners

The metadata tree mirrors the workspace's directories. Every workspace name gets a
"_" prefix so none can collide with the "=" entry that holds a directory's own mode;
each blob holds octal permission bits, then the owner when it is not the store's
default owner (b"750", b"4755 65534:65534"):

    m/=        the workspace root's mode (and owner)
    m/_a/=     directory a's mode (every directory has one, so empty ones survive)
    m/_a/_f    file or symlink a/f: only when git's 644/755 would lose bits or its
               owner is not the default one

The default owner is the workspace root's owner when the store was created, kept in
the store's config (never changed), so every snapshot of one store reads owners the
same way, and a workspace whose files all belong to its owner costs no entries.
Snapshots written before owners were recorded read as "everything default-owned".

Mirroring directories (rather than one flat blob) keeps the metadata incremental: a
change rewrites one small blob and the trees above it, like the workspace tree.

Names git refuses. git (CLI and libgit2) will not hold a path component ".git" in any case,
nor libgit2's NTFS variants (".git.", ".git ", "git~1", ".git:x", ".git\\x"). In the `w`
tree such a name is stored as ESCAPE + name, and so is every name that itself starts with
ESCAPE, so that decoding is exact: store_name() is injective and its results are names git
accepts. workspace_name() strips ESCAPE only from a name store_name() could have made (the
rest still needs the escape), so a store written before escaping existed, which holds no
escaped names, reads unchanged. Metadata keys need no escape: "_" + any name is storable.
So a nested repository's .git is captured like any directory; only the workspace's own
top-level .git is left out (TOP_GIT). A symlink named .gitmodules is the one name git
refuses by kind rather than by name; it is left out (storable()).
"""

from __future__ import annotations

import os
import stat

WORK = "w"
META = "m"
SELF = "="

# Blobs under this size are hashed in memory by libgit2; larger ones are streamed.
SMALL_BLOB = 64 * 1024


def join(parent: str, name: str) -> str:
    """Join relative paths; "" is the workspace root."""
    return f"{parent}/{name}" if parent else name


def parent_of(rel: str) -> str:
    return rel.rpartition("/")[0]


def is_under(rel: str, prefix: str) -> bool:
    return not prefix or rel == prefix or rel.startswith(prefix + "/")


def escape(rel: str) -> str:
    return "/".join("_" + part for part in rel.split("/")) if rel else ""


def meta_dir_key(rel: str) -> str:
    return join(escape(rel), SELF)


def meta_file_key(rel: str) -> str:
    return escape(rel)


def parse_meta_key(key: str) -> tuple[str, bool]:
    """Inverse of meta_dir_key / meta_file_key: (relative path, is_directory)."""
    parts = key.split("/")
    is_dir = parts[-1] == SELF
    if is_dir:
        parts.pop()
    if any(not p.startswith("_") for p in parts):
        raise ValueError(f"not a metadata key: {key!r}")
    return "/".join(p[1:] for p in parts), is_dir


def git_perm(perm: int) -> int:
    """The permission bits git restores for a regular file with these bits."""
    return 0o755 if perm & stat.S_IXUSR else 0o644


def needs_meta(perm: int) -> bool:
    return perm != git_perm(perm)


Owner = tuple[int, int]  # uid, gid
# Permission bits, and the owner when it differs from the store's default.
Meta = tuple[int, Owner | None]
LINK_PERM = 0o777  # what a symlink's metadata entry (kept for its owner only) records


def owner_of(st: os.stat_result, default: Owner) -> Owner | None:
    """st's owner, or None when it is the default one."""
    uid, gid = st.st_uid, st.st_gid
    return None if (uid, gid) == default else (uid, gid)


def dir_meta(st: os.stat_result, default: Owner) -> Meta:
    return stat.S_IMODE(st.st_mode), owner_of(st, default)


def entry_meta(st: os.stat_result, default: Owner) -> Meta | None:
    """A file's or symlink's metadata entry, or None when git's tree says it all."""
    owner = owner_of(st, default)
    if stat.S_ISLNK(st.st_mode):
        return (LINK_PERM, owner) if owner is not None else None
    perm = stat.S_IMODE(st.st_mode)
    return (perm, owner) if owner is not None or needs_meta(perm) else None


def encode_meta(meta: Meta) -> bytes:
    perm, owner = meta
    return b"%o" % perm if owner is None else b"%o %d:%d" % (perm, *owner)


def decode_meta(data: bytes) -> Meta:
    perm, _, owner = data.partition(b" ")
    if not owner:
        return int(perm, 8), None
    uid, _, gid = owner.partition(b":")
    return int(perm, 8), (int(uid), int(gid))


def encode_owner(owner: Owner) -> str:
    return f"{owner[0]}:{owner[1]}"


def decode_owner(text: str) -> Owner:
    uid, _, gid = text.partition(":")
    return int(uid), int(gid)


# Prefixed to a name the `w` tree could not hold as it is, and to every name starting with it.
ESCAPE = "%goex%"
# The workspace's own repository: never read, snapshotted or restored (bound read-only in runs).
TOP_GIT = ".git"
_RESERVED = (".git", "git~1")


def git_refuses(name: str) -> bool:
    """Whether git (CLI or libgit2, whose NTFS rules always apply to an index) refuses this
    name as a path component of any kind: ".git" in any case, followed by nothing, by
    dots and spaces only, or by ":" or "\\" (NTFS streams, Windows separators); the same
    after "git~1", .git's 8.3 short name."""
    if name[:1] not in ".gG":  # the hot path: almost every name
        return False
    low = name.lower()
    for reserved in _RESERVED:
        if low.startswith(reserved):
            rest = low[len(reserved) :]
            return not rest.strip(" .") or rest[0] in ":\\"
    return False


def needs_escape(name: str) -> bool:
    return name.startswith(ESCAPE) or git_refuses(name)


def store_name(name: str) -> str:
    """A workspace name as the `w` tree holds it."""
    return ESCAPE + name if needs_escape(name) else name


def workspace_name(stored: str) -> str:
    """Inverse of store_name(); a name it could not have made is returned as it is."""
    if stored.startswith(ESCAPE):
        rest = stored[len(ESCAPE) :]
        if needs_escape(rest):
            return rest
    return stored


def store_path(rel: str) -> str:
    """A workspace path as the `w` tree (and the store's index) holds it."""
    if ESCAPE not in rel and "git" not in rel.lower():
        return rel  # the hot path: nothing to escape
    return "/".join(store_name(part) for part in rel.split("/")) if rel else ""


def workspace_path(stored: str) -> str:
    """Inverse of store_path()."""
    if ESCAPE not in stored:
        return stored
    return "/".join(workspace_name(part) for part in stored.split("/"))


def storable(name: str, is_link: bool = False) -> bool:
    """Whether an entry with this name can be snapshotted (most names git refuses are escaped,
    see store_name()). Not a symlinked .gitmodules (git refuses it by kind, and escaping by
    kind would give one workspace path two names in the store)."""
    if not is_link or name[:1] not in ".gG":
        return True
    base = name.lower().rstrip(" .")
    return base not in (".gitmodules", "gitmod~1")
