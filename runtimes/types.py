"""Plain data passed between the transport-free core and the gateway's converters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

import numpy as np

# The tenant of callers on a gateway without API keys (loopback only); notes indexed by such
# callers belong to it.
DEFAULT_TENANT = "default"

# A feature value as a client sends it: a number, a category name, a flag, or None for missing.
FeatureValue = float | str | bool | None


@dataclass(frozen=True, slots=True)
class LeadInput:
    lead_id: str
    features: dict[str, FeatureValue]


class Band(StrEnum):
    HOT = "hot"
    WARM = "warm"
    COLD = "cold"


@dataclass(frozen=True, slots=True)
class Reason:
    feature: str
    label: str
    contribution: float


@dataclass(frozen=True, slots=True)
class LeadScore:
    lead_id: str
    probability: float
    band: Band
    rank: int
    logit: float
    base_value: float
    reasons: list[Reason] = field(default_factory=list)
    model_name: str = ""
    model_version: str = ""


# ``ScoreColumns.band`` holds positions in this tuple.
BAND_ORDER = (Band.HOT, Band.WARM, Band.COLD)


@dataclass(frozen=True, slots=True)
class LeadColumn:
    """One feature's values across the leads of a column-wise request, as the wire typed them:
    ``kind`` is "number" (``values`` float64), "boolean" (bool) or "category" (a list of str).
    ``missing`` marks the leads without a value (their slots in ``values`` mean nothing); None
    when every lead has one.

    A category column may also carry ``codes``: each value's position in ``categories``, its
    feature's category list, when the decoder matched every value to one of them
    (``gateway.category_codes``); then no value needs to be looked up again."""

    kind: str
    values: np.ndarray | list[str]
    missing: np.ndarray | None = None
    codes: np.ndarray | None = None
    categories: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.values)

    def as_values(self) -> list[FeatureValue]:
        """Per-lead values as a client sends them: Python floats, bools or strs, None where
        missing (the form the general encoder and the error messages work on)."""
        values = self.values
        out: list[FeatureValue] = values.tolist() if isinstance(values, np.ndarray) else [*values]
        if self.missing is not None:
            for row in np.flatnonzero(self.missing).tolist():
                out[row] = None
        return out


@dataclass(frozen=True, slots=True)
class ScoreColumns:
    """The scores of leads sent column-wise: ``LeadScore``'s fields as arrays, in request order.

    Reasons are lead-major: lead i's are entries ``i * reasons_per_lead`` onwards, largest
    |contribution| first."""

    lead_ids: Sequence[str]
    probability: np.ndarray  # float64 [n]
    band: np.ndarray  # int8 [n]: positions in BAND_ORDER
    rank: np.ndarray  # int64 [n], 1 = call first
    logit: np.ndarray  # float64 [n]
    reasons_per_lead: int
    reason_feature: np.ndarray  # int64 [n * reasons_per_lead]: positions in feature_names
    reason_label: Sequence[str]  # a list, or PickedLabels from a schema's label table
    reason_contribution: np.ndarray  # float64 [n * reasons_per_lead]
    base_value: float
    model_name: str
    model_version: str
    feature_names: Sequence[str]  # the model's features, in tensor order


class LabelTable:
    """Every label a schema's column labeller looks up, by key: one per schema, so a transport
    may encode each label once per table (it is hashed by identity and weakly referable)."""

    __slots__ = ("__weakref__", "labels")

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels  # object [keys] of str


@dataclass(frozen=True, eq=False)
class PickedLabels(Sequence[str]):
    """Reason labels as keys into a ``LabelTable``, with the few the table does not hold given
    apart: a transport can write them from the table's encoded labels without a str each."""

    table: LabelTable
    keys: np.ndarray  # intp [picks]
    own_at: np.ndarray  # intp: the picks labelled apart, not from the table
    own: list[str]  # their labels, in ``own_at``'s order

    @cached_property
    def _list(self) -> list[str]:
        labels = self.table.labels[self.keys]
        if len(self.own_at):
            labels[self.own_at] = self.own
        return labels.tolist()  # type: ignore[no-any-return]

    def tolist(self) -> list[str]:
        return list(self._list)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index):  # type: ignore[no-untyped-def,override]
        return self._list[index]
