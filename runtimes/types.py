"""Plain data passed between the transport-free core and the gateway's converters."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

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
