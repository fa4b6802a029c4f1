"""File names Linux accepts that are not plain UTF-8 text, for tests (names are bytes).

ODD_FILES are relative paths (bytes) of regular files, with their content; ODD_DIRS the
directories holding them (every level); build() makes them with Python, shell_script()
with the shell inside the sandbox (an action's argv is a protobuf string: UTF-8 only, so
the script spells every byte in octal for printf). listing() describes a tree by bytes.
"""

from __future__ import annotations

import os
import stat

LONG = b"\xff" * 255  # NAME_MAX bytes, not one of them UTF-8

# path -> content. Every name is accepted by Linux and git; none ends with a newline
# (the shell's $(...) would drop it).
ODD_FILES: dict[bytes, bytes] = {
    b"bad\xff": b"ff\n",
    b"nl\nname": b"newline\n",
    b"back\\slash": b"backslash\n",
    b"bad\\xff": b"looks like an escape\n",
    b"\xc3\x28": b"lead byte without continuation\n",
    b"\xed\xa0\x80": b"encoded surrogate\n",
    b"\xc0\xaf": b"overlong slash\n",
    b"\x1b[31mred": b"escape sequence\n",
    "ünï".encode(): b"valid utf-8\n",
    LONG: b"long\n",
    b"d\xfe/s\x80/f\xff": b"deep\n",
    b"d\xfe/" + LONG: b"long in an odd dir\n",
}
ODD_DIRS = [b"d\xfe", b"d\xfe/s\x80"]
ODD_LINK = (b"lnk\xfe", b"target\xff/../bad\xff")  # name, target (a symlink's target is bytes too)
ODD_MODE = (b"bad\xff", 0o600)  # a mode git cannot record: kept in the store's metadata tree
ODD_DIR_MODE = (b"d\xfe/s\x80", 0o700)


def build(root: bytes | str) -> None:
    """Make ODD_FILES, ODD_LINK and the modes under root."""
    base = os.fsencode(root)
    for d in ODD_DIRS:
        os.makedirs(os.path.join(base, d), exist_ok=True)
    for rel, data in ODD_FILES.items():
        with open(os.path.join(base, rel), "wb") as f:
            f.write(data)
    os.symlink(ODD_LINK[1], os.path.join(base, ODD_LINK[0]))
    os.chmod(os.path.join(base, ODD_MODE[0]), ODD_MODE[1])
    os.chmod(os.path.join(base, ODD_DIR_MODE[0]), ODD_DIR_MODE[1])


def _octal(raw: bytes) -> str:
    return "".join(f"\\{b:03o}" for b in raw)


def sh_word(raw: bytes) -> str:
    """A shell word that expands to exactly `raw` (no trailing newline), in ASCII."""
    return f"\"$(printf '{_octal(raw)}')\""


def shell_script() -> str:
    """The shell commands that make what build() makes."""
    lines = [f"mkdir -p {sh_word(d)}" for d in ODD_DIRS]
    lines += [f"printf '{_octal(data)}' > {sh_word(rel)}" for rel, data in ODD_FILES.items()]
    lines.append(f"ln -s {sh_word(ODD_LINK[1])} {sh_word(ODD_LINK[0])}")
    lines.append(f"chmod {ODD_MODE[1]:o} {sh_word(ODD_MODE[0])}")
    lines.append(f"chmod {ODD_DIR_MODE[1]:o} {sh_word(ODD_DIR_MODE[0])}")
    return " && ".join(lines)


Item = tuple[str, int, bytes]  # kind, permission bits, content (file) or target (symlink)


def listing(root: bytes | str, *, skip_top: tuple[bytes, ...] = (b".git",)) -> dict[bytes, Item]:
    """Every entry below root by its exact relative path in bytes (directories too)."""
    base = os.fsencode(root)
    out: dict[bytes, Item] = {}
    for top, dirs, files in os.walk(base):
        rel_top = os.path.relpath(top, base)
        if rel_top == b".":
            dirs[:] = [d for d in dirs if d not in skip_top]
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.normpath(os.path.join(rel_top, name))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
            else:
                with open(path, "rb") as f:
                    out[rel] = ("file", stat.S_IMODE(st.st_mode), f.read())
    return out
