"""API keys → tenant and scopes.

Keys are stored hashed (SHA-256) in a TOML keys file:

    [[keys]]
    name = "acme-backend"          # a label for logs
    tenant = "acme"
    scopes = ["score", "summarize"]
    sha256 = "<hex digest of the key>"

    [tenants.acme]                 # optional: this tenant's limits (defaults: settings)
    rate_requests_per_s = 200      # ScoreLeads and ModelInfer calls per second
    rate_leads_per_s = 20000       # leads (rows) scored per second
    summaries = 8                  # concurrent summaries

``leadgw keys create --tenant acme --scopes score,summarize`` prints a new key and its table.
Clients send ``authorization: Bearer <key>`` (or ``x-api-key: <key>``).
"""

from __future__ import annotations

import contextvars
import hashlib
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runtimes.errors import PermissionDenied, Unauthenticated
from runtimes.ids import id_problem
from runtimes.types import DEFAULT_TENANT

SCOPES = ("score", "summarize", "index", "admin")
_KEY_FIELDS = ("name", "tenant", "scopes", "sha256")  # of a [[keys]] entry


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


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """One tenant's limits from the keys file; None: the settings' default applies."""

    requests_per_s: float | None = None
    leads_per_s: float | None = None
    summaries: int | None = None


NO_OVERRIDES = TenantLimits()
_LIMIT_FIELDS = {
    "rate_requests_per_s": "requests_per_s",
    "rate_leads_per_s": "leads_per_s",
    "summaries": "summaries",
}

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

    def __init__(
        self,
        entries: Iterable[tuple[str, Caller]],
        tenants: Mapping[str, TenantLimits] | None = None,
    ) -> None:
        self._by_hash = dict(entries)
        self._tenants = dict(tenants or {})

    def __len__(self) -> int:
        return len(self._by_hash)

    def limits_of(self, tenant: str) -> TenantLimits:
        """The tenant's own limits (fields left None fall back to the settings)."""
        return self._tenants.get(tenant, NO_OVERRIDES)

    @classmethod
    def from_file(cls, path: Path) -> KeyStore:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"keys file {path}: {exc}") from exc
        entries = []
        for i, item in enumerate(raw.get("keys", [])):
            where = f"keys file {path}, entry {i + 1}"
            # A misspelt field (``scope``) would otherwise give a key with none of its scopes.
            unknown_fields = set(item) - set(_KEY_FIELDS)
            if unknown_fields:
                raise ValueError(
                    f"{where}: unknown fields {sorted(unknown_fields)}; known: {list(_KEY_FIELDS)}"
                )
            digest = str(item.get("sha256", "")).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"{where}: sha256 must be 64 hex digits")
            tenant = str(item.get("tenant", ""))
            if not tenant:
                raise ValueError(f"{where}: tenant is missing")
            # The notes store refuses a tenant that is no id (it names folders and filters):
            # refused here, not on every notes call of that key's client.
            problem = id_problem(tenant)
            if problem is not None:
                raise ValueError(f"{where}: tenant {problem}")
            scopes = frozenset(item.get("scopes", []))
            if not scopes:
                # Such a key authenticates but may call nothing: a slip (``keys create`` refuses
                # to make one), never what was meant.
                raise ValueError(f"{where}: scopes is missing or empty; known: {SCOPES}")
            unknown = scopes - set(SCOPES)
            if unknown:
                raise ValueError(f"{where}: unknown scopes {sorted(unknown)}; known: {SCOPES}")
            entries.append((digest, Caller(tenant, scopes, str(item.get("name", "")))))
        tenants = raw.get("tenants", {})
        if not isinstance(tenants, dict):
            raise ValueError(f"keys file {path}: 'tenants' must be a table of tables")
        return cls(entries, {name: _tenant_limits(path, name, t) for name, t in tenants.items()})

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        key = _key_from(metadata)
        if key is None:
            raise Unauthenticated("missing API key: send 'authorization: Bearer <key>'")
        # One lookup by the key's digest, not a constant-time comparison with every stored
        # digest: that scan cost each call ~60 µs with 1,000 keys (O(keys)). The lookup's timing
        # depends only on the digest of what the caller sent, which no caller can steer towards
        # a stored one (that would take SHA-256 preimages), so it tells nothing about the keys.
        caller = self._by_hash.get(hash_key(key))
        if caller is None:
            raise Unauthenticated("invalid API key")
        return caller


def _tenant_limits(path: Path, tenant: str, table: object) -> TenantLimits:
    where = f"keys file {path}, [tenants.{tenant}]"
    if not isinstance(table, dict):
        raise ValueError(f"{where}: must be a table")
    unknown = set(table) - set(_LIMIT_FIELDS)
    if unknown:
        raise ValueError(
            f"{where}: unknown fields {sorted(unknown)}; known: {sorted(_LIMIT_FIELDS)}"
        )
    values: dict[str, float | int] = {}
    for field_name, value in table.items():
        integral = field_name == "summaries"
        good_type = isinstance(value, int) if integral else isinstance(value, int | float)
        if isinstance(value, bool) or not good_type or not value > 0:
            kind = "a positive integer" if integral else "a positive number (inf: no limit)"
            raise ValueError(f"{where}: {field_name} must be {kind}, not {value!r}")
        values[_LIMIT_FIELDS[field_name]] = value
    return TenantLimits(**values)  # type: ignore[arg-type]


def _key_from(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for name, value in metadata or ():
        if name != "authorization" and name != "x-api-key":
            continue  # other headers may be binary (``-bin``), which need not be UTF-8
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if name == "authorization":
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == "x-api-key" and text.strip():
            return text.strip()
    return None
