"""Kafka's TLS/SASL settings as the clients take them, and the one line a refused handshake becomes.

End to end (a real SASL_SSL listener): tests/e2e/test_00_secure_kafka.py. Here, what needs no broker:
every protocol's options for aiokafka and Faust, and the wording of each refusal.
"""

from __future__ import annotations

import asyncio
import ssl

import faust
import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from acme_customer.adapters import kafka_security
from acme_customer.adapters.kafka_security import _reason, client_options, faust_credentials, refusal
from acme_customer.config import KafkaSecurity

SCRAM = KafkaSecurity(
    protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc", sasl_password="kafka-s3cret"
)


def test_plaintext_needs_no_options_and_no_credentials() -> None:
    assert client_options(KafkaSecurity()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(KafkaSecurity()) is None


def test_sasl_ssl_options_verify_the_brokers_certificate_and_name() -> None:
    options = client_options(SCRAM)

    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "kafka-s3cret",
    }
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


@pytest.mark.parametrize(
    ("security", "protocol", "mechanism"),
    [
        (SCRAM, "SASL_SSL", "SCRAM-SHA-512"),
        (KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_username="svc", sasl_password="pw"), "SASL_PLAINTEXT", "PLAIN"),
        (KafkaSecurity(protocol="SSL"), "SSL", None),
    ],
    ids=["sasl_ssl", "sasl_plaintext", "ssl"],
)
def test_faust_is_given_what_aiokafka_is_given(security: KafkaSecurity, protocol: str, mechanism: str | None) -> None:
    """Faust turns its credentials into aiokafka's arguments: they must match ours, protocol by protocol."""
    credentials = faust_credentials(security)

    assert isinstance(credentials, faust.SASLCredentials if mechanism else faust.SSLCredentials)
    given = dict(credentials_to_aiokafka_auth(credentials))
    ours = client_options(security)
    assert given["security_protocol"] == ours["security_protocol"] == protocol
    assert given.get("sasl_mechanism") == ours.get("sasl_mechanism") == mechanism
    assert given.get("sasl_plain_password") == ours.get("sasl_plain_password")
    assert (given.get("ssl_context") is None) == (ours.get("ssl_context") is None) == (protocol == "SASL_PLAINTEXT")
    assert "kafka-s3cret" not in repr(credentials)


def test_plaintext_is_never_diagnosed() -> None:
    assert asyncio.run(refusal("127.0.0.1:1", KafkaSecurity())) is None


def test_a_server_that_does_not_answer_is_not_called_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(kafka_security, "create_conn", refused)

    assert asyncio.run(refusal("127.0.0.1:9093,127.0.0.1:9094", SCRAM)) is None


def test_each_refusal_names_what_to_check() -> None:
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "self-signed certificate in certificate chain"
    with_ca = KafkaSecurity(protocol="SSL", ssl_cafile="/etc/kafka/ca.pem")

    assert _reason(SaslAuthenticationFailed(), SCRAM) == (
        "refused the SASL credentials (SCRAM-SHA-512, user svc):"
        " check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
    )
    assert _reason(UnsupportedSaslMechanismError(), SCRAM) == (
        "does not offer SASL mechanism SCRAM-SHA-512 on this listener: check KAFKA_SASL_MECHANISM"
    )
    assert _reason(untrusted, SCRAM) == (
        "presented a TLS certificate not trusted by the system's CAs: self-signed certificate in certificate chain;"
        " set KAFKA_SSL_CAFILE to the CA that signed the brokers' certificates"
    )
    assert _reason(untrusted, with_ca).startswith(
        "presented a TLS certificate not trusted by the CA in KAFKA_SSL_CAFILE (/etc/kafka/ca.pem): "
    )
    assert _reason(TimeoutError(), SCRAM) == (
        "did not complete the SASL_SSL handshake within 10 s: is it a SASL_SSL listener?"
    )
    mismatch = (
        "closed the connection during the SASL_SSL handshake: does that listener speak SASL_SSL?"
        " check KAFKA_SECURITY_PROTOCOL"
    )
    assert _reason(ConnectionResetError(), SCRAM) == mismatch  # TLS spoken to a plaintext listener
    assert _reason(KafkaConnectionError("Connection at 127.0.0.1:9093 closed"), SCRAM) == mismatch
    assert _reason(KafkaConnectionError("Unable to bootstrap"), SCRAM) is None
    assert _reason(ConnectionRefusedError(), SCRAM) is None


class _Connection:
    """What create_conn returns, answering the first request as told."""

    def __init__(self, answer: BaseException | None) -> None:
        self.answer = answer
        self.closed = False

    async def send(self, request: object) -> object:
        if self.answer is not None:
            raise self.answer
        return object()

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("answer", [None, KafkaConnectionError("Connection at 127.0.0.1:9093 closed")])
def test_a_handshake_that_succeeds_is_followed_by_one_request(
    monkeypatch: pytest.MonkeyPatch, answer: BaseException | None
) -> None:
    """TLS alone spoken to a SASL_SSL listener: the handshake passes, the first request is dropped."""
    connection = _Connection(answer)

    async def connected(*args: object, **kwargs: object) -> _Connection:
        return connection

    monkeypatch.setattr(kafka_security, "create_conn", connected)

    said = asyncio.run(refusal("127.0.0.1:9093", KafkaSecurity(protocol="SSL")))

    assert connection.closed
    assert said == (
        None
        if answer is None
        else "closed the connection at the first request over SSL: does that listener speak SSL?"
        " check KAFKA_SECURITY_PROTOCOL"
    )
