"""Kafka's TLS/SASL settings as each client takes them, and why a secured connection is refused.

Every Kafka client of the service is built with these: aiokafka's own (operators' commands, the
consumer-lag reader) with ``client_options``, Faust's with ``faust_credentials``. When a client
cannot bootstrap, aiokafka says only "Unable to bootstrap" and logs the reason; ``refusal``
connects once more by itself to tell an operator, in one phrase, what to fix.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import faust
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest

from acme_customer.config import KafkaSecurity

PROBE_TIMEOUT_S = 10.0


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """A verifying context (hostname checked) trusting KAFKA_SSL_CAFILE, or the system's CAs when unset."""
    if security.protocol not in ("SSL", "SASL_SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(cafile=security.ssl_cafile)
    return context


def client_options(security: KafkaSecurity) -> dict[str, Any]:
    """aiokafka's arguments for the TLS/SASL settings (the same ones Faust's clients get)."""
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(security)
    if security.protocol.startswith("SASL"):
        options["sasl_mechanism"] = security.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = security.sasl_username
        options["sasl_plain_password"] = security.sasl_password
    return options


def faust_credentials(security: KafkaSecurity) -> Any:
    """Faust's ``broker_credentials`` for the settings (None for PLAINTEXT)."""
    if security.protocol == "PLAINTEXT":
        return None
    context = ssl_context(security)
    if security.protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password,
            mechanism=security.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


async def refusal(bootstrap_servers: str, security: KafkaSecurity) -> str | None:
    """Why the TLS or SASL handshake with the bootstrap servers fails, in one phrase naming the
    settings to check; None when one of them accepts, or when none answers at all (then it is
    not the security settings: the caller's own "unavailable" says enough)."""
    if security.protocol == "PLAINTEXT":
        return None
    reasons: list[str] = []
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            connection = await asyncio.wait_for(
                create_conn(
                    host, int(port), request_timeout_ms=int(PROBE_TIMEOUT_S * 1000), **client_options(security)
                ),
                PROBE_TIMEOUT_S,
            )
        except (OSError, KafkaError, TimeoutError, ValueError) as error:
            reason = _reason(error, security)
            if reason is not None and reason not in reasons:
                reasons.append(reason)
            continue
        try:  # TLS alone to a SASL_SSL listener gets this far: the broker closes at the first request
            await asyncio.wait_for(connection.send(MetadataRequest([])), PROBE_TIMEOUT_S)
        except (OSError, KafkaError, TimeoutError):
            reason = (
                f"closed the connection at the first request over {security.protocol}:"
                f" does that listener speak {security.protocol}? check KAFKA_SECURITY_PROTOCOL"
            )
            if reason not in reasons:
                reasons.append(reason)
            continue
        finally:
            connection.close()
        return None
    return "; ".join(reasons) or None


def _reason(error: BaseException, security: KafkaSecurity) -> str | None:
    mechanism = security.sasl_mechanism or "PLAIN"
    if isinstance(error, SaslAuthenticationFailed):
        return (
            f"refused the SASL credentials ({mechanism}, user {security.sasl_username}):"
            " check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
        )
    if isinstance(error, UnsupportedSaslMechanismError):
        return f"does not offer SASL mechanism {mechanism} on this listener: check KAFKA_SASL_MECHANISM"
    if isinstance(error, ssl.SSLCertVerificationError):
        trusted = f"the CA in KAFKA_SSL_CAFILE ({security.ssl_cafile})" if security.ssl_cafile else "the system's CAs"
        return (
            f"presented a TLS certificate not trusted by {trusted}: {error.verify_message};"
            " set KAFKA_SSL_CAFILE to the CA that signed the brokers' certificates"
        )
    if isinstance(error, ssl.SSLError):
        return f"failed the TLS handshake ({error.reason or error}): is it a {security.protocol} listener?"
    if isinstance(error, ConnectionResetError) or (isinstance(error, KafkaConnectionError) and "closed" in str(error)):
        # it accepted the connection and dropped it at the first bytes: another protocol listens there
        return (
            f"closed the connection during the {security.protocol} handshake:"
            f" does that listener speak {security.protocol}? check KAFKA_SECURITY_PROTOCOL"
        )
    if isinstance(error, TimeoutError):
        return (
            f"did not complete the {security.protocol} handshake within {PROBE_TIMEOUT_S:.0f} s:"
            f" is it a {security.protocol} listener?"
        )
    return None
