"""API keys → tenant and scopes.

Keys are stored hashed (SHA-256) in a TOML keys file:

    [[keys]]
    name = "acme-backend"          # a label for logs
    tenant = "acme"
    scopes = ["score", "summarize"]
    sha256 = "<hex digest of the key>"

``leadgw keys create --tenant acme --scopes score,summarize`` prints a new key and its table.
Clients send ``authorization: Bearer <key>`` (or ``x-api-key: <key>``).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import secrets
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from runtimes.errors import PermissionDenied, Unauthenticated
from runtimes.types import DEFAULT_TENANT

SCOPES = ("score", "summarize", "index", "admin")


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    scopes: frozenset[str]
    key_name: str = ""

    def require(self, scope: str, method: str) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(
                f"{method} needs scope '{scope}'; this key has {sorted(self.scopes) or 'none'}"
            )


ANONYMOUS = Caller(DEFAULT_TENANT, frozenset(SCOPES), "anonymous")

# The caller of the RPC running in this task, set by the auth interceptor.
_current: contextvars.ContextVar[Caller] = contextvars.ContextVar("leadgw_caller")


def current_caller() -> Caller:
    """The authenticated caller of the current RPC."""
    return _current.get()


def set_caller(caller: Caller) -> contextvars.Token[Caller]:
    return _current.set(caller)


def reset_caller(token: contextvars.Token[Caller]) -> None:
    _current.reset(token)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "lgw_" + secrets.token_urlsafe(24)


class KeyStore:
    """Looks callers up by the hash of their key; never keeps a key in clear."""

    def __init__(self, entries: Iterable[tuple[str, Caller]]) -> None:
        self._by_hash = dict(entries)

    @classmethod
    def from_file(cls, path: Path) -> KeyStore:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"keys file {path}: {exc}") from exc
        entries = []
        for i, item in enumerate(raw.get("keys", [])):
            where = f"keys file {path}, entry {i + 1}"
            digest = str(item.get("sha256", "")).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"{where}: sha256 must be 64 hex digits")
            tenant = str(item.get("tenant", ""))
            if not tenant:
                raise ValueError(f"{where}: tenant is missing")
            scopes = frozenset(item.get("scopes", []))
            unknown = scopes - set(SCOPES)
            if unknown:
                raise ValueError(f"{where}: unknown scopes {sorted(unknown)}; known: {SCOPES}")
            entries.append((digest, Caller(tenant, scopes, str(item.get("name", "")))))
        return cls(entries)

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        key = _key_from(metadata)
        if key is None:
            raise Unauthenticated("missing API key: send 'authorization: Bearer <key>'")
        digest = hash_key(key)
        for known, caller in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return caller
        raise Unauthenticated("invalid API key")


def _key_from(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for name, value in metadata or ():
        text = value.decode() if isinstance(value, bytes) else value
        if name == "authorization":
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == "x-api-key" and text.strip():
            return text.strip()
    return None
