"""The sqlite kind: a database file goexd opens itself, undone by transaction, inverse or clone."""

from __future__ import annotations

from goexd.domain.errors import InvalidArgument
from goexd.domain.models import Resource, ResourceKind, ResourceRequest, UndoStrategy
from goexd.resources.registry import Host, Registry, StrategyTraits
from goexd.resources.sqlite.clone import SqliteCloneResource
from goexd.resources.sqlite.inverse import SqliteInverseResource
from goexd.resources.sqlite.transaction import SqliteTransactionResource, validate_sqlite_url


def register(registry: Registry, host: Host) -> None:
    def check(req: ResourceRequest, fld: str, strategy: UndoStrategy) -> Resource:
        if req.secret:
            raise InvalidArgument(f"{fld}.db.secret", "a sqlite database takes no secret")
        path = validate_sqlite_url(req.location, f"{fld}.db.url", host.own_paths)
        return Resource(req.name or "db", ResourceKind.SQLITE, str(path), strategy)

    registry.add_kind(ResourceKind.SQLITE, "a sqlite database", UndoStrategy.TRANSACTION, check)
    in_connection = StrategyTraits(pending_in_connection=True)
    registry.add_strategy(ResourceKind.SQLITE, UndoStrategy.TRANSACTION, SqliteTransactionResource, in_connection)
    registry.add_strategy(ResourceKind.SQLITE, UndoStrategy.INVERSE, SqliteInverseResource)
    registry.add_strategy(
        ResourceKind.SQLITE,
        UndoStrategy.CLONE,
        lambda r: SqliteCloneResource(r, host.cfg.state_dir / "db"),
        StrategyTraits(copies_into_state_dir=True),  # the copy is a file beside the journal
    )
