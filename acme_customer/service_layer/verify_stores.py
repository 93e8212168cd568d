"""Use case: check the three stores against DESIGN.md's invariants (``acme-customer verify``).

Each store is walked once, in pages, so memory stays flat however many customers there are:
1. the read model's documents, each compared with what the projection writes from PostgreSQL
   (the customers of a page are read by id);
2. the customers: their CustomerRegistered events, their numbers, whether a document was seen;
3. the event store and the idempotency guard, for rows that point to no customer;
4. the month counters against the numbers taken, and the read model's indexes.
What is found goes to ``on_findings`` page by page: ``verify`` counts it, ``reconcile`` repairs it.
Customer numbers are kept as one bit per number and month (1,000,000 customers: 125 kB).
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload
from uuid import UUID

from acme_customer.domain.customer import Customer
from acme_customer.domain.customer_number import CustomerNumber
from acme_customer.domain.events import CustomerRegistered
from acme_customer.service_layer.project_customers import REGISTRATION_VERSION

EXAMPLES = 10  # ids shown per kind of finding


@dataclass(frozen=True)
class Kind:
    """A kind of finding: what it is (its ids), and what reconcile does about it, or why it cannot."""

    title: str
    repair: str | None = None  # what reconcile does; None: it cannot be repaired from the source of truth
    why_not: str = ""  # when it cannot: why, and what to do instead


PROCESSED_WITHOUT_CUSTOMER = Kind(
    "processed UserRegistered events whose customer does not exist (input eventIds)",
    why_not="the idempotency guard names a customer that is gone (a deleted row): the input is never "
    "processed again; restore the customer from a backup, or delete the processed_events row and replay the input",
)
NUMBER_GAPS = Kind(
    "customer numbers missing (gaps)",
    why_not="numbers are gapless by contract and never reused or renumbered, so a gap means a customer row "
    "was deleted; restore the row from a backup (the event store still holds its CustomerRegistered), "
    "or record the gap as accepted",
)
DUPLICATE_NUMBERS = Kind(
    "customer numbers held by more than one customer",
    why_not="the UNIQUE constraint on customers.customer_number must have been dropped; restore it and decide "
    "by hand which customer keeps the number",
)
MALFORMED_NUMBERS = Kind(
    "customers whose number is not ACME-YYYYMM-NNNNNN (customerIds)",
    why_not="written behind the service's back; correct the row by hand",
)
COUNTER_BEHIND = Kind(
    "month counters behind the highest number taken (months)",
    repair="raise the month's counter to the highest number taken, so the next customer gets a free number",
)
CUSTOMERS_WITHOUT_EVENT = Kind(
    "customers without a CustomerRegistered in the event store (customerIds)",
    why_not="written behind the service's back; reconcile does not invent history: if the customer is real, "
    "store its CustomerRegistered by hand (aggregate_id = the customerId) and reconcile publishes it",
)
CUSTOMERS_WITH_SEVERAL_EVENTS = Kind(
    "customers with more than one CustomerRegistered (customerIds)",
    why_not="events are facts; find which one Kafka consumers saw (customer.events) and remove the other by hand",
)
CUSTOMERS_WITHOUT_PREFERENCES = Kind(
    "customers without a customer_preferences row (customerIds; their documents are not checked)",
    why_not="the preferences (marketing opt-in among them) are not in any event; restore the row from a backup",
)
UNPUBLISHED_EVENTS = Kind(
    "CustomerRegistered events never acknowledged by Kafka (eventIds)",
    repair="publish the stored event again (same eventId) and mark it published",
)
EVENTS_WITHOUT_CUSTOMER = Kind(
    "CustomerRegistered events whose customer does not exist (eventIds)",
    why_not="the customer row was deleted after its event was stored; restore it from a backup",
)
MISSING_DOCUMENTS = Kind(
    "customers without a read-model document (customerIds)",
    repair="project the customer from PostgreSQL (version-guarded upsert)",
)
STALE_DOCUMENTS = Kind(
    "documents older than PostgreSQL (lower _version; customerIds)",
    repair="project the customer from PostgreSQL (version-guarded upsert)",
)
DRIFTED_DOCUMENTS = Kind(
    "documents whose fields differ from PostgreSQL at the same _version (customerIds)",
    repair="replace the document with the projection of PostgreSQL, unless a newer version is stored meanwhile",
)
DOCUMENTS_AHEAD = Kind(
    "documents newer than anything PostgreSQL holds (higher _version; customerIds)",
    why_not="something other than this service wrote them; delete them and run reconcile to project them again",
)
ORPHAN_DOCUMENTS = Kind(
    "documents without a customer (document _ids)",
    repair="delete the document (checked against PostgreSQL again first)",
)
MISSING_INDEXES = Kind("read-model indexes missing (names)", repair="create the declared indexes")
DIFFERENT_INDEXES = Kind(
    "read-model indexes that differ from their declaration (names)",
    repair="replace them with the declared ones",
)
UNDECLARED_INDEXES = Kind(
    "read-model indexes the code does not declare (names)",
    why_not="someone added them; drop them by hand when nothing uses them",
)

KINDS = (
    PROCESSED_WITHOUT_CUSTOMER,
    NUMBER_GAPS,
    DUPLICATE_NUMBERS,
    MALFORMED_NUMBERS,
    COUNTER_BEHIND,
    CUSTOMERS_WITHOUT_EVENT,
    CUSTOMERS_WITH_SEVERAL_EVENTS,
    CUSTOMERS_WITHOUT_PREFERENCES,
    UNPUBLISHED_EVENTS,
    EVENTS_WITHOUT_CUSTOMER,
    MISSING_DOCUMENTS,
    STALE_DOCUMENTS,
    DRIFTED_DOCUMENTS,
    DOCUMENTS_AHEAD,
    ORPHAN_DOCUMENTS,
    MISSING_INDEXES,
    DIFFERENT_INDEXES,
    UNDECLARED_INDEXES,
)

Found = Mapping[Kind, Sequence[Any]]  # kind -> the ids found in one page (UUIDs, numbers, months, names, raw _ids)
Page = dict[Kind, list[Any]]
OnFindings = Callable[[Found], Awaitable[None]]
Progress = Callable[[str, int], None]  # (what is walked, how many so far)


# -- ports ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerState:
    """A customer as PostgreSQL holds it, with what the event store holds for it."""

    customer_id: UUID
    customer_number: str
    has_preferences: bool
    events: int  # CustomerRegistered events stored for the customer
    unpublished: tuple[UUID, ...] = ()  # the eventIds of those Kafka never acknowledged
    customer: Customer | None = None  # the whole customer, when asked for by id (and it has preferences)


class CommandStoreAudit(abc.ABC):
    """Reads PostgreSQL for verify, in pages; and the two repairs that are PostgreSQL's own."""

    @abc.abstractmethod
    def customer_pages(self, since: str | None) -> AsyncIterator[list[CustomerState]]:
        """Every customer (of the months from ``since``, YYYYMM), in pages, without the whole customer."""

    @abc.abstractmethod
    async def customers(self, customer_ids: Sequence[UUID]) -> dict[UUID, CustomerState]:
        """The customers of these ids that exist, each with its whole ``customer``."""

    @abc.abstractmethod
    def orphan_event_pages(self, since: str | None) -> AsyncIterator[tuple[int, list[UUID]]]:
        """Per page of CustomerRegistered events: how many were read, and those whose customer is gone."""

    @abc.abstractmethod
    def orphan_processed_pages(self, since: str | None) -> AsyncIterator[tuple[int, list[UUID]]]:
        """Per page of processed_events rows: how many were read, and those whose customer is gone."""

    @abc.abstractmethod
    async def counters(self, since: str | None) -> dict[str, int]:
        """The month counters (YYYYMM -> current value)."""

    @abc.abstractmethod
    async def unpublished_events(self, event_ids: Sequence[UUID]) -> list[CustomerRegistered]:
        """Those of these CustomerRegistered events still unpublished, as stored."""

    @abc.abstractmethod
    async def existing(self, customer_ids: Sequence[UUID]) -> set[UUID]:
        """Those of these customers that exist now."""

    @abc.abstractmethod
    async def raise_counters(self, highest: dict[str, int]) -> int:
        """Raise each month's counter to at least its highest number taken; return how many changed."""


@dataclass(frozen=True)
class IndexReport:
    missing: list[str]
    different: list[str]
    undeclared: list[str]


class ReadModelAudit(abc.ABC):
    """Reads the read model for verify, in pages; and the repairs that are the read model's own."""

    @abc.abstractmethod
    def document_pages(self, since: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every document (with a customerNumber of the months from ``since``), in pages."""

    @abc.abstractmethod
    async def index_report(self) -> IndexReport:
        """How the indexes differ from those the code declares."""

    @abc.abstractmethod
    async def ensure_indexes(self) -> None: ...

    @abc.abstractmethod
    async def replace_unless_newer(self, documents: Sequence[dict[str, Any]]) -> int:
        """Replace each stored document whose ``_version`` is not higher; return how many changed."""

    @abc.abstractmethod
    async def delete(self, document_ids: Sequence[Any]) -> int:
        """Delete these documents; return how many were deleted."""


# -- the walk -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonthCounter:
    """A month whose counter is behind its highest number taken."""

    year_month: str
    counter: int
    highest: int

    def __str__(self) -> str:
        return f"{self.year_month} (counter {self.counter}, highest number {self.highest})"


class NumberBits:
    """One bit per customer number of each month, set once the number is met."""

    def __init__(self) -> None:
        self._months: dict[str, bytearray] = {}
        self._counts: dict[str, int] = {}
        self._highest: dict[str, int] = {}

    def add(self, number: CustomerNumber) -> bool:
        """Set the number's bit; False when it was set already."""
        bits = self._months.setdefault(number.year_month, bytearray())
        byte, bit = divmod(number.sequence, 8)
        if byte >= len(bits):
            bits.extend(bytes(max(byte + 1 - len(bits), len(bits))))
        if bits[byte] & (1 << bit):
            return False
        bits[byte] |= 1 << bit
        self._counts[number.year_month] = self._counts.get(number.year_month, 0) + 1
        self._highest[number.year_month] = max(self._highest.get(number.year_month, 0), number.sequence)
        return True

    def __contains__(self, number: CustomerNumber) -> bool:
        bits = self._months.get(number.year_month, b"")
        byte, bit = divmod(number.sequence, 8)
        return byte < len(bits) and bool(bits[byte] & (1 << bit))

    @property
    def months(self) -> set[str]:
        return set(self._months)

    def highest(self, year_month: str) -> int:
        return self._highest.get(year_month, 0)

    def count(self, year_month: str) -> int:
        return self._counts.get(year_month, 0)

    def missing(self, year_month: str, upto: int) -> Sequence[CustomerNumber]:
        """The numbers 1..``upto`` of the month whose bit is not set, in order (computed when read)."""
        return _Missing(self, year_month, upto)


class _Missing(Sequence[CustomerNumber]):
    """The gaps of a month: counted from the bits, listed only as far as they are read."""

    def __init__(self, bits: NumberBits, year_month: str, upto: int):
        self._bits, self._year_month, self._upto = bits, year_month, upto

    def __len__(self) -> int:
        return self._upto - self._bits.count(self._year_month)

    def __iter__(self) -> Iterator[CustomerNumber]:
        for sequence in range(1, self._upto + 1):
            number = CustomerNumber(self._year_month, sequence)
            if number not in self._bits:
                yield number

    @overload
    def __getitem__(self, index: int) -> CustomerNumber: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[CustomerNumber]: ...

    def __getitem__(self, index: int | slice) -> CustomerNumber | Sequence[CustomerNumber]:
        if isinstance(index, slice):
            return list(itertools.islice(self, index.start, index.stop, index.step))
        return next(itertools.islice(self, index, None))


@dataclass
class _Seen:
    """Which customers the read-model walk met a document for."""

    numbers: NumberBits = field(default_factory=NumberBits)
    ids: set[UUID] = field(default_factory=set)  # customers whose number does not parse (rare)

    def add(self, state: CustomerState) -> None:
        number = _number(state.customer_number)
        if number is None:
            self.ids.add(state.customer_id)
        else:
            self.numbers.add(number)

    def __contains__(self, state: CustomerState) -> bool:
        number = _number(state.customer_number)
        return state.customer_id in self.ids if number is None else number in self.numbers


def _number(text: str) -> CustomerNumber | None:
    try:
        return CustomerNumber.parse(text)
    except ValueError:
        return None


def _document_id(document: dict[str, Any]) -> UUID | None:
    """The customerId a document is keyed by; None for an ``_id`` the projection never writes."""
    raw = document.get("_id")
    try:
        customer_id = UUID(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    return customer_id if customer_id is not None and str(customer_id) == raw else None


async def _walk_documents(
    command: CommandStoreAudit,
    read_model: ReadModelAudit,
    since: str | None,
    seen: _Seen,
    found: OnFindings,
    progress: Progress,
) -> None:
    done = 0
    async for documents in read_model.document_pages(since):
        ids = {id(document): _document_id(document) for document in documents}
        states = await command.customers([customer_id for customer_id in ids.values() if customer_id is not None])
        page: Page = {ORPHAN_DOCUMENTS: [], STALE_DOCUMENTS: [], DRIFTED_DOCUMENTS: [], DOCUMENTS_AHEAD: []}
        for document in documents:
            customer_id = ids[id(document)]
            state = states.get(customer_id) if customer_id is not None else None
            if state is None:
                page[ORPHAN_DOCUMENTS].append(document.get("_id"))
                continue
            seen.add(state)
            if state.customer is None:
                continue  # no preferences: reported with the customers, nothing to compare with
            kind = _compare(document, state.customer.to_read_model(REGISTRATION_VERSION))
            if kind is not None:
                page[kind].append(state.customer_id)
        await found(page)
        done += len(documents)
        progress("read-model documents", done)


def _compare(document: dict[str, Any], expected: dict[str, Any]) -> Kind | None:
    version = document.get("_version")
    if not isinstance(version, int) or version < expected["_version"]:
        return STALE_DOCUMENTS
    if version > expected["_version"]:
        return DOCUMENTS_AHEAD
    return None if document == expected else DRIFTED_DOCUMENTS


async def _walk_customers(
    command: CommandStoreAudit, since: str | None, seen: _Seen, taken: NumberBits, found: OnFindings, progress: Progress
) -> None:
    done = 0
    async for states in command.customer_pages(since):
        page: Page = {kind: [] for kind in KINDS}
        for state in states:
            number = _number(state.customer_number)
            if number is None:
                page[MALFORMED_NUMBERS].append(state.customer_id)
            elif not taken.add(number):
                page[DUPLICATE_NUMBERS].append(number)
            if state.events == 0:
                page[CUSTOMERS_WITHOUT_EVENT].append(state.customer_id)
            elif state.events > 1:
                page[CUSTOMERS_WITH_SEVERAL_EVENTS].append(state.customer_id)
            page[UNPUBLISHED_EVENTS].extend(state.unpublished)
            if not state.has_preferences:
                page[CUSTOMERS_WITHOUT_PREFERENCES].append(state.customer_id)
            elif state not in seen:
                page[MISSING_DOCUMENTS].append(state.customer_id)
        await found(page)
        done += len(states)
        progress("customers", done)


async def _check_numbers(command: CommandStoreAudit, since: str | None, taken: NumberBits, found: OnFindings) -> None:
    counters = await command.counters(since)
    behind: list[Any] = []
    for year_month in sorted(taken.months | set(counters)):
        highest, counter = taken.highest(year_month), counters.get(year_month, 0)
        upto = max(highest, counter)  # numbers up to the counter were handed out
        gaps = taken.missing(year_month, upto)
        if gaps:  # one month per call, and listed only as far as read: a long gap is never materialised
            await found({NUMBER_GAPS: gaps})
        if counter < highest:
            behind.append(MonthCounter(year_month, counter, highest))
    await found({COUNTER_BEHIND: behind})


async def _walk_orphans(
    pages: AsyncIterator[tuple[int, list[UUID]]], kind: Kind, what: str, found: OnFindings, progress: Progress
) -> None:
    done = 0
    async for read, orphans in pages:
        await found({kind: orphans})
        done += read
        progress(what, done)


async def _check_indexes(read_model: ReadModelAudit, found: OnFindings) -> None:
    report = await read_model.index_report()
    await found(
        {MISSING_INDEXES: report.missing, DIFFERENT_INDEXES: report.different, UNDECLARED_INDEXES: report.undeclared}
    )


async def audit(
    command: CommandStoreAudit,
    read_model: ReadModelAudit,
    found: OnFindings,
    since: str | None = None,
    progress: Progress = lambda what, done: None,
) -> None:
    """Walk the stores (the months from ``since``, YYYYMM, or all) and hand every finding to ``found``."""
    await _check_indexes(read_model, found)  # first: reconcile's projections then run with the unique indexes
    seen = _Seen()
    await _walk_documents(command, read_model, since, seen, found, progress)
    taken = NumberBits()
    await _walk_customers(command, since, seen, taken, found, progress)
    await _check_numbers(command, since, taken, found)
    await _walk_orphans(command.orphan_event_pages(since), EVENTS_WITHOUT_CUSTOMER, "events", found, progress)
    await _walk_orphans(
        command.orphan_processed_pages(since), PROCESSED_WITHOUT_CUSTOMER, "processed events", found, progress
    )


# -- verify ---------------------------------------------------------------------------------------


@dataclass
class Tally:
    """How many of one kind were found, and the first few ids."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, ids: Sequence[Any]) -> None:
        self.count += len(ids)
        self.examples.extend(str(item) for item in ids[: max(0, EXAMPLES - len(self.examples))])

    def __str__(self) -> str:
        more = ", …" if self.count > len(self.examples) else ""
        return f"{self.count} ({', '.join(self.examples)}{more})"


@dataclass
class Findings:
    """Every kind found, tallied."""

    tallies: dict[Kind, Tally] = field(default_factory=dict)

    async def add(self, found: Found) -> None:
        for kind, ids in found.items():
            if ids:
                self.tallies.setdefault(kind, Tally()).add(ids)

    def __bool__(self) -> bool:
        return bool(self.tallies)

    def kinds(self) -> list[Kind]:
        return [kind for kind in KINDS if kind in self.tallies]

    def lines(self) -> list[str]:
        """One line per kind found: what, how many, up to ten ids."""
        return [f"{kind.title}: {self.tallies[kind]}" for kind in self.kinds()]


async def verify_stores(
    command: CommandStoreAudit,
    read_model: ReadModelAudit,
    since: str | None = None,
    progress: Progress = lambda what, done: None,
) -> Findings:
    """Every way the stores break the invariants, tallied (read-only)."""
    findings = Findings()
    await audit(command, read_model, findings.add, since, progress)
    return findings
