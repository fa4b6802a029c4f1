"""Paths that make tools run code later: a reviewer should read a change to them before accepting it.

A change here is not refused (agents legitimately edit editor or CI settings); it is flagged in the
change set (FileChange.runs_code) and named in its warnings. Matching is by relative path: a name at
any depth for files tools look for in every directory (.envrc), a top-level name otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from goexd.domain.names import display_paths

# Any directory with one of these names: everything below it.
_DIRS_ANYWHERE = (".git", ".githooks", ".husky")
# Files found by name in any directory (direnv loads .envrc wherever the shell goes).
_FILES_ANYWHERE = (".envrc",)
# At the workspace's top: editor, dev-container and CI configuration, hook managers, submodules.
_TOP_DIRS = (".vscode", ".idea", ".devcontainer", ".github/workflows", ".circleci")
_TOP_FILES = (".pre-commit-config.yaml", ".gitmodules", ".gitlab-ci.yml", ".gitattributes")


def runs_code_later(path: str) -> bool:
    """Whether `path` (relative; a directory may end with "/") is one tools may execute or obey later."""
    rel = path.rstrip("/")
    parts = rel.split("/")
    if any(p in _DIRS_ANYWHERE for p in parts) or parts[-1] in _FILES_ANYWHERE:
        return True
    return rel in _TOP_FILES or any(rel == d or rel.startswith(d + "/") for d in _TOP_DIRS)


def warning(paths: Sequence[str]) -> str:
    return f"may make tools run code later (review before committing): {display_paths(paths)}"
