"""A model's routing policy: which version is live, which is canaried or shadowed, and aliases.

Kept in the model's ``config.toml`` as a ``[routing]`` table, so it survives a restart and every
worker of a gateway reads the same one::

    [routing]
    generation = 4          # bumped by each control action; workers acknowledge it
    live = "2"              # absent: the highest loaded version
    previous = "1"          # where ``rollback`` returns to
    canary = "3"            # a candidate that serves a sticky share of leads...
    canary_weight = 0.1     # ...this share, by a hash of tenant and lead id
    shadow = "3"            # a candidate that scores a copy of live traffic, off the request path
    shadow_rate = 0.25      # ...of this share of leads (sticky by tenant and lead id; default 1)
    unloaded = ["1"]        # versions held out by an unload (until a load)
    loaded = ["4"]          # versions loaded by a load, beyond the version policy

    [routing.aliases]
    stable = "2"            # any name; champion (live) and challenger (candidate) are built in
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

CHAMPION = "champion"
CHALLENGER = "challenger"
_ALIAS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_HASH_SPAN = float(1 << 64)
_LOW_MASK = (1 << 32) - 1
_LOW_SPAN = float(1 << 32)


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    generation: int = 0
    live: str | None = None
    previous: str | None = None
    canary: str | None = None
    canary_weight: float = 0.0
    shadow: str | None = None
    shadow_rate: float = 1.0
    unloaded: tuple[str, ...] = ()
    loaded: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str) -> RoutingPolicy:
        """Checks a ``[routing]`` table; a ValueError names the file and the key at fault."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(f"{where}: [routing] has unknown keys {unknown}")
        try:
            policy = cls(
                generation=int(table.get("generation", 0)),
                live=_version_or_none(table.get("live")),
                previous=_version_or_none(table.get("previous")),
                canary=_version_or_none(table.get("canary")),
                canary_weight=float(table.get("canary_weight", 0.0)),
                shadow=_version_or_none(table.get("shadow")),
                shadow_rate=float(table.get("shadow_rate", 1.0)),
                unloaded=tuple(_version(v) for v in table.get("unloaded", [])),
                loaded=tuple(_version(v) for v in table.get("loaded", [])),
                aliases={str(k): _version(v) for k, v in dict(table.get("aliases", {})).items()},
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: [routing]: {exc}") from exc
        check_weight(policy.canary_weight, where)
        check_shadow_rate(policy.shadow_rate, where)
        for name in policy.aliases:
            check_alias_name(name, where)
        return policy

    def to_toml(self) -> str:
        """The ``[routing]`` table as TOML text (written by hand: the values are plain)."""
        lines = ["[routing]", f"generation = {self.generation}"]
        for key in ("live", "previous", "canary"):
            value = getattr(self, key)
            if value is not None:
                lines.append(f'{key} = "{value}"')
        if self.canary is not None:
            lines.append(f"canary_weight = {self.canary_weight!r}")
        if self.shadow is not None:
            lines.append(f'shadow = "{self.shadow}"')
            if self.shadow_rate != 1.0:
                lines.append(f"shadow_rate = {self.shadow_rate!r}")
        for key in ("unloaded", "loaded"):
            values = getattr(self, key)
            if values:
                lines.append(f"{key} = {json.dumps(list(values))}")
        if self.aliases:
            lines += ["", "[routing.aliases]"]
            lines += [f'{name} = "{version}"' for name, version in sorted(self.aliases.items())]
        return "\n".join(lines) + "\n"

    def bumped(self, **changes: Any) -> RoutingPolicy:
        """This policy with ``changes`` and the next generation."""
        return replace(self, generation=self.generation + 1, **changes)

    @property
    def candidate(self) -> str | None:
        """The version under trial: the canary, else the shadow."""
        return self.canary or self.shadow

    def resolve_alias(self, name: str, live: str | None) -> str | None:
        """The version an alias names, or None if ``name`` is no alias."""
        if name == CHAMPION:
            return live
        if name == CHALLENGER:
            return self.candidate
        return self.aliases.get(name)


def lead_hash(model: str, tenant: str, lead_id: str) -> int:
    """A lead's fixed 64-bit hash: canary and shadow sampling both read it."""
    digest = hashlib.blake2b(f"{model}\0{tenant}\0{lead_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def canary_share(model: str, tenant: str, lead_id: str) -> float:
    """A lead's fixed point in [0, 1): the lead takes the canary when this is below the weight,
    so a lead keeps its version while the weight holds and a larger weight only adds leads."""
    return lead_hash(model, tenant, lead_id) / _HASH_SPAN


def shadow_share(model: str, tenant: str, lead_id: str) -> float:
    """A lead's fixed point in [0, 1) for shadow sampling: the lead is compared when this is
    below the shadow rate. The low 32 bits of the canary's hash, where ``canary_share`` is led by
    the high ones: a canary's leads and a shadow's sample do not pick the same leads."""
    return (lead_hash(model, tenant, lead_id) & _LOW_MASK) / _LOW_SPAN


def check_weight(weight: float, where: str = "canary weight") -> None:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"{where}: canary weight must be within [0, 1], got {weight}")


def check_shadow_rate(rate: float, where: str = "") -> None:
    """A share of leads the shadow compares: within [0, 1] (NaN is not)."""
    if not 0.0 <= rate <= 1.0:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}shadow_rate must be within [0, 1], got {rate:g}")


def check_alias_name(name: str, where: str = "alias") -> None:
    if not _ALIAS_NAME.match(name) or name.isdigit():
        raise ValueError(f"{where}: alias {name!r} must be a name (letters, digits, _ or -)")


def _version(value: Any) -> str:
    text = str(value)
    if not text.isdigit():
        raise ValueError(f"version {value!r} is not a number")
    return str(int(text))


def _version_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else _version(value)
