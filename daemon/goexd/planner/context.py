"""The request: what the model is told, built from the session's resources' describe(), within a token budget.

What goes in: each resource's describe() (LLM-safe by the seam's rule: no credential in any form; a workspace's
file tree, a database's schema with a few sample rows, an http resource's base URL and rule sets), the session's
recent actions as the journal holds them (redacted), and the *names* of the secrets goexd adds on the model's
behalf. Never a secret's value, a DSN's password, the vault's path or its key file: the planner has none of them
(tests/security/test_planner_requests.py captures every request in every mode and looks for them).

Tokens are estimated as UTF-8 bytes / 3 (a tokenizer gives about 4 bytes a token for English and code; fewer
for other text): an estimate on the high side, so the budget holds for any model. Descriptions share what the
fixed parts leave, each cut at a line end where it would overrun its share, saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BYTES_PER_TOKEN = 3
CUT_NOTE = "... (cut to fit the planner's request budget)"


def tokens(text: str) -> int:
    return -(-len(text.encode("utf-8", "replace")) // BYTES_PER_TOKEN)


@dataclass(frozen=True)
class Described:
    resource: str
    headline: str  # "workspace, undone by snapshots"
    text: str  # its describe()


def fit(texts: Sequence[str], budget: int) -> list[str]:
    """Each text cut at a line end so that together they stay within `budget` tokens; a text shorter than its
    share leaves the rest to the others."""
    out = list(texts)
    left = budget
    order = sorted(range(len(texts)), key=lambda i: tokens(texts[i]))
    for n, i in enumerate(order):
        share = max(0, left // (len(order) - n))
        if tokens(texts[i]) > share:
            out[i] = cut(texts[i], share)
        left -= tokens(out[i])
    return out


def cut(text: str, budget: int) -> str:
    """The lines of `text` that fit in `budget` tokens, then CUT_NOTE."""
    room = budget * BYTES_PER_TOKEN - len(CUT_NOTE) - 1
    kept: list[str] = []
    used = 0
    for line in text.splitlines():
        size = len(line.encode("utf-8", "replace")) + 1
        if used + size > room:
            break
        kept.append(line)
        used += size
    return "\n".join([*kept, CUT_NOTE])


def system_message(
    intro: str,
    rules: Sequence[str],
    described: Sequence[Described],
    recent: Sequence[str],
    secret_names: Sequence[str],
    budget: int,
) -> str:
    """The system message: `intro` and `rules`, then the resources, the recent actions and the secrets' names;
    the resources' texts cut so that the whole stays within `budget` tokens."""
    head = [intro, "", *(f"- {r}" for r in rules)]
    tail: list[str] = []
    if recent:
        tail += ["", "The session's recent actions, oldest first:", *(f"  {line}" for line in recent)]
    if secret_names:
        tail += [
            "",
            "Secrets goexd adds to requests itself (by name; their values are never shown to you or the actions): "
            + ", ".join(secret_names),
        ]
    titles = sum(tokens(f"\n\nResource {d.resource} ({d.headline}):\n") for d in described)
    fixed = tokens("\n".join(head + tail)) + titles
    texts = fit([d.text for d in described], max(0, budget - fixed))
    body = [f"\nResource {d.resource} ({d.headline}):\n{t}" for d, t in zip(described, texts, strict=True)]
    return "\n".join([*head, *body, *tail])
