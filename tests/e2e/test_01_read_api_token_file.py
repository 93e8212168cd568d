"""A worker reading its read-API tokens from API_TOKENS_FILE, and a rotation without a restart.

Named 01 to run before the session worker exists: this worker joins the consumer group, and
a rebalance is better had before the session worker starts than in the middle of its tests.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, Stack, Worker, http_json

pytestmark = pytest.mark.e2e

OLD = "file-old-token-0123456789abcdef"
NEW = "file-new-token-fedcba9876543210"


def _replace(path: Path, content: str) -> None:
    """As a Kubernetes Secret volume updates: the new file swapped in at once."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(content)
    os.replace(fresh, path)


def test_tokens_come_from_api_tokens_file_and_a_rotation_there_needs_no_restart(stack: Stack, tmp_path: Path) -> None:
    tokens_file = tmp_path / "api-tokens"
    tokens_file.write_text(f"# the read API's bearer tokens\n{OLD}\n")
    log = Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack")) / "logs" / "e2e-token-file-worker.log"
    worker = Worker(env={**stack.env, "API_TOKENS_FILE": str(tokens_file)}, log_path=log).start()
    # a customer nobody has: 404 says the token was accepted, 401 that it was not
    url = f"{worker.url}/api/v1/customers/{uuid.uuid4()}"
    try:
        worker.wait_ready()
        assert http_json(url, OLD)[0] == 404
        assert http_json(url, NEW)[0] == 401
        assert http_json(url)[0] == 401

        _replace(tokens_file, f"{OLD}\n{NEW}\n")  # rotation step 1: both valid
        assert http_json(url, OLD)[0] == 404
        assert http_json(url, NEW)[0] == 404

        _replace(tokens_file, f"{NEW}\n")  # step 2: the old one removed
        assert http_json(url, OLD)[0] == 401
        assert http_json(url, NEW)[0] == 404
    finally:
        assert worker.stop(timeout=30) == 0
    text = log.read_text(errors="replace")
    assert OLD not in text and NEW not in text
