"""Seeded synthetic prospects that look like a wealth-management CRM, with a known true logit.

Money and age are correlated (log-normal, peaking in late career); life events depend on age;
engagement signals share a latent interest that the channel shifts. The true conversion logit has
non-linear effects and interactions (assets × retiring, recency decay, engagement saturation),
and it sees the true income and assets even when the CRM does not, so no model reaches its AUC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtimes.schema import FeatureSchema
from runtimes.training.features import CHANNELS
from runtimes.types import FeatureValue, LeadInput

_CHANNEL_SHARE = np.array([0.10, 0.34, 0.10, 0.08, 0.10, 0.28])
_CHANNEL_ENGAGEMENT = np.array([0.5, 0.0, 0.2, 0.3, 0.2, -0.7])
_CHANNEL_EFFECT = np.array([0.9, 0.0, 0.3, 0.5, 0.4, -0.8])
# Chosen so that about 3% of prospects convert.
_INTERCEPT = -5.25


@dataclass(frozen=True)
class Prospects:
    """Raw feature columns (NaN / None for missing), labels and the true logit."""

    columns: dict[str, np.ndarray]
    labels: np.ndarray
    true_logit: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def records(self) -> list[dict[str, FeatureValue]]:
        """One dict of raw values per prospect, as a client would send them (None = missing)."""
        lists = {name: _to_values(column) for name, column in self.columns.items()}
        names = list(lists)
        return [dict(zip(names, row, strict=True)) for row in zip(*lists.values(), strict=True)]

    def leads(self, prefix: str = "L-") -> list[LeadInput]:
        return [LeadInput(f"{prefix}{i}", features) for i, features in enumerate(self.records())]

    def matrix(self, schema: FeatureSchema) -> np.ndarray:
        """Encoded exactly as the gateway encodes at serve time."""
        return schema.encode(self.leads())


def generate(rows: int, seed: int) -> Prospects:
    """``rows`` prospects; the same seed always gives the same prospects."""
    rng = np.random.default_rng(seed)
    n = rows

    age = np.clip(np.round(rng.normal(50, 12, n)), 22, 90)
    years = age - 45
    working = age < 66
    log_income = 11.3 + 0.012 * years - 0.0009 * years**2 - 0.5 * ~working + rng.normal(0, 0.55, n)
    log_assets = 10.6 + 0.05 * (age - 30) + 0.7 * (log_income - 11.3) + rng.normal(0, 1.0, n)
    income = np.clip(np.round(np.exp(log_income), -2), 5_000, 5e7)
    assets = np.clip(np.round(np.exp(log_assets), -3), 1_000, 5e9)

    channel = rng.choice(len(CHANNELS), size=n, p=_CHANNEL_SHARE)
    cold = channel == CHANNELS.index("cold_list")
    web = channel == CHANNELS.index("web")

    retiring = rng.random(n) < np.where(
        (age >= 55) & (age <= 66), 0.55, np.where((age >= 50) & (age < 55), 0.12, 0.01)
    )
    job_change = rng.random(n) < np.where(age < 45, 0.11, 0.05)
    inheritance = rng.random(n) < np.where((age >= 40) & (age <= 70), 0.04, 0.015)
    new_child = rng.random(n) < np.where(age < 42, 0.07, 0.004)
    home_sale = rng.random(n) < np.where(age >= 55, 0.06, 0.025)

    interest = rng.normal(0, 1, n) + _CHANNEL_ENGAGEMENT[channel] + 0.3 * (retiring | inheritance)
    email_opens = np.minimum(rng.poisson(np.exp(0.7 + 0.6 * interest)), 400).astype(float)
    site_visits = np.minimum(rng.poisson(np.exp(-0.4 + 0.8 * interest)), 400).astype(float)
    webinar = rng.random(n) < _sigmoid(-2.6 + 0.8 * interest)
    calculator = rng.random(n) < _sigmoid(-2.2 + 0.7 * interest + 0.6 * retiring)
    meeting = rng.random(n) < _sigmoid(-3.6 + 0.9 * interest + 0.8 * (channel == 0))
    touched = rng.random(n) >= np.where(cold, 0.35, 0.12)
    days = np.minimum(np.round(rng.exponential(np.exp(3.4 - 0.5 * interest))), 3650)
    accounts = np.minimum(rng.poisson(np.where((channel == 0) | (channel == 4), 0.8, 0.25)), 50)

    lg_assets = np.log10(assets)
    true_logit = (
        _INTERCEPT
        + 0.55 * np.clip(lg_assets - 5.0, -2.0, 3.0)
        + 0.25 * np.clip(np.log10(income) - 5.0, -1.0, 1.5)
        - 0.0012 * (age - 58) ** 2
        + 0.6 * retiring
        + 0.5 * retiring * np.clip(lg_assets - 5.5, -1.0, 2.0)  # big pots about to retire
        + 0.9 * inheritance
        + 0.5 * home_sale
        + 0.35 * job_change
        + 0.2 * new_child
        + 0.35 * np.log1p(email_opens)
        + 0.3 * np.log1p(site_visits)
        + 0.6 * webinar
        + 0.5 * calculator
        + 0.25 * calculator * np.log1p(site_visits)  # researching in earnest
        + 1.3 * meeting
        + np.where(touched, 1.2 * np.exp(-days / 21.0) - 0.3, -0.6)  # recency decays
        + _CHANNEL_EFFECT[channel]
        + 0.3 * np.minimum(accounts, 2)
    )
    labels = (rng.random(n) < _sigmoid(true_logit)).astype(np.int8)

    # What the CRM knows: income and assets often unknown (more so for cold and web leads), a few
    # ages missing, and no recency at all for prospects never contacted.
    income_known = rng.random(n) >= np.where(cold | web, 0.35, 0.15)
    assets_known = rng.random(n) >= np.where(cold | web, 0.5, 0.2)
    age_known = rng.random(n) >= 0.03
    columns: dict[str, np.ndarray] = {
        "age": np.where(age_known, age, np.nan),
        "household_income": np.where(income_known, income, np.nan),
        "investable_assets": np.where(assets_known, assets, np.nan),
        "retiring_within_5y": retiring,
        "job_change": job_change,
        "inheritance": inheritance,
        "new_child": new_child,
        "home_sale": home_sale,
        "email_opens_90d": email_opens,
        "site_visits_30d": site_visits,
        "webinar_attended": webinar,
        "calculator_used": calculator,
        "days_since_last_touch": np.where(touched, days, np.nan),
        "meeting_booked": meeting,
        "channel": np.array(CHANNELS, dtype=object)[channel],
        "existing_accounts": accounts.astype(float),
    }
    return Prospects(columns=columns, labels=labels, true_logit=true_logit)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _to_values(column: np.ndarray) -> list[FeatureValue]:
    """numpy column → Python values a client would send: float, bool, str, or None."""
    if column.dtype == bool:
        return column.tolist()
    if column.dtype == object:
        return column.tolist()
    return [None if v != v else v for v in column.tolist()]  # v != v only for NaN
