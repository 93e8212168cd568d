"""MongoDB: the customer read model (one document per customer, ``_id`` = customerId).

A document is only ever replaced by a higher ``_version``: the upsert's filter matches an
older version or nothing; when a newer one is stored, the upsert's insert collides on
``_id`` (duplicate key), which here means "stale, skip".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError, ServerSelectionTimeoutError

from acme_customer.errors import ReadModelUnavailable
from acme_customer.service_layer.project_customers import ReadModel

COLLECTION = "customers"
DUPLICATE_KEY = 11000

Document = dict[str, Any]


class MongoReadModel(ReadModel):
    def __init__(self, client: AsyncMongoClient[Document], database: str):
        self.client = client
        self.collection = client[database][COLLECTION]

    @classmethod
    def create(cls, uri: str, database: str) -> MongoReadModel:
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, tz_aware=True
        )
        return cls(client, database)

    async def ensure_indexes(self) -> None:
        try:
            await self.collection.create_index([("userId", ASCENDING)], unique=True, name="uniq_userId")
            await self.collection.create_index([("customerNumber", ASCENDING)], unique=True, name="uniq_customerNumber")
            await self.collection.create_index([("email", ASCENDING)], name="idx_email")
            await self.collection.create_index([("status", ASCENDING)], name="idx_status")
        except PyMongoError as error:
            raise ReadModelUnavailable(f"MongoDB index creation failed: {type(error).__name__}") from error

    async def upsert(self, documents: Sequence[Document]) -> int:
        """Store each document unless a newer ``_version`` is there; return how many were written."""
        if not documents:
            return 0
        operations = [
            UpdateOne({"_id": doc["_id"], "_version": {"$lt": doc["_version"]}}, {"$set": doc}, upsert=True)
            for doc in documents
        ]
        try:
            result = await self.collection.bulk_write(operations, ordered=False)
            return result.upserted_count + result.modified_count
        except BulkWriteError as error:
            details = error.details
            others = [e for e in details.get("writeErrors", []) if not _stale(e)]
            if others:
                raise ReadModelUnavailable(
                    f"MongoDB refused {len(others)} document(s): code {others[0].get('code')}"
                ) from error
            return int(details.get("nUpserted", 0)) + int(details.get("nModified", 0))
        except (ConnectionFailure, ServerSelectionTimeoutError) as error:
            raise ReadModelUnavailable(f"MongoDB unavailable: {type(error).__name__}") from error
        except PyMongoError as error:
            raise ReadModelUnavailable(f"MongoDB error: {type(error).__name__}") from error

    async def find_one(self, query: Document) -> Document | None:
        try:
            return await self.collection.find_one(query)
        except PyMongoError as error:
            raise ReadModelUnavailable(f"MongoDB error: {type(error).__name__}") from error

    async def ping(self) -> bool:
        try:
            await self.client.admin.command("ping")
            return True
        except PyMongoError:
            return False

    async def close(self) -> None:
        await self.client.close()


def _stale(write_error: Document) -> bool:
    """A duplicate key on ``_id`` from the guarded upsert: a newer version is already stored."""
    if write_error.get("code") != DUPLICATE_KEY:
        return False
    key = write_error.get("keyValue") or {}
    message = str(write_error.get("errmsg", ""))
    return "_id" in key or "_id_" in message or "_id" in message
