"""Per-request DataLoaders: every nested field is one statement for all its parents (no N+1).

A loader is built for one request and one caller, so its cache never crosses tenants. Keys
of list loaders are `(group, parent_id)`: parents asking with the same arguments (the same
page, the same tenant scope) share one statement.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

import asyncpg
from strawberry.dataloader import DataLoader

from exchange.query.repo import Page, Repo

G = TypeVar("G", bound=Hashable)
Rows = list[asyncpg.Record]


def _by_id(fetch: Callable[[Sequence[uuid.UUID]], Awaitable[Rows]]) -> DataLoader[uuid.UUID, asyncpg.Record | None]:
    async def load(ids: list[uuid.UUID]) -> list[asyncpg.Record | None]:
        found = {row["id"]: row for row in await fetch(ids)}
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


def _grouped(
    fetch: Callable[[G, list[uuid.UUID]], Awaitable[Rows]], parent: str = "_parent"
) -> DataLoader[tuple[G, uuid.UUID], Rows]:
    """Loads rows per (group, parent id): one `fetch(group, parent_ids)` per distinct group."""

    async def load(keys: list[tuple[G, uuid.UUID]]) -> list[Rows]:
        groups: dict[G, list[uuid.UUID]] = defaultdict(list)
        for group, parent_id in keys:
            groups[group].append(parent_id)
        found: dict[tuple[G, uuid.UUID], Rows] = defaultdict(list)
        for group, parent_ids in groups.items():
            for row in await fetch(group, list(dict.fromkeys(parent_ids))):
                found[(group, row[parent])].append(row)
        return [found.get(key, []) for key in keys]

    return DataLoader(load_fn=load)


class Loaders:
    """The loaders of one request, scoped to the caller's tenant."""

    def __init__(self, repo: Repo, tenant: str) -> None:
        self.repo = repo
        self.tenant = tenant
        self.record = _by_id(lambda ids: repo.records(tenant, ids))
        self.patient = _by_id(lambda ids: repo.patients(tenant, ids))
        self.subject = _by_id(lambda ids: repo.subjects(tenant, ids))
        self.entity: DataLoader[tuple[str, uuid.UUID], Rows] = _grouped(
            lambda table, ids: repo.entities(table, tenant, ids), parent="id"
        )
        self.patients_of_subject: DataLoader[tuple[None, uuid.UUID], Rows] = _grouped(
            lambda _, ids: repo.patients_of_subjects(tenant, ids), parent="subject_id"
        )
        self.patient_of_record: DataLoader[tuple[None, uuid.UUID], Rows] = _grouped(
            lambda _, ids: repo.patient_of_records(tenant, ids), parent="record_id"
        )
        self.raw_counts: DataLoader[tuple[None, uuid.UUID], Rows] = _grouped(
            lambda _, ids: repo.raw_counts_of_subjects(tenant, ids), parent="subject_id"
        )
        self.sources: DataLoader[tuple[None, uuid.UUID], Rows] = _grouped(
            lambda _, ids: repo.sources_of_subjects(ids), parent="subject_id"
        )
        self.facts: DataLoader[tuple[tuple[str, str, str | None, Page], uuid.UUID], Rows] = _grouped(
            lambda g, ids: repo.facts(g[0], g[1], g[2], ids, g[3])
        )
        self.records_of_subject: DataLoader[tuple[tuple[str | None, Page], uuid.UUID], Rows] = _grouped(
            lambda g, ids: repo.records_of_subjects(g[0], ids, g[1])
        )

    async def one(self, loader: DataLoader[tuple[Any, uuid.UUID], Rows], parent_id: uuid.UUID) -> Rows:
        return await loader.load((None, parent_id))
