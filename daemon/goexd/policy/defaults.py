"""The daemon's own policy layers, over the built-in defaults: the daemon's policy, which every session's
policy is checked beside (and can only narrow).

First the hosts of the daemon's `egress.allowed_hosts` setting (kept so an existing config goes on
meaning what it meant), then the `[policy] file`, whose errors stop the daemon from starting.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from goexd.domain.errors import SetupError
from goexd.policy.parse import PolicyError, parse


def daemon_layers(policy_file: Path | None, egress_allowed_hosts: Sequence[str]) -> list[dict[str, Any]]:
    layers: list[dict[str, Any]] = []
    if egress_allowed_hosts:
        layers.append({"egress": {"hosts": list(egress_allowed_hosts)}})
    if policy_file is not None:
        try:
            text = policy_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise SetupError(f"policy file {policy_file}: {exc.strerror}") from None
        try:
            layers.append(parse(text))
        except PolicyError as exc:
            raise SetupError(f"policy file {policy_file}, line {exc.line}: {exc.message}") from None
    return layers
