"""Who may read the customer API: a bearer token, checked in constant time. No web framework here.

The tokens come from ``API_TOKENS`` (fixed for the life of the worker) or ``API_TOKENS_FILE``,
which is re-read when it changes (a stat per request: a Kubernetes Secret update takes effect
without a restart). With neither, the API is disabled: it is never open.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Sequence
from typing import Protocol

from acme_customer.config import Settings, read_api_tokens_file
from acme_customer.errors import ConfigError

logger = logging.getLogger(__name__)

API_DISABLED = "read API disabled: set API_TOKENS or API_TOKENS_FILE"


class Access(enum.Enum):
    GRANTED = "granted"
    MISSING = "missing"  # no bearer token presented
    INVALID = "invalid"  # a token that is not one of ours
    DISABLED = "disabled"  # no token configured: nobody may read


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(character.isspace() for character in token):
        return None
    return token


def _digest(token: str) -> bytes:
    # equal-length digests: the comparison time says nothing about a token's length either
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def matches_any(presented: str, tokens: Sequence[str]) -> bool:
    """True when ``presented`` is one of ``tokens``; every token is compared, whichever matches."""
    presented_digest = _digest(presented)
    matched = False
    for token in tokens:
        # no early exit, and `|` not `or`: the time taken does not say which token matched
        matched |= hmac.compare_digest(presented_digest, _digest(token))
    return matched


class TokenSource(Protocol):
    def current(self) -> tuple[str, ...]: ...


class FixedTokens:
    """Tokens given once (``API_TOKENS``)."""

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._tokens = tokens

    def current(self) -> tuple[str, ...]:
        return self._tokens


def _file_version(path: str) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)  # follows the symlink a Kubernetes Secret volume swaps on update
    except OSError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


class TokenFile:
    """The tokens of ``API_TOKENS_FILE``, re-read whenever the file changes.

    A change that leaves the file unreadable or invalid keeps the tokens read before (one
    WARNING per change, naming the problem, never a token): a half-written Secret must not lock
    every caller out, and revoking a token is done by writing a valid file without it.
    """

    def __init__(self, path: str, read: Callable[[str], tuple[str, ...]] = read_api_tokens_file) -> None:
        self.path = path
        self._read = read
        # the version before the content: a change in between is seen at the next check
        self._version = _file_version(path)
        self._tokens = read(path)  # ConfigError here stops the worker, as at configuration

    def current(self) -> tuple[str, ...]:
        version = _file_version(self.path)
        if version != self._version:
            self._version = version
            self._reload()
        return self._tokens

    def _reload(self) -> None:
        try:
            tokens = self._read(self.path)
        except ConfigError as error:
            logger.warning("%s; the read API keeps the %d token(s) it had", error, len(self._tokens))
            return
        self._tokens = tokens
        logger.info("API_TOKENS_FILE changed: the read API now accepts %d token(s)", len(tokens))


class ApiAccess:
    """Decides whether a request may read the customer API, from its Authorization header."""

    def __init__(self, source: TokenSource | None) -> None:
        self._source = source

    @classmethod
    def of(cls, settings: Settings) -> ApiAccess:
        if settings.api_tokens_file:
            return cls(TokenFile(settings.api_tokens_file))
        return cls(FixedTokens(settings.api_tokens) if settings.api_tokens else None)

    @property
    def enabled(self) -> bool:
        return self._source is not None

    def check(self, authorization: str | None) -> Access:
        if self._source is None:
            return Access.DISABLED
        presented = bearer_token(authorization)
        if presented is None:
            return Access.MISSING
        return Access.GRANTED if matches_any(presented, self._source.current()) else Access.INVALID
