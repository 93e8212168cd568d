"""The service's exception tree; each driver's errors are mapped onto it once, in its adapter.

AcmeCustomerError
├── ConfigError            a setting is missing or malformed (stops the worker at start)
├── StoreConflict          a uniqueness constraint fired (a concurrent writer got there first):
│                          redo the record alone, where it resolves as a duplicate
├── PermanentError         retrying cannot help: the record goes to the DLQ at once
│   ├── InvalidEvent       the input failed decoding or validation (carries the reason)
│   ├── RecordRejected     PostgreSQL refused the record (bad data, or a conflict that persists alone)
│   └── ReadModelConflict  MongoDB refused a document on a unique secondary index
└── TransientError         may succeed on retry (with backoff), then DLQ after the last attempt
    ├── StoreUnavailable   PostgreSQL unreachable, failing over, or a serialization failure
    ├── ReadModelUnavailable  MongoDB failed a request
    │   └── ReadModelUnreachable  MongoDB did not answer at all (down, restarting)
    ├── RegistryUnavailable   the schema registry could not be asked (only when a schema id is new)
    └── PublishFailed      Kafka did not acknowledge a produced record in time
"""

from __future__ import annotations


class AcmeCustomerError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(AcmeCustomerError):
    """A setting is missing or malformed."""


class PermanentError(AcmeCustomerError):
    """Retrying cannot help; the record is dead-lettered at once."""


class InvalidEvent(PermanentError):
    """The input is not a valid event; ``str(error)`` is a reason a person can act on."""


class RecordRejected(PermanentError):
    """The database refused a record's data."""


class ReadModelConflict(PermanentError):
    """Another document holds this customer's userId or customerNumber in the read model."""


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


class PublishFailed(TransientError):
    """Kafka did not acknowledge a produced record."""
