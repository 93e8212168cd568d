"""Apache Kafka: one KRaft broker and controller from the jars on Maven Central."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from acme_customer.devstack.components.base import (
    KAFKA_VERSION,
    START_MARKER,
    Component,
    Launch,
    java_binary,
    maven_copy,
    port_open,
    run_checked,
)
from acme_customer.devstack.components.kafka_sasl import MECHANISM, USERNAME, SaslSsl


class Kafka(Component):
    name = "kafka"
    port_names = ("kafka", "kafka_controller", "kafka_sasl_ssl")

    @property
    def sasl_ssl(self) -> SaslSsl:
        return SaslSsl(self.home / "sasl")

    @property
    def _scram_user_made(self) -> Path:
        """Written once the SCRAM user exists (made with the storage, or added to an older one)."""
        return self.home / "data" / ".acme-scram-user"

    @property
    def libs(self) -> Path:
        return self.home / "libs" / KAFKA_VERSION

    def install(self) -> None:
        if (self.libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            return
        self.libs.mkdir(parents=True, exist_ok=True)
        maven_copy(
            self.layout,
            [
                "dependency:copy-dependencies",
                f"-Dkafka.version={KAFKA_VERSION}",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            "resolving the Kafka jars with Maven",
        )

    def prepare(self) -> None:
        data = self.home / "data"
        config = self.home / "server.properties"
        port, controller, sasl_ssl = self.ports["kafka"], self.ports["kafka_controller"], self.ports["kafka_sasl_ssl"]
        self.sasl_ssl.ensure(Path(java_binary()).resolve().parent / "keytool")
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller}",
                    f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},"
                    f"SASL_SSL://127.0.0.1:{sasl_ssl}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sasl_ssl}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
                    *self.sasl_ssl.broker_properties(),
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",  # topics come from `acme-customer topics ensure`
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )
        (self.home / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.request.logger=WARN\n"
            "log4j.logger.state.change.logger=WARN\n"
        )
        if (data / "meta.properties").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        cluster_id = _cluster_id()
        run_checked(
            [
                *self._java(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config),
                "--add-scram",
                self.sasl_ssl.scram_argument,
            ],
            "formatting the Kafka storage",
            log=self.layout.log_of(self.name),
        )
        self._scram_user_made.touch()

    def after_ready(self) -> None:
        if self._scram_user_made.exists():
            return
        # a storage formatted before the SASL_SSL listener existed: add the user to the running broker
        run_checked(
            [
                *self._java(),
                "kafka.admin.ConfigCommand",
                "--bootstrap-server",
                f"127.0.0.1:{self.ports['kafka']}",
                "--alter",
                "--add-config",
                f"{MECHANISM}=[password={self.sasl_ssl.password}]",
                "--entity-type",
                "users",
                "--entity-name",
                USERNAME,
            ],
            "creating the SCRAM user",
            log=self.layout.log_of(self.name),
        )
        self._scram_user_made.touch()

    def _java(self) -> list[str]:
        return [
            java_binary(),
            "-Xms256m",
            "-Xmx768m",
            f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
            "-cp",
            f"{self.libs}/*",
        ]

    def launch(self) -> Launch:
        return Launch([*self._java(), "kafka.Kafka", str(self.home / "server.properties")], self.home)

    def ready(self) -> bool:
        if not port_open(self.ports["kafka"]):
            return False
        log = self.layout.log_of(self.name)
        if not log.exists():
            return False
        this_run = log.read_text(errors="replace").rsplit(START_MARKER, 1)[-1]
        return "Kafka Server started" in this_run

    def outdated(self) -> bool:
        # a broker started before the SASL_SSL listener existed (it has no keystore yet)
        return not self.sasl_ssl.keystore.exists()

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.ports['kafka']}",
            **self.sasl_ssl.env(self.ports["kafka_sasl_ssl"]),
        }


def _cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64, as Kafka's own tool makes them.

    Never one that begins with "-" (1 in 64 otherwise): the storage tool would read it as an
    option and refuse to format (seen here), which is why Kafka's ``Uuid.randomUuid`` skips those too.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
