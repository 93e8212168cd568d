"""PostgreSQL's errors mapped once onto ours: outage, bad data, conflict, or a defect."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg_errors

from acme_customer.adapters.postgres import translate
from acme_customer.errors import (
    PermanentError,
    RecordRejected,
    StoreConflict,
    StoreDefect,
    StoreUnavailable,
    TransientError,
)


@pytest.mark.parametrize(
    ("error", "ours"),
    [
        (pg_errors.UniqueViolation(), StoreConflict),
        (pg_errors.NotNullViolation(), RecordRejected),
        (pg_errors.StringDataRightTruncation(), RecordRejected),
        (pg_errors.CharacterNotInRepertoire(), RecordRejected),
        (pg_errors.SerializationFailure(), StoreUnavailable),
        (pg_errors.DeadlockDetected(), StoreUnavailable),
        (pg_errors.AdminShutdown(), StoreUnavailable),
        (pg_errors.QueryCanceled(), StoreUnavailable),
        (pg_errors.LockNotAvailable(), StoreUnavailable),
        (pg_errors.TooManyConnections(), StoreUnavailable),
        (psycopg.OperationalError("connection lost"), StoreUnavailable),
        (psycopg.InterfaceError("the connection is closed"), StoreUnavailable),
        (pg_errors.UndefinedTable(), StoreDefect),
        (pg_errors.SyntaxError(), StoreDefect),
        (pg_errors.InsufficientPrivilege(), StoreDefect),
        (psycopg.ProgrammingError("a bug"), StoreDefect),
        (psycopg.NotSupportedError(), StoreDefect),
        (psycopg.InternalError(), StoreDefect),
        (psycopg.Error("unknown"), StoreDefect),
        # an OperationalError, but not an outage: a statement skipped after a failed one (pipeline mode)
        (pg_errors.PipelineAborted("pipeline aborted"), StoreDefect),
    ],
)
def test_each_driver_error_maps_to_what_retrying_it_can_achieve(error: Exception, ours: type[Exception]) -> None:
    assert type(translate(error)) is ours


def test_a_defect_is_neither_retried_as_transient_nor_dead_lettered_as_the_records_fault() -> None:
    assert not issubclass(StoreDefect, (PermanentError, TransientError))
