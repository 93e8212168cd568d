"""The layers point one way: domain <- service_layer <- adapters <- stream edge and entrypoints.

Read from the source (every import statement), so a new module cannot slip past.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "acme_customer"
FRAMEWORKS = ("faust", "mode", "aiokafka", "psycopg", "psycopg_pool", "pymongo", "fastavro", "schema_registry", "httpx")


def imports_of(layer: str) -> dict[str, set[str]]:
    """module path -> the top-level names it imports (``acme_customer.x`` as ``acme_customer.x``)."""
    found: dict[str, set[str]] = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(PACKAGE))] = names
    assert found, f"no modules under {layer}/"
    return found


def _offending(names: set[str], forbidden: tuple[str, ...]) -> set[str]:
    return {name for name in names if any(name == f or name.startswith(f + ".") for f in forbidden)}


def test_the_domain_imports_no_framework_and_nothing_above_it() -> None:
    above = ("acme_customer.service_layer", "acme_customer.adapters", "acme_customer.entrypoints", "acme_customer.app")
    for module, names in imports_of("domain").items():
        assert not _offending(names, FRAMEWORKS + above + ("opentelemetry", "prometheus_client")), module


@pytest.mark.parametrize("forbidden", [("faust", "mode", "aiokafka"), ("acme_customer.faults",)])
def test_the_service_layer_imports_no_stream_framework_and_no_test_hook(forbidden: tuple[str, ...]) -> None:
    for module, names in imports_of("service_layer").items():
        assert not _offending(names, forbidden), module


def test_the_service_layer_imports_no_adapter_and_no_entrypoint() -> None:
    upward = ("acme_customer.adapters", "acme_customer.entrypoints", "acme_customer.app", "acme_customer.bootstrap")
    for module, names in imports_of("service_layer").items():
        assert not _offending(names, upward), module


def test_adapters_import_no_entrypoint() -> None:
    for module, names in imports_of("adapters").items():
        assert not _offending(names, ("acme_customer.entrypoints", "acme_customer.app", "acme_customer.bootstrap")), (
            module
        )


def test_the_read_api_access_decision_imports_no_web_framework() -> None:
    names = imports_of("entrypoints")["entrypoints/api_auth.py"]

    assert not _offending(names, (*FRAMEWORKS, "aiohttp", "acme_customer.app", "acme_customer.bootstrap"))
