"""The Avro schemas under version control (``avro/*.avsc``), found wherever they were installed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from acme_customer.errors import ConfigError

USER_REGISTERED = "com.acme.identity.UserRegistered"
CUSTOMER_REGISTERED = "com.acme.customer.CustomerRegistered"


def schema_dirs() -> list[Path]:
    """$AVRO_SCHEMA_DIR, the repository's ``avro/`` (source checkouts), the installed data files."""
    candidates = [Path(__file__).resolve().parents[2] / "avro", Path(sys.prefix) / "share" / "acme-customer" / "avro"]
    if os.environ.get("AVRO_SCHEMA_DIR"):
        candidates.insert(0, Path(os.environ["AVRO_SCHEMA_DIR"]))
    return candidates


def load_schema(full_name: str) -> dict[str, Any]:
    """The parsed JSON of ``<full_name>.avsc``."""
    for folder in schema_dirs():
        path = folder / f"{full_name}.avsc"
        if path.exists():
            schema: dict[str, Any] = json.loads(path.read_text())
            return schema
    raise ConfigError(f"Avro schema {full_name}.avsc not found in {', '.join(map(str, schema_dirs()))}")
