"""The local stack's components: how each is installed, started and probed.

Every component is a real server run as a child process we own:
Apache Kafka (one KRaft broker+controller), Apicurio Registry 3, PostgreSQL 16
(the binaries of the ``pgserver`` wheel) and a MongoDB wire server (``mongod``
when installed, otherwise FerretDB v1 with its SQLite backend).
"""

from acme_customer.devstack.components.base import (
    APICURIO_VERSION,
    FERRETDB_VERSION,
    KAFKA_VERSION,
    POSTGRES_OS_USER,
    START_MARKER,
    Component,
    ComponentError,
    Launch,
    Layout,
    http_ok,
    java_binary,
    port_open,
)
from acme_customer.devstack.components.kafka import Kafka
from acme_customer.devstack.components.mongo import Mongo
from acme_customer.devstack.components.postgres import Postgres
from acme_customer.devstack.components.registry import Registry

COMPONENTS: tuple[type[Component], ...] = (Postgres, Mongo, Kafka, Registry)

__all__ = [
    "APICURIO_VERSION",
    "COMPONENTS",
    "FERRETDB_VERSION",
    "KAFKA_VERSION",
    "POSTGRES_OS_USER",
    "START_MARKER",
    "Component",
    "ComponentError",
    "Kafka",
    "Launch",
    "Layout",
    "Mongo",
    "Postgres",
    "Registry",
    "http_ok",
    "java_binary",
    "port_open",
]
