"""What goex keeps in a user's database, left out of every describe, fingerprint and diff.

`goex_outcomes` (resources/outcomes.py): the marker rows the inverse strategy writes in the same
transaction as an action and as its inverse, so that a crash between the database's COMMIT and
the journal's record is settled from the database itself. It is hidden from goex's own views
only: a user's `SELECT * FROM sqlite_master`, `\\dt` or information_schema query sees it. A table
of the user's own with that name (in any schema) is hidden too.
"""

from __future__ import annotations

OUTCOMES_TABLE = "goex_outcomes"
