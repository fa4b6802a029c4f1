"""A workspace's file tree as a planner reads it: what matters first, what is vendored or ignored named, bounded.

Rules: breadth first (the top of a project says most about it), names sorted; a directory that holds what tools
made or fetched (`node_modules`, `.venv`, `__pycache__`, `build`, ...) or that the workspace's top `.gitignore`
ignores is named once with why, never entered; at most `max_entries` entries are listed and at most `max_visited`
looked at, so a 100k-file tree costs the same as a 20k-file one (the text says where it stopped); symbolic links
are not followed; what cannot be read is skipped.
"""

from __future__ import annotations

import fnmatch
import os
from collections import deque
from pathlib import Path

from goexd.domain.names import display_path

MAX_ENTRIES = 200
MAX_VISITED = 20_000
# Directories that hold what tools made or fetched, not what a person wrote: named, never listed.
VENDORED = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "bower_components",
        ".venv",
        "venv",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".gradle",
        ".idea",
        ".next",
        ".cache",
        "target",
        "build",
        "dist",
        "vendor",
        "site-packages",
    }
)


def ignored_patterns(workspace: Path) -> list[str]:
    """The top .gitignore's plain patterns (no negations; a pattern with a '/' inside is taken from the top)."""
    try:
        text = (workspace / ".gitignore").read_text(errors="replace")
    except OSError:
        return []
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "!")):
            patterns.append(line.rstrip("/").lstrip("/") if line.count("/") <= 1 else line.strip("/"))
    return patterns[:500]


def _ignored(rel: str, name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel if "/" in p else name, p) for p in patterns)


def tree_text(workspace: Path, max_entries: int = MAX_ENTRIES, max_visited: int = MAX_VISITED) -> list[str]:
    """The lines describing the tree below `workspace` (each indented two spaces; directories end with '/')."""
    patterns = ignored_patterns(workspace)
    lines: list[str] = []
    listed = visited = unlisted = 0
    todo: deque[str] = deque([""])
    while todo:
        rel = todo.popleft()
        try:
            with os.scandir(workspace / rel if rel else workspace) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            visited += 1
            path = f"{rel}/{e.name}" if rel else e.name
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            note = ""
            if is_dir and e.name in VENDORED:
                note = " (vendored or generated: not listed)"
            elif _ignored(path, e.name, patterns):
                if not is_dir:
                    continue
                note = " (ignored by .gitignore: not listed)"
            elif is_dir:
                todo.append(path)
            if listed < max_entries:
                lines.append(f"  {display_path(path)}{'/' if is_dir else ''}{note}")
                listed += 1
            else:
                unlisted += 1
            if visited >= max_visited:
                lines.append(f"  ... (stopped looking after {visited} entries; there are more)")
                return lines
    if unlisted:
        lines.append(f"  ... and {unlisted} more entries")
    return lines
