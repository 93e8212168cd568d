"""The MongoDB read model read for ``verify`` (one cursor, in pages) and repaired by ``reconcile``.

The documents are read with one cursor in natural order: a page of them is then compared with
the customers PostgreSQL holds for their ids. (Asking MongoDB for the documents of a page of
customers instead would be as cheap on MongoDB, through the ``_id`` index, but the local
stand-in, FerretDB 1.24 on SQLite, scans the whole collection for every ``$in`` or range query:
quadratic. One cursor is linear on both; see docs/local-stack.md.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from pymongo.errors import ConnectionFailure, PyMongoError

from acme_customer.adapters.mongo import INDEXES, MongoReadModel, indexes_of
from acme_customer.domain.customer_number import PREFIX
from acme_customer.errors import ReadModelUnavailable, ReadModelUnreachable
from acme_customer.service_layer.verify_stores import IndexReport, ReadModelAudit

PAGE_SIZE = 5000


def _translated(error: PyMongoError) -> Exception:
    if isinstance(error, ConnectionFailure):
        return ReadModelUnreachable(f"MongoDB unreachable: {type(error).__name__}")
    return ReadModelUnavailable(f"MongoDB error: {type(error).__name__}")


class MongoAudit(ReadModelAudit):
    def __init__(self, read_model: MongoReadModel, page_size: int = PAGE_SIZE):
        self.read_model = read_model
        self.collection = read_model.collection
        self.page_size = page_size

    async def document_pages(self, since: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        query = {"customerNumber": {"$gte": f"{PREFIX}-{since}"}} if since else {}
        page: list[dict[str, Any]] = []
        try:
            async for document in self.collection.find(query, batch_size=self.page_size):
                page.append(document)
                if len(page) == self.page_size:
                    yield page
                    page = []
        except PyMongoError as error:
            raise _translated(error) from error
        if page:
            yield page

    async def index_report(self) -> IndexReport:
        try:
            found = await indexes_of(self.collection)
        except PyMongoError as error:
            raise _translated(error) from error
        declared = {index.name: index for index in INDEXES}
        return IndexReport(
            missing=[name for name in declared if name not in found],
            different=[name for name, index in declared.items() if name in found and found[name] != index],
            undeclared=sorted(name for name in found if name not in declared),
        )

    async def ensure_indexes(self) -> None:
        await self.read_model.ensure_indexes()

    async def replace_unless_newer(self, documents: Sequence[dict[str, Any]]) -> int:
        replaced = 0
        try:
            for document in documents:
                result = await self.collection.replace_one(
                    {"_id": document["_id"], "_version": {"$lte": document["_version"]}}, document
                )
                replaced += result.modified_count
        except PyMongoError as error:
            raise _translated(error) from error
        return replaced

    async def delete(self, document_ids: Sequence[Any]) -> int:
        deleted = 0
        try:
            for document_id in document_ids:  # one by one: FerretDB finds an _id only by equality
                deleted += (await self.collection.delete_one({"_id": document_id})).deleted_count
        except PyMongoError as error:
            raise _translated(error) from error
        return deleted
