"""The postgres kind: a database on a PostgreSQL server, undone by transaction, inverse or clone."""

from __future__ import annotations

from urllib.parse import urlsplit

from goexd.domain.models import Resource, ResourceKind, ResourceRequest, UndoStrategy
from goexd.resources.postgres.clone import PostgresCloneResource
from goexd.resources.postgres.inverse import PostgresInverseResource
from goexd.resources.postgres.run import validate_postgres_url
from goexd.resources.postgres.transaction import PostgresTransactionResource
from goexd.resources.registry import Host, Registry, StrategyTraits


def register(registry: Registry, host: Host) -> None:
    def check(req: ResourceRequest, fld: str, strategy: UndoStrategy) -> Resource:
        url = validate_postgres_url(req.location, f"{fld}.db.url")
        if req.secret:
            host.vault.get(req.secret)  # NOT_FOUND now rather than at the first action
        return Resource(req.name or "db", ResourceKind.POSTGRES, url, strategy, req.secret)

    def password(resource: Resource) -> str | None:
        """The DSN password from the vault, if the resource names a secret allowed for its host."""
        if not resource.secret:
            return None
        parts = urlsplit(resource.uri)
        secret = host.vault.resolve(resource.secret, "postgresql", parts.hostname or "localhost", parts.port or 5432)
        return secret.primary.decode("utf-8", "surrogateescape")

    registry.add_kind(ResourceKind.POSTGRES, "a postgres database", UndoStrategy.TRANSACTION, check)
    registry.add_strategy(
        ResourceKind.POSTGRES,
        UndoStrategy.TRANSACTION,
        lambda r: PostgresTransactionResource(r, password(r)),
        StrategyTraits(pending_in_connection=True),
    )
    registry.add_strategy(
        ResourceKind.POSTGRES, UndoStrategy.INVERSE, lambda r: PostgresInverseResource(r, password(r))
    )
    registry.add_strategy(ResourceKind.POSTGRES, UndoStrategy.CLONE, lambda r: PostgresCloneResource(r, password(r)))
