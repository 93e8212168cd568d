"""MongoDB: the customer read model (one document per customer, ``_id`` = customerId).

A document is only ever replaced by a higher ``_version``: the upsert's filter matches an
older version or nothing; when a newer one is stored, the upsert's insert collides on
``_id`` (duplicate key), which here means "stale, skip".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError, ServerSelectionTimeoutError

from acme_customer.errors import ReadModelConflict, ReadModelUnavailable
from acme_customer.service_layer.project_customers import ReadModel

COLLECTION = "customers"

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
        """Store each document unless the same or a newer ``_version`` is there; return how many were written."""
        if not documents:
            return 0
        try:
            stored = {
                found["_id"]: found.get("_version", 0)
                async for found in self.collection.find(
                    {"_id": {"$in": [doc["_id"] for doc in documents]}}, {"_version": 1}
                )
            }
            # One guarded write per document, sent concurrently. Not bulk_write: FerretDB 1.24
            # answers an unordered bulk upsert that hits a duplicate key with a reply pymongo
            # cannot read (see docs/local-stack.md); single writes behave alike on both servers.
            newer = [doc for doc in documents if stored.get(doc["_id"], 0) < doc["_version"]]
            written = await asyncio.gather(*(self._guarded_upsert(doc) for doc in newer))
            return sum(written)
        except ReadModelConflict:
            raise
        except (ConnectionFailure, ServerSelectionTimeoutError) as error:
            raise ReadModelUnavailable(f"MongoDB unavailable: {type(error).__name__}") from error
        except PyMongoError as error:
            raise ReadModelUnavailable(f"MongoDB error: {type(error).__name__}") from error

    async def _guarded_upsert(self, document: Document) -> int:
        try:
            result = await self.collection.update_one(
                {"_id": document["_id"], "_version": {"$lt": document["_version"]}}, {"$set": document}, upsert=True
            )
        except DuplicateKeyError as error:
            # Stale when the same or a newer version holds the _id. Asked of the data, not of the
            # error: FerretDB 1.24 does not say which key collided (MongoDB's keyValue would).
            stored = await self.collection.find_one({"_id": document["_id"]}, {"_version": 1})
            if stored is not None and stored.get("_version", 0) >= document["_version"]:
                return 0
            raise ReadModelConflict(
                f"customer {document['_id']}: another document holds its userId or customerNumber"
            ) from error
        return 1 if (result.upserted_id is not None or result.modified_count) else 0

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
