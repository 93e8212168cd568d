"""Use case: repair what verify finds that the source of truth can repair (``acme-customer reconcile``).

PostgreSQL is the source of truth. From it, reconcile publishes stored events Kafka never
acknowledged (the stored envelope, same eventId), projects missing or stale documents with the
projection's own version-guarded upsert, deletes documents that have no customer, raises a month
counter left behind the numbers taken and recreates the declared indexes. It repairs each page
as the walk finds it, so it is safe to run while workers run: every repair is idempotent, and
none replaces a document with a newer ``_version``. Without ``apply`` it only counts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from acme_customer.domain.events import CustomerRegistered
from acme_customer.service_layer.project_customers import (
    REGISTRATION_VERSION,
    ProfileSource,
    ReadModel,
    project_registrations,
)
from acme_customer.service_layer.verify_stores import (
    COUNTER_BEHIND,
    DIFFERENT_INDEXES,
    DRIFTED_DOCUMENTS,
    MISSING_DOCUMENTS,
    MISSING_INDEXES,
    ORPHAN_DOCUMENTS,
    STALE_DOCUMENTS,
    UNPUBLISHED_EVENTS,
    CommandStoreAudit,
    Findings,
    Found,
    Kind,
    Progress,
    ReadModelAudit,
    audit,
)

Publish = Callable[[Sequence[CustomerRegistered]], Awaitable[None]]  # publish, wait for Kafka, mark published


@dataclass
class Repairs:
    """What reconcile acts with: the stores' own repairs, the projection, the publisher."""

    command: CommandStoreAudit
    read_model: ReadModelAudit
    profiles: ProfileSource
    projection: ReadModel
    publish: Publish


@dataclass
class Reconciliation:
    """What was found, and (with ``apply``) how many of each kind were repaired."""

    findings: Findings = field(default_factory=Findings)
    repaired: dict[Kind, int] = field(default_factory=dict)
    applied: bool = False

    def pending(self) -> list[Kind]:
        """The kinds found that reconcile can repair."""
        return [kind for kind in self.findings.kinds() if kind.repair is not None]

    def unrepairable(self) -> list[Kind]:
        return [kind for kind in self.findings.kinds() if kind.repair is None]

    def lines(self) -> list[str]:
        """What was (or would be) done for each kind, then what cannot be done, and why."""
        lines = []
        for kind in self.pending():
            tally = self.findings.tallies[kind]
            if self.applied:
                lines.append(f"repaired {self.repaired.get(kind, 0)} of {tally.count}: {kind.title}: {tally}")
            else:
                lines.append(f"would repair {tally.count}: {kind.title}: {tally} — {kind.repair}")
        for kind in self.unrepairable():
            lines.append(f"cannot be repaired: {kind.title}: {self.findings.tallies[kind]} — {kind.why_not}")
        return lines


async def _repair(repairs: Repairs, kind: Kind, ids: Sequence[Any]) -> int:
    """Repair one page's findings of one kind from the source of truth; return how many were repaired."""
    if kind is UNPUBLISHED_EVENTS:
        events = await repairs.command.unpublished_events(ids)  # a worker may have published some meanwhile
        await repairs.publish(events)
        return len(events)
    if kind in (MISSING_DOCUMENTS, STALE_DOCUMENTS):
        return (await project_registrations(ids, repairs.profiles, repairs.projection)).written
    if kind is DRIFTED_DOCUMENTS:
        customers = await repairs.profiles.customers(ids)
        return await repairs.read_model.replace_unless_newer(
            [customer.to_read_model(REGISTRATION_VERSION) for customer in customers]
        )
    if kind is ORPHAN_DOCUMENTS:
        existing = await repairs.command.existing([UUID(str(i)) for i in ids if _is_uuid(i)])
        return await repairs.read_model.delete([i for i in ids if not _is_uuid(i) or UUID(str(i)) not in existing])
    if kind is COUNTER_BEHIND:
        return await repairs.command.raise_counters({month.year_month: month.highest for month in ids})
    if kind in (MISSING_INDEXES, DIFFERENT_INDEXES):
        await repairs.read_model.ensure_indexes()
        return len(ids)
    return 0


def _is_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(UUID(value)) == value
    except ValueError:
        return False


async def reconcile_stores(
    command: CommandStoreAudit,
    read_model: ReadModelAudit,
    repairs: Repairs | None,
    since: str | None = None,
    progress: Progress = lambda what, done: None,
) -> Reconciliation:
    """Walk the stores as verify does; with ``repairs``, repair each page's repairable findings at once."""
    result = Reconciliation(applied=repairs is not None)

    async def found(page: Found) -> None:
        await result.findings.add(page)
        for kind, ids in page.items():
            if repairs is not None and ids and kind.repair is not None:
                repaired = await _repair(repairs, kind, ids)
                result.repaired[kind] = result.repaired.get(kind, 0) + repaired

    await audit(command, read_model, found, since, progress)
    return result
