"""Which of a model's version folders are served: Triton's version policy, in ``config.toml``::

[version_policy]
all = true              # every version (the default)
# latest = 2            # the 2 highest versions
# specific = [1, 3]     # exactly these versions
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    kind: str = "all"  # all | latest | specific
    latest: int = 0
    specific: tuple[str, ...] = ()

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None, where: str) -> VersionPolicy:
        """Checks a ``[version_policy]`` table: exactly one of all, latest, specific."""
        if not table:
            return cls()
        chosen = [key for key in ("all", "latest", "specific") if key in table]
        unknown = sorted(set(table) - {"all", "latest", "specific"})
        if unknown or len(chosen) != 1:
            raise ValueError(
                f"{where}: [version_policy] needs exactly one of all, latest, specific"
                + (f" (unknown keys {unknown})" if unknown else f" (found {chosen or 'none'})")
            )
        key = chosen[0]
        value = table[key]
        if key == "all":
            if value is not True:
                raise ValueError(f"{where}: [version_policy] all must be true")
            return cls()
        if key == "latest":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{where}: [version_policy] latest must be an integer >= 1")
            return cls("latest", latest=value)
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where}: [version_policy] specific must be a list of versions")
        versions = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or item < 0:
                raise ValueError(
                    f"{where}: [version_policy] specific holds {item!r}, not a version number"
                )
            versions.append(str(item))
        return cls("specific", specific=tuple(versions))

    def select(self, available: Iterable[str]) -> list[str]:
        """The versions to serve among those on disk, lowest first."""
        ordered = sorted(set(available), key=int)
        if self.kind == "latest":
            return ordered[-self.latest :]
        if self.kind == "specific":
            return [v for v in ordered if v in self.specific]
        return ordered
