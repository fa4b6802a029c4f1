"""The inverse corpus (tests/corpus/*.toml, issue 15) stays whole: at least 40 (action, right inverse, wrong
inverse) cases across the four kinds of resource, none missing. Each kind's runner asserts every case's
outcome: tests/integration/test_fs_inverse.py and tests/e2e/test_inverse_corpus_trials.py (files),
tests/integration/test_sql_inverse_corpus.py and tests/e2e/test_sql_inverse_corpus.py (SQLite, PostgreSQL),
tests/e2e/test_http_client_inverses.py and tests/e2e/test_inverse_corpus_trials.py (HTTP)."""

from __future__ import annotations

from collections import Counter

from tests.corpus import fs_cases, http_cases, sql_cases

KINDS = ("files", "sqlite", "postgresql", "http")
AT_LEAST = 40


def _by_kind() -> Counter[str]:
    _, http = http_cases.load()
    counts = Counter({"files": len(fs_cases.load()), "http": len(http)})
    counts.update(c.engine for c in sql_cases.CASES)
    return counts


def test_the_corpus_has_at_least_40_cases_of_every_kind() -> None:
    counts = _by_kind()
    assert set(counts) == set(KINDS) and all(counts[k] > 0 for k in KINDS), counts
    assert sum(counts.values()) >= AT_LEAST, counts


def test_every_case_is_a_real_triple() -> None:
    """A right and a wrong inverse that differ, and names that tell the cases apart."""
    _, http = http_cases.load()
    triples = [
        *((f"files: {c.name}", c.right, c.wrong) for c in fs_cases.load()),
        *((f"http: {c.name}", c.right, c.wrong) for c in http),
        *((c.id, c.right, c.wrong) for c in sql_cases.CASES),
    ]
    names = [name for name, _, _ in triples]
    assert len(names) == len(set(names)), [n for n, k in Counter(names).items() if k > 1]
    assert [name for name, right, wrong in triples if right == wrong] == []


def test_pairs_that_cannot_be_tried_are_in_the_corpus_too() -> None:
    """'unknown' must appear where a test cannot run: files that outrun the trial, and every http client inverse
    without a staging copy (tests/e2e/test_inverse_corpus_trials.py)."""
    unknown = fs_cases.load_unknown()
    assert unknown and all(c.why for c in unknown)
