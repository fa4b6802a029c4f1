"""The resource kinds goexd knows, and which manager serves each (kind, strategy): the engine asks here.

Words:
- a *kind* (fs, sqlite, postgres, http) is what a session's resource is; a *strategy* is how its actions
  are undone (domain/models.py UndoStrategy);
- a kind's *check* turns a ResourceRequest into the canonical Resource a session records: it validates
  and normalises, and reaches the vault so a missing secret is NOT_FOUND (a forbidden one
  PERMISSION_DENIED) at session open rather than at the first action; it opens nothing;
- a *factory* builds the ResourceManager for one Resource of one (kind, strategy);
- the *host* is what the daemon lends every package: its config and own paths, the vault, the sandbox,
  the address rule its own connections obey, the state dir's reserve, the overlay dir.

Rules:
- each resource package (resources/fs, sqlite, postgres, http) registers itself in its `kind.py`:
  one `add_kind` and one `add_strategy` per strategy; resources/kinds.py calls every package's register.
  Adding a kind is a new package plus one line in kinds.py; adding a strategy is its module plus one
  `add_strategy` line. The engine names no concrete manager.
- a kind is registered once; its default strategy must be one it registers (checked when the registry
  is sealed, at daemon start);
- a request naming a kind nobody registered is UNIMPLEMENTED; a strategy its kind does not register is
  INVALID_ARGUMENT naming `<field>.strategy`;
- a factory returns a manager that owns what it opened, or raises having closed it (the engine closes
  managers, never what a failed factory left).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from goexd.config import Config
from goexd.diskspace import StateSpace
from goexd.domain.errors import InvalidArgument, SetupError, Unimplemented
from goexd.domain.models import Resource, ResourceKind, ResourceRequest, UndoStrategy
from goexd.domain.resource import ResourceManager
from goexd.domain.sandbox import Sandbox, Sandboxes
from goexd.domain.vault import SecretSource
from goexd.egress.addresses import AddressRule
from goexd.resources.host_paths import OwnPaths

Check = Callable[[ResourceRequest, str, UndoStrategy], Resource]  # (request, field, chosen strategy)
Factory = Callable[[Resource], ResourceManager]
Warnings = Callable[[Resource], list[str]]


@dataclass(frozen=True)
class Host:
    """What the daemon lends the resource packages."""

    cfg: Config
    own_paths: OwnPaths  # what no resource may reach: goexd's own files
    vault: SecretSource
    sandbox: Sandbox
    addresses: AddressRule  # what goexd's own connections may reach
    space: StateSpace  # the state dir's reserve: given up when a write finds the disk full
    fs_overlays: Path | None  # where fs actions get their overlay dirs; None runs them over the workspace itself
    sandboxes: Sandboxes | None = None  # the backends a session may name for a workspace (None: `sandbox` only)


def no_warnings(resource: Resource) -> list[str]:
    return []


@dataclass(frozen=True)
class StrategyTraits:
    """What the engine must know of a (kind, strategy) without a manager open (recovery, a stop, a lease)."""

    # Its pending actions live in goexd's open connection (the transaction strategy): gone with goexd, so a
    # stop says so, a restart marks them interrupted, and an idle session holding them is not let go.
    pending_in_connection: bool = False
    # Its checkpoint copies into goexd's state dir (snapshots, a SQLite copy): an action needs the reserve free.
    copies_into_state_dir: bool = False


@dataclass
class KindEntry:
    kind: ResourceKind
    noun: str  # how refusals name one: "a workspace", "an http resource"
    default_strategy: UndoStrategy
    check: Check
    warnings: Warnings = no_warnings
    factories: dict[UndoStrategy, Factory] = field(default_factory=dict)
    traits: dict[UndoStrategy, StrategyTraits] = field(default_factory=dict)


class Registry:
    def __init__(self) -> None:
        self._kinds: dict[ResourceKind, KindEntry] = {}

    def add_kind(
        self,
        kind: ResourceKind,
        noun: str,
        default_strategy: UndoStrategy,
        check: Check,
        warnings: Warnings = no_warnings,
    ) -> None:
        if kind in self._kinds:
            raise SetupError(f"resource kind {kind.value} is registered twice")
        self._kinds[kind] = KindEntry(kind, noun, default_strategy, check, warnings)

    def add_strategy(
        self, kind: ResourceKind, strategy: UndoStrategy, factory: Factory, traits: StrategyTraits = StrategyTraits()
    ) -> None:
        entry = self._entry(kind)
        if strategy in entry.factories:
            raise SetupError(f"strategy {strategy.value} of resource kind {kind.value} is registered twice")
        entry.factories[strategy] = factory
        entry.traits[strategy] = traits

    def seal(self) -> Registry:
        """Checks what registering cannot check one call at a time; returns self."""
        for entry in self._kinds.values():
            if entry.default_strategy not in entry.factories:
                raise SetupError(
                    f"resource kind {entry.kind.value}: default strategy {entry.default_strategy.value} not registered"
                )
        return self

    def kinds(self) -> Mapping[ResourceKind, tuple[UndoStrategy, ...]]:
        return {k: tuple(e.factories) for k, e in self._kinds.items()}

    def check(self, req: ResourceRequest, fld: str) -> Resource:
        entry = self._kinds.get(req.kind)
        if entry is None:
            raise Unimplemented(f"{fld}: {req.kind.value} resources are not built yet")
        strategy = req.strategy or entry.default_strategy
        if strategy not in entry.factories:
            raise InvalidArgument(f"{fld}.strategy", f"{entry.noun} cannot use the {strategy.value} strategy")
        return entry.check(req, fld, strategy)

    def open(self, resource: Resource) -> ResourceManager:
        factory = self._entry(resource.kind).factories.get(resource.strategy)
        if factory is None:  # a journal written by a goexd that had this strategy
            raise Unimplemented(
                f"resource {resource.name!r}: {resource.kind.value} has no {resource.strategy.value} strategy here"
            )
        return factory(resource)

    def traits(self, resource: Resource) -> StrategyTraits:
        """A journaled resource's traits; the defaults for a kind or strategy this goexd does not have."""
        entry = self._kinds.get(resource.kind)
        return entry.traits.get(resource.strategy, StrategyTraits()) if entry is not None else StrategyTraits()

    def warnings(self, resource: Resource) -> list[str]:
        return self._entry(resource.kind).warnings(resource)

    def _entry(self, kind: ResourceKind) -> KindEntry:
        entry = self._kinds.get(kind)
        if entry is None:
            raise Unimplemented(f"{kind.value} resources are not built yet")
        return entry
