"""The Kafka value codec at the edge: bytes <-> event documents.

Reads plain JSON (first byte ``{``) and recognises the Confluent Avro wire format (magic
byte 0); writes JSON. Anything else is refused with a reason the DLQ record carries.
"""

from __future__ import annotations

import json
from typing import Any

from acme_customer.errors import InvalidEvent

MAX_VALUE_BYTES = 1024 * 1024
AVRO_MAGIC = 0


def decode(value: bytes | None) -> Any:
    """The decoded document of a record value; InvalidEvent says why it cannot be read."""
    if not value:
        raise InvalidEvent("value: empty")
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidEvent(f"value: {len(value)} bytes, more than the {MAX_VALUE_BYTES} this service reads")
    if value[0] == AVRO_MAGIC:
        raise InvalidEvent("value: Avro wire format is not decoded by this build yet (send JSON)")
    try:
        return json.loads(value)
    except (UnicodeDecodeError, ValueError):
        raise InvalidEvent("value: not Avro or JSON") from None
    except RecursionError:  # e.g. 100,000 nested arrays: valid JSON, but not an event
        raise InvalidEvent("value: JSON nested too deeply") from None


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
