"""MongoDB: the customer read model (one document per customer, ``_id`` = customerId).

A document is only ever replaced by a higher ``_version``: the upsert's filter matches an
older version or nothing; when a newer one is stored, the upsert's insert collides on
``_id`` (duplicate key), which here means "stale, skip".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, PyMongoError

from acme_customer.errors import ReadModelConflict, ReadModelUnavailable, ReadModelUnreachable
from acme_customer.service_layer.project_customers import ReadModel

COLLECTION = "customers"
DUPLICATE_KEY = 11000
INDEX_NOT_FOUND = 27

Document = dict[str, Any]


@dataclass(frozen=True)
class Index:
    """A secondary index of the read model: its name, its keys in order, whether it is unique."""

    name: str
    keys: tuple[tuple[str, int], ...]
    unique: bool = False


# What the code declares; ``ensure_indexes`` makes the collection hold these, ``acme-customer
# verify`` reports any difference. Lookups by email ask for ``email.address`` (the document's
# email is a sub-document), so that is the field indexed.
INDEXES = (
    Index("uniq_userId", (("userId", ASCENDING),), unique=True),
    Index("uniq_customerNumber", (("customerNumber", ASCENDING),), unique=True),
    Index("idx_email", (("email.address", ASCENDING),)),
    Index("idx_status", (("status", ASCENDING),)),
)


def index_of(description: Mapping[str, Any]) -> Index:
    """An index as ``listIndexes`` describes it."""
    keys = tuple((str(field), int(direction)) for field, direction in description["key"].items())
    return Index(str(description["name"]), keys, bool(description.get("unique", False)))


async def indexes_of(collection: AsyncCollection[Document]) -> dict[str, Index]:
    """The collection's secondary indexes by name (``_id_`` left out: every collection has it)."""
    found = {}
    async for description in await collection.list_indexes():
        index = index_of(description)
        if index.name != "_id_":
            found[index.name] = index
    return found


class MongoReadModel(ReadModel):
    def __init__(self, client: AsyncMongoClient[Document], database: str):
        self.client = client
        self.collection = client[database][COLLECTION]

    @classmethod
    def create(cls, uri: str, database: str) -> MongoReadModel:
        # A short heartbeat and selection timeout: after an outage each retry notices the
        # server's return within about half a second instead of waiting out the defaults
        # (a 30 s outage otherwise took 3 s more to catch up than the 2 s the story allows).
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000, heartbeatFrequencyMS=500, tz_aware=True
        )
        return cls(client, database)

    async def ensure_indexes(self) -> None:
        """Create the declared indexes; replace one whose declaration changed under the same name.

        (MongoDB refuses to create an index under a name an index with other keys holds: an
        older ``idx_email`` on the whole ``email`` sub-document would stop every start.)
        """
        try:
            existing = await indexes_of(self.collection)
            for index in INDEXES:
                found = existing.get(index.name)
                if found == index:
                    continue
                if found is not None:
                    await self._drop_index(index.name)
                await self.collection.create_index(list(index.keys), name=index.name, unique=index.unique)
        except ConnectionFailure as error:
            raise ReadModelUnreachable(f"MongoDB unreachable: {type(error).__name__}") from error
        except PyMongoError as error:
            raise ReadModelUnavailable(f"MongoDB index creation failed: {type(error).__name__}") from error

    async def _drop_index(self, name: str) -> None:
        try:
            await self.collection.drop_index(name)
        except OperationFailure as error:
            if error.code != INDEX_NOT_FOUND:  # another worker starting at the same time dropped it first
                raise

    async def upsert(self, documents: Sequence[Document]) -> int:
        """Store each document unless the same or a newer ``_version`` is there; return how many were written.

        Projections are mostly first versions, so one unordered ``insert_many`` writes the batch;
        the documents whose ``_id`` is taken fall back to a version-guarded replace, one by one.
        (Not a bulk of guarded upserts: FerretDB 1.24 answers one that hits a duplicate key with
        a reply pymongo cannot read, and runs it far slower; see docs/local-stack.md.)
        """
        if not documents:
            return 0
        try:
            try:
                result = await self.collection.insert_many(list(documents), ordered=False)
                return len(result.inserted_ids)
            except BulkWriteError as error:
                write_errors = error.details.get("writeErrors", [])
                others = [e for e in write_errors if e.get("code") != DUPLICATE_KEY]
                if others:
                    raise ReadModelUnavailable(f"MongoDB refused a document: code {others[0].get('code')}") from error
                written = int(error.details.get("nInserted", 0))
                for index in sorted({e["index"] for e in write_errors}):
                    written += await self._replace_if_newer(documents[index])
                return written
        except ConnectionFailure as error:  # ServerSelectionTimeoutError and AutoReconnect included
            raise ReadModelUnreachable(f"MongoDB unavailable: {type(error).__name__}") from error
        except PyMongoError as error:
            raise ReadModelUnavailable(f"MongoDB error: {type(error).__name__}") from error

    async def _replace_if_newer(self, document: Document) -> int:
        """After a duplicate key: replace an older version, skip the same or a newer one."""
        # Asked of the data, not of the error: FerretDB 1.24 does not say which key collided.
        stored = await self.collection.find_one({"_id": document["_id"]}, {"_version": 1})
        if stored is None:
            raise ReadModelConflict(f"customer {document['_id']}: another document holds its userId or customerNumber")
        if stored.get("_version", 0) >= document["_version"]:
            return 0  # a redelivery, or a stale event
        result = await self.collection.replace_one(
            {"_id": document["_id"], "_version": {"$lt": document["_version"]}}, document
        )
        return result.modified_count

    async def find_one(self, query: Document) -> Document | None:
        try:
            return await self.collection.find_one(query)
        except PyMongoError as error:
            raise ReadModelUnavailable(f"MongoDB error: {type(error).__name__}") from error

    async def server_version(self) -> str:
        """The server's version (``config check --connect``); ReadModelUnreachable when it does not answer."""
        try:
            info = await self.client.admin.command("buildInfo")
        except ConnectionFailure as error:
            raise ReadModelUnreachable(f"MongoDB unreachable: {type(error).__name__}") from error
        except OperationFailure as error:  # e.g. AuthenticationFailed: the reason's name, not its text
            raise ReadModelUnavailable(
                f"MongoDB refused: {(error.details or {}).get('codeName', error.code)}"
            ) from error
        except PyMongoError as error:
            raise ReadModelUnavailable(f"MongoDB error: {type(error).__name__}") from error
        return str(info.get("version", "?"))

    async def ping(self) -> bool:
        try:
            await self.client.admin.command("ping")
            return True
        except PyMongoError:
            return False

    async def close(self) -> None:
        await self.client.close()
