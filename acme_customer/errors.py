"""The service's exception tree; each driver's errors are mapped onto it once, in its adapter.

AcmeCustomerError
├── ConfigError            settings missing or malformed, one line each in ``problems`` (stops
│                          the worker at start)
├── StoreConflict          a uniqueness constraint fired (a concurrent writer got there first):
│                          redo the record alone, where it resolves as a duplicate
├── StoreDefect            PostgreSQL refused the statement, not the data (a bug, a missing
│                          migration or privilege, an unknown driver error): handled like any
│                          unexpected error, below
├── PermanentError         retrying cannot help: the record goes to the DLQ at once
│   ├── InvalidEvent       the input failed decoding or validation (carries the reason)
│   ├── RecordRejected     PostgreSQL refused the record (bad data, or a conflict that persists alone)
│   ├── ReadModelConflict  MongoDB refused a document on a unique secondary index
│   ├── UnknownCustomer    a CustomerRegistered names a customer the command store does not hold
│   └── FailedAlone        an unexpected error that one record, tried alone, keeps raising
└── TransientError         may succeed on retry (with backoff), then DLQ after the last attempt
    ├── StoreUnavailable   PostgreSQL unreachable, failing over, or a serialization failure
    ├── ReadModelUnavailable  MongoDB failed a request
    │   └── ReadModelUnreachable  MongoDB did not answer at all (down, restarting)
    ├── RegistryUnavailable   the schema registry could not be asked (only when a schema id is new)
    ├── BrokerUnavailable  an operator command's Kafka client could not reach the brokers
    ├── PublishFailed      Kafka did not acknowledge a produced record in time
    └── UnexplainedFailure an unexpected error that no single record explains (it struck a record
                           alone, or two records in a row): retried on the schedule, then
                           dead-lettered; never retried for ever

Any other exception in a batch (a driver's, a defect of ours) is *unexpected*: the batch is
tried again one record at a time, so that the one record it belongs to goes to the DLQ
(FailedAlone) and its neighbours go on; when it is no one record's, UnexplainedFailure.
"""

from __future__ import annotations


class AcmeCustomerError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(AcmeCustomerError):
    """One or more settings are missing or malformed; ``problems`` holds one line for each."""

    def __init__(self, *problems: str):
        super().__init__("; ".join(problems))
        self.problems = problems


class PermanentError(AcmeCustomerError):
    """Retrying cannot help; the record is dead-lettered at once."""


class InvalidEvent(PermanentError):
    """The input is not a valid event; ``str(error)`` is a reason a person can act on."""


class RecordRejected(PermanentError):
    """The database refused a record's data."""


class ReadModelConflict(PermanentError):
    """Another document holds this customer's userId or customerNumber in the read model."""


class StoreDefect(AcmeCustomerError):
    """PostgreSQL refused the statement itself, whatever the data: a defect, not a record's fault."""


class UnknownCustomer(PermanentError):
    """A CustomerRegistered names a customer that the command store does not hold."""


class FailedAlone(PermanentError):
    """An unexpected error that a record raises when tried alone (its neighbours succeeded)."""

    def __init__(self, cause: BaseException):
        # the class only: a driver's message may quote the record's data (personal data)
        super().__init__(f"unexpected {type(cause).__name__} when this record was tried alone")


class StoreConflict(AcmeCustomerError):
    """A uniqueness constraint fired inside a batch; the records are redone one by one."""


class TransientError(AcmeCustomerError):
    """May succeed when tried again later."""


class StoreUnavailable(TransientError):
    """PostgreSQL could not complete the transaction (unreachable, failover, serialization)."""


class ReadModelUnavailable(TransientError):
    """MongoDB could not complete a request."""


class ReadModelUnreachable(ReadModelUnavailable):
    """MongoDB did not answer at all: an outage, over when it answers again."""


class RegistryUnavailable(TransientError):
    """The schema registry could not be reached or answered an error."""


class BrokerUnavailable(TransientError):
    """Kafka could not be reached by a client of ours (bootstrap, metadata, a read)."""


class PublishFailed(TransientError):
    """Kafka did not acknowledge a produced record."""


class UnexplainedFailure(TransientError):
    """An unexpected error no single record explains; retried on the schedule, then dead-lettered."""

    def __init__(self, cause: BaseException):
        super().__init__(f"unexpected {type(cause).__name__} (see the worker log)")
