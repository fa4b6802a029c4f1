"""A workspace's tree as the planner is told it (resources/fs/tree_text.py): breadth first, vendored and ignored
directories named but never entered, bounded in what it lists and in what it looks at."""

from __future__ import annotations

from pathlib import Path

from goexd.resources.fs.tree_text import tree_text


def _make(root: Path, *paths: str) -> None:
    for p in paths:
        target = root / p
        target.parent.mkdir(parents=True, exist_ok=True)
        if not p.endswith("/"):
            target.write_text("x")


def test_breadth_first_with_vendored_and_ignored_directories_named_not_entered(tmp_path: Path) -> None:
    _make(
        tmp_path,
        "README.md",
        "src/app/deep.py",
        "src/main.py",
        "node_modules/left-pad/index.js",
        "out/cache.bin",
        "logs/today.log",
        "notes.log",
        ".gitignore",
    )
    (tmp_path / ".gitignore").write_text("# generated\nout/\n*.log\n!keep.log\n")
    assert tree_text(tmp_path) == [
        "  .gitignore",
        "  README.md",
        "  logs/",
        "  node_modules/ (vendored or generated: not listed)",
        "  out/ (ignored by .gitignore: not listed)",
        "  src/",
        "  src/app/",
        "  src/main.py",
        "  src/app/deep.py",
    ]


def test_what_it_lists_and_what_it_looks_at_are_bounded(tmp_path: Path) -> None:
    _make(tmp_path, *(f"d{i}/f{j}.txt" for i in range(5) for j in range(10)))
    listed = tree_text(tmp_path, max_entries=7)
    assert len(listed) == 8 and listed[:5] == [f"  d{i}/" for i in range(5)]
    assert listed[-1] == "  ... and 48 more entries"
    stopped = tree_text(tmp_path, max_entries=100, max_visited=12)
    assert stopped[-1] == "  ... (stopped looking after 12 entries; there are more)" and len(stopped) == 13


def test_links_are_not_followed(tmp_path: Path) -> None:
    _make(tmp_path, "real/a.txt")
    (tmp_path / "loop").symlink_to(tmp_path)
    assert tree_text(tmp_path) == ["  loop", "  real/", "  real/a.txt"]
