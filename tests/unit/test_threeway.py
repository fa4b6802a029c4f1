"""The three-way rule's planning (snapshots/threeway.py), case by case."""

from __future__ import annotations

import pygit2

from goexd.snapshots.threeway import plan_revert
from goexd.snapshots.treediff import DIR, FILE, Entry

OWNER = (1000, 1000)


def f(content: str, perm: int = 0o644) -> Entry:
    return Entry(FILE, perm, OWNER, pygit2.hash(content))


def d(perm: int = 0o755) -> Entry:
    return Entry(DIR, perm, OWNER)


def test_untouched_paths_go_back_and_changed_ones_conflict() -> None:
    # The action changed a.txt (old -> new) and added b.txt; someone changed a.txt since.
    wanted = {"a.txt": (f("new"), f("old")), "b.txt": (f("b"), None)}
    since = {"a.txt": (f("new"), f("mine"))}
    plan = plan_revert(wanted, since, force=False)
    assert plan.conflicts == ("a.txt",)
    assert plan.apply == {"b.txt": (f("b"), None)}
    forced = plan_revert(wanted, since, force=True)
    assert forced.conflicts == ("a.txt",)
    assert forced.apply == {"a.txt": (f("mine"), f("old")), "b.txt": (f("b"), None)}


def test_a_path_already_as_wanted_is_neither_written_nor_a_conflict() -> None:
    wanted = {"a.txt": (f("new"), f("old"))}
    since = {"a.txt": (f("new"), f("old"))}  # someone put it back by hand
    plan = plan_revert(wanted, since, force=False)
    assert plan.apply == {} and plan.conflicts == () and plan.already == ("a.txt",)


def test_changes_elsewhere_are_not_the_revert_s_business() -> None:
    wanted = {"a.txt": (f("new"), f("old"))}
    since = {"other.txt": (None, f("mine")), "sub": (None, d()), "sub/x": (None, f("x"))}
    plan = plan_revert(wanted, since, force=False)
    assert plan.apply == wanted and plan.conflicts == () and plan.kept_dirs == ()


def test_a_directory_the_action_made_stays_when_someone_added_to_it() -> None:
    # The action made n/ with n/f; the person added n/mine since: n/f goes, n/ stays.
    wanted = {"n": (d(), None), "n/f": (f("f"), None)}
    since = {"n/mine": (None, f("mine"))}
    plan = plan_revert(wanted, since, force=False)
    assert plan.conflicts == ()
    assert plan.kept_dirs == ("n",)
    assert plan.apply == {"n/f": (f("f"), None)}
    # Forced, the person's file goes with the directory (the caller sets it aside first).
    forced = plan_revert(wanted, since, force=True)
    assert forced.conflicts == ("n/mine",) and "n" in forced.apply


def test_a_directory_that_must_become_a_file_again_conflicts_with_what_was_added_below() -> None:
    wanted = {"p": (d(), f("was a file")), "p/f": (f("f"), None)}
    since = {"p/mine": (None, f("mine"))}
    plan = plan_revert(wanted, since, force=False)
    assert plan.conflicts == ("p/mine",)


def test_a_deleted_parent_makes_its_children_conflict() -> None:
    # The action changed d/f; the person removed d/ altogether since.
    wanted = {"d/f": (f("new"), f("old"))}
    since = {"d": (d(), None), "d/f": (f("new"), None)}
    plan = plan_revert(wanted, since, force=False)
    assert plan.conflicts == ("d/f",)


def test_a_path_whose_directory_was_removed_since_conflicts() -> None:
    # The action deleted d/f; the person then removed d/ (empty by then): undo would make d again.
    wanted = {"d/f": (None, f("f"))}
    since = {"d": (d(), None)}
    plan = plan_revert(wanted, since, force=False)
    assert plan.conflicts == ("d/f",) and plan.apply == {}
    forced = plan_revert(wanted, since, force=True)
    assert forced.apply == {"d/f": (None, f("f")), "d": (None, d())}


def test_a_file_that_replaced_a_directory_since_is_a_conflict_when_forced() -> None:
    # The action changed d/f; the person then replaced d/ by a file: forced, d/ comes back as a
    # directory over the person's file, so the file is named among the conflicts (and set aside).
    wanted = {"d/f": (f("new"), f("old"))}
    since = {"d": (d(), f("the person's")), "d/f": (f("new"), None)}
    assert plan_revert(wanted, since, force=False).conflicts == ("d/f",)
    forced = plan_revert(wanted, since, force=True)
    assert forced.conflicts == ("d", "d/f")
    assert forced.apply == {"d/f": (None, f("old")), "d": (f("the person's"), d())}
