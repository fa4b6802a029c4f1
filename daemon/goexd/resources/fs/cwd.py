"""An action's working directory in its workspace (ShellAction.cwd / PythonAction.cwd): a directory of the
workspace reached without a symlink.

A symlink is refused rather than followed: the sandbox sees the workspace at another path than the host
does, so a link's target (an absolute host path, or one leading out of the workspace) would not be where
the host check found it. The path is already relative and free of ".." (server/convert.py).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from goexd.domain.errors import InvalidArgument
from goexd.domain.models import ActionSpec
from goexd.domain.names import display_path

__all__ = ["check_cwd"]


def check_cwd(workspace: Path, spec: ActionSpec, fld: str = "spec") -> None:
    """INVALID_ARGUMENT naming `<fld>.<kind>.cwd` unless the spec's cwd is a directory of `workspace`."""
    if not spec.cwd:
        return
    where = f"{fld}.{spec.kind.value}.cwd"
    shown = display_path(spec.cwd)
    here = os.fsencode(workspace)
    walked: list[bytes] = []
    for part in os.fsencode(spec.cwd).split(b"/"):
        here = os.path.join(here, part)
        walked.append(part)
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            raise InvalidArgument(where, f"{shown!r} is not in the workspace {workspace}") from None
        except OSError as exc:
            raise InvalidArgument(where, f"{shown!r}: {exc.strerror}") from None
        if stat.S_ISLNK(mode):
            link = display_path(b"/".join(walked))
            raise InvalidArgument(where, f"{shown!r} goes through the symlink {link!r}: name the directory itself")
        if not stat.S_ISDIR(mode):
            raise InvalidArgument(where, f"{display_path(b'/'.join(walked))!r} is not a directory")
