"""Who may read the customer API: bearer tokens, compared in constant time, re-read from their file."""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

import pytest

from acme_customer.config import Settings, read_api_tokens_file
from acme_customer.entrypoints import api_auth
from acme_customer.entrypoints.api_auth import (
    Access,
    ApiAccess,
    FixedTokens,
    TokenFile,
    bearer_token,
    matches_any,
)
from acme_customer.errors import ConfigError

OLD = "old-token-0123456789abcdef"
NEW = "new-token-fedcba9876543210"
NEWEST = "newest-token-0a1b2c3d4e5f6071"


# --- the Authorization header -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (f"Bearer {OLD}", OLD),
        (f"bearer {OLD}", OLD),
        (f"BEARER   {OLD}  ", OLD),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        (OLD, None),
        (f"Basic {OLD}", None),
        (f"Token {OLD}", None),
        (f"Bearer {OLD} {NEW}", None),
    ],
)
def test_the_token_is_read_from_a_bearer_authorization_header_only(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


# --- the comparison ---------------------------------------------------------------------------


@pytest.mark.parametrize("presented", [OLD, NEW])
def test_either_of_two_valid_tokens_matches(presented: str) -> None:
    assert matches_any(presented, (OLD, NEW))


@pytest.mark.parametrize(
    "presented", [OLD[:-1], OLD + "0", OLD.upper(), f"{OLD},{NEW}", "", "ünïcode-token-value-0001", "\udcff" * 20]
)
def test_anything_else_matches_no_token(presented: str) -> None:
    assert not matches_any(presented, (OLD, NEW))


def test_no_token_matches_when_none_is_configured() -> None:
    assert not matches_any(OLD, ())


@pytest.mark.parametrize("presented", [OLD, NEW, "wrong-token-000000000000"])
def test_every_configured_token_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch, presented: str) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(api_auth.hmac, "compare_digest", compare_digest)

    matches_any(presented, (OLD, NEW, NEWEST))

    assert len(compared) == 3  # no early exit on the first match
    # digests of equal length, whatever the lengths of the tokens: the time says nothing of them
    assert {len(side) for pair in compared for side in pair} == {32}


# --- the decision -----------------------------------------------------------------------------


def test_without_tokens_the_api_is_disabled_for_everyone() -> None:
    access = ApiAccess(None)

    assert not access.enabled
    assert access.check(f"Bearer {OLD}") is Access.DISABLED
    assert access.check(None) is Access.DISABLED


@pytest.mark.parametrize(
    ("header", "verdict"),
    [
        (f"Bearer {OLD}", Access.GRANTED),
        (f"Bearer {NEW}", Access.GRANTED),
        (None, Access.MISSING),
        (f"Basic {OLD}", Access.MISSING),
        ("Bearer wrong-token-000000000000", Access.INVALID),
    ],
)
def test_a_request_is_granted_only_with_a_configured_bearer_token(header: str | None, verdict: Access) -> None:
    assert ApiAccess(FixedTokens((OLD, NEW))).check(header) is verdict


BASE_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
    "DATABASE_URL": "postgresql://localhost/customer",
    "MONGODB_URI": "mongodb://localhost",
    "EVENT_FORMAT": "json",
}


def test_access_follows_the_settings(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"{NEW}\n")

    from_list = ApiAccess.of(Settings.from_env({**BASE_ENV, "API_TOKENS": OLD}))
    from_file = ApiAccess.of(Settings.from_env({**BASE_ENV, "API_TOKENS_FILE": str(tokens_file)}))
    from_nothing = ApiAccess.of(Settings.from_env(BASE_ENV))

    assert from_list.check(f"Bearer {OLD}") is Access.GRANTED
    assert from_list.check(f"Bearer {NEW}") is Access.INVALID
    assert from_file.check(f"Bearer {NEW}") is Access.GRANTED
    assert from_file.check(f"Bearer {OLD}") is Access.INVALID
    assert from_nothing.check(f"Bearer {OLD}") is Access.DISABLED


# --- the tokens file, re-read on change -------------------------------------------------------


def _replace(path: Path, content: str) -> None:
    """As a Kubernetes Secret volume updates: a new file swapped in (a new inode)."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(content)
    os.replace(fresh, path)


def _file_access(path: Path) -> ApiAccess:
    return ApiAccess(TokenFile(str(path)))


def test_a_rotation_in_the_tokens_file_takes_effect_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{OLD}\n")
    access = _file_access(path)
    assert access.check(f"Bearer {NEW}") is Access.INVALID

    _replace(path, f"{OLD}\n{NEW}\n")  # step 1: both valid
    assert access.check(f"Bearer {OLD}") is Access.GRANTED
    assert access.check(f"Bearer {NEW}") is Access.GRANTED

    _replace(path, f"{NEW}\n")  # step 2: the old one removed
    assert access.check(f"Bearer {OLD}") is Access.INVALID
    assert access.check(f"Bearer {NEW}") is Access.GRANTED


def test_a_file_rewritten_in_place_is_re_read_too(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{OLD}\n")
    access = _file_access(path)

    path.write_text(f"{OLD}\n{NEWEST}\n")

    assert access.check(f"Bearer {NEWEST}") is Access.GRANTED


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{OLD}\n")
    reads: list[str] = []

    def read(name: str) -> tuple[str, ...]:
        reads.append(name)
        return read_api_tokens_file(name)

    tokens = TokenFile(str(path), read=read)
    for _ in range(3):
        assert tokens.current() == (OLD,)
    assert reads == [str(path)]  # once, at start

    path.write_text(f"{OLD}\n{NEW}\n")
    assert tokens.current() == (OLD, NEW)
    assert tokens.current() == (OLD, NEW)
    assert reads == [str(path)] * 2


def test_a_broken_or_missing_file_keeps_the_tokens_read_before_and_says_why_without_a_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "tokens"
    path.write_text(f"{OLD}\n{NEW}\n")
    access = _file_access(path)

    _replace(path, f"{NEW}\nshort-{NEWEST[:5]}\n")  # half-written: line 2 too short
    assert access.check(f"Bearer {OLD}") is Access.GRANTED
    path.unlink()
    assert access.check(f"Bearer {NEW}") is Access.GRANTED

    warnings = [entry.getMessage() for entry in caplog.records if entry.levelno == logging.WARNING]
    assert warnings == [
        "API_TOKENS_FILE: line 2 is shorter than 16 characters; the read API keeps the 2 token(s) it had",
        f"API_TOKENS_FILE: cannot read {path} (No such file or directory); the read API keeps the 2 token(s) it had",
    ]
    logged = "\n".join(entry.getMessage() for entry in caplog.records)
    assert OLD not in logged and NEW not in logged and NEWEST[:5] not in logged


def test_a_file_invalid_at_start_stops_the_worker_like_a_bad_setting(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("too-short\n")

    with pytest.raises(ConfigError) as caught:
        TokenFile(str(path))

    assert str(caught.value) == "API_TOKENS_FILE: line 1 is shorter than 16 characters"


def test_a_file_that_comes_back_is_read_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "tokens"
    path.write_text(f"{OLD}\n")
    access = _file_access(path)
    path.unlink()
    assert access.check(f"Bearer {OLD}") is Access.GRANTED

    path.write_text(f"{NEW}\n")

    assert access.check(f"Bearer {NEW}") is Access.GRANTED
    assert access.check(f"Bearer {OLD}") is Access.INVALID
    assert "API_TOKENS_FILE changed: the read API now accepts 1 token(s)" in caplog.messages
