"""Kafka's second listener, SASL_SSL with SCRAM-SHA-512, as production clusters (Confluent Cloud too) ask.

Everything is throwaway and made at the first start under ``.devstack/kafka/sasl/``: a CA, a
broker certificate it signs for 127.0.0.1 and localhost (with the ``keytool`` of the Java that
runs Kafka: no openssl needed), a random password for one SCRAM user. The PLAINTEXT listener the
rest of the suite uses is left as it was.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from acme_customer.devstack.components.base import ComponentError

MECHANISM = "SCRAM-SHA-512"
USERNAME = "acme-customer"
LISTENER = "SASL_SSL"
_SUBJECT_NAMES = "SAN=ip:127.0.0.1,dns:localhost"
_VALID_DAYS = "3650"


@dataclass(frozen=True)
class SaslSsl:
    """The listener's files and its one user, kept in ``folder``."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        """The CA a client must trust (PEM)."""
        return self.folder / "ca.pem"

    @property
    def keystore(self) -> Path:
        """The broker's key and certificate chain (PKCS12)."""
        return self.folder / "broker.p12"

    @property
    def _secrets_file(self) -> Path:
        return self.folder / "secrets.json"

    def _secrets(self) -> dict[str, str]:
        return dict(json.loads(self._secrets_file.read_text()))

    @property
    def password(self) -> str:
        """The SCRAM user's password."""
        return self._secrets()["password"]

    @property
    def store_password(self) -> str:
        return self._secrets()["store_password"]

    @property
    def scram_argument(self) -> str:
        """``kafka-storage format --add-scram``'s argument: the user, created with the cluster."""
        return f"{MECHANISM}=[name={USERNAME},password={self.password}]"

    def ensure(self, keytool: Path) -> None:
        """Make the secrets, the CA and the broker's keystore, unless an earlier start made them."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        if not self._secrets_file.exists():
            self._secrets_file.write_text(
                json.dumps({"password": secrets.token_urlsafe(24), "store_password": secrets.token_urlsafe(24)})
            )
        if self.keystore.exists() and self.ca_file.exists():
            return
        ca_store = self.folder / "ca.p12"
        for leftover in (ca_store, self.keystore, self.ca_file):
            leftover.unlink(missing_ok=True)
        generate = ["-genkeypair", "-keyalg", "EC", "-groupname", "secp256r1", "-validity", _VALID_DAYS]
        self._keytool(keytool, [*generate, "-alias", "ca", "-dname", "CN=acme devstack CA", "-ext", "bc:c"], ca_store)
        self._keytool(keytool, [*generate, "-alias", "broker", "-dname", "CN=localhost", "-ext", _SUBJECT_NAMES])
        request = self._keytool(keytool, ["-certreq", "-alias", "broker"])
        signed = self._keytool(
            keytool,
            ["-gencert", "-alias", "ca", "-rfc", "-validity", _VALID_DAYS, "-ext", _SUBJECT_NAMES],
            ca_store,
            stdin=request,
        )
        self.ca_file.write_text(self._keytool(keytool, ["-exportcert", "-alias", "ca", "-rfc"], ca_store))
        self._keytool(keytool, ["-importcert", "-noprompt", "-alias", "ca", "-file", str(self.ca_file)])
        self._keytool(keytool, ["-importcert", "-alias", "broker"], stdin=signed)
        ca_store.unlink()  # the CA's key signs nothing more; the trust anchor is ca.pem

    def _keytool(self, keytool: Path, args: list[str], store: Path | None = None, stdin: str | None = None) -> str:
        argv = [str(keytool), *args, "-keystore", str(store or self.keystore)]
        argv += ["-storetype", "PKCS12", "-storepass", self.store_password]
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ComponentError(f"keytool {args[0]} failed (exit {result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def broker_properties(self) -> list[str]:
        """server.properties lines for the listener (besides its place in listeners and the protocol map)."""
        prefix = f"listener.name.{LISTENER.lower()}"
        return [
            f"{prefix}.sasl.enabled.mechanisms={MECHANISM}",
            f"{prefix}.{MECHANISM.lower()}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            f"{prefix}.ssl.keystore.type=PKCS12",
            f"{prefix}.ssl.keystore.location={self.keystore}",
            f"{prefix}.ssl.keystore.password={self.store_password}",
            f"{prefix}.ssl.key.password={self.store_password}",
        ]

    def env(self, port: int) -> dict[str, str]:
        """The endpoint and the client's settings, under names the worker does not read (none before
        the first start has made them)."""
        if not (self._secrets_file.exists() and self.ca_file.exists()):
            return {}
        return {
            "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
            "KAFKA_SASL_SSL_CAFILE": str(self.ca_file),
            "KAFKA_SASL_SSL_MECHANISM": MECHANISM,
            "KAFKA_SASL_SSL_USERNAME": USERNAME,
            "KAFKA_SASL_SSL_PASSWORD": self.password,
        }
