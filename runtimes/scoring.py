"""Scores leads: encode features, run the model, turn outputs into bands, ranks and reasons."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np
from opentelemetry import trace

from runtimes.errors import InvalidInput
from runtimes.repository import ModelRepository, ServedModel
from runtimes.served_model import LeadKeys
from runtimes.tracing import LEAN, TraceDetail, record_late_span
from runtimes.types import (
    Band,
    FeatureValue,
    LeadColumn,
    LeadInput,
    LeadScore,
    Reason,
    ScoreColumns,
)

# From about this many leads, conversion costs more than the hop to a worker thread.
OFFLOAD_LEADS = 256
# Up to this many leads, ranks and top reasons are computed in plain Python: for a few leads
# numpy's per-call cost (~1 µs a call, a dozen calls) is the whole cost.
SMALL_LEADS = 16


class LeadScorer:
    """The transport-free core behind ``ScoreLeads`` (and the scoring step of summaries)."""

    def __init__(
        self,
        repository: ModelRepository,
        *,
        default_model: str,
        max_leads: int,
        trace_detail: TraceDetail = LEAN,
    ) -> None:
        self.repository = repository
        self.default_model = default_model
        self.max_leads = max_leads
        self.trace_detail = trace_detail
        self._tracer = trace.get_tracer("leadgw.scoring")

    def resolve(self, model: str | None, version: str | None) -> ServedModel:
        return self.repository.get(model or self.default_model, version or None)

    def canary_on(self, model: str | None) -> bool:
        """Whether the model has a canary, so that requests naming no version need ``assign``."""
        return self.repository.routing(model or self.default_model).canary is not None

    def version_for(self, model: str | None, tenant: str, lead_id: str) -> str | None:
        """The version a request naming none scores this lead with: its canary's or the live
        one's when a canary is on, else None (the live one, looked up when scoring)."""
        if not self.canary_on(model):
            return None
        return self.assign(model, tenant, [lead_id])[0][0].version

    def assign(
        self, model: str | None, tenant: str, lead_ids: Sequence[str]
    ) -> list[tuple[ServedModel, list[int]]]:
        """Which version scores which leads (positions) of a request naming no version."""
        return self.repository.assign(model or self.default_model, None, tenant, lead_ids)

    async def score_leads(
        self,
        leads: Sequence[LeadInput],
        *,
        model: str | None = None,
        version: str | None = None,
        max_reasons: int = 3,
        deadline: float | None = None,
        tenant: str = "",
    ) -> list[LeadScore]:
        """Scores leads in request order, encoding and decoding on the event loop: meant for
        small requests (summaries score one lead). A caller with ``is_heavy`` many leads runs
        ``prepare`` and ``build_scores`` off the loop itself, as ``ScoreLeads`` does.
        ``tenant``: whose leads these are (a shadow samples leads by tenant and lead id)."""
        served = self.admit(len(leads), model, version)
        features = self.prepare(leads, served)
        outputs = await served.infer(features, deadline, lead_keys(tenant, leads))
        return build_scores(served, leads, outputs, max_reasons)

    def admit(self, leads: int, model: str | None, version: str | None) -> ServedModel:
        """The version that scores a request of ``leads`` leads, once their count is allowed."""
        self._check_count(leads)
        return self.resolve(model, version)

    def prepare(self, leads: Sequence[LeadInput], served: ServedModel) -> np.ndarray:
        """Checks the leads (unique ids, valid features) and encodes them: ``served``'s input
        matrix."""
        _check_unique([lead.lead_id for lead in leads])
        return self._traced_encode(len(leads), partial(served.schema.encode, leads))

    def prepare_columns(
        self,
        lead_ids: Sequence[str],
        columns: Mapping[str, Sequence[FeatureValue] | LeadColumn],
        served: ServedModel,
    ) -> np.ndarray:
        """``prepare`` for leads sent column-wise (see ``FeatureSchema.encode_lead_columns``)."""
        _check_unique(lead_ids)
        encode = partial(served.schema.encode_lead_columns, lead_ids, columns)
        return self._traced_encode(len(lead_ids), encode)

    def _traced_encode(self, leads: int, encode: Callable[[], np.ndarray]) -> np.ndarray:
        # An unsampled request would get a non-recording child anyway (samplers are parent-based);
        # skipping it saves the span machinery's ~5 µs on every untraced request.
        if not trace.get_current_span().is_recording():
            return encode()
        if self.trace_detail.full:
            with self._tracer.start_as_current_span("encode features") as span:
                span.set_attribute("leadgw.leads", leads)
                return encode()
        # Lean: a clock read each side, and a span only if encoding turned out slow.
        start_ns = time.time_ns()
        features = encode()
        end_ns = time.time_ns()
        if self.trace_detail.keeps_stage((end_ns - start_ns) / 1e9):
            record_late_span(
                self._tracer,
                "encode features",
                start_ns=start_ns,
                end_ns=end_ns,
                attributes={"leadgw.leads": leads},
            )
        return features

    def _check_count(self, leads: int) -> None:
        if not leads:
            raise InvalidInput("request has no leads")
        if leads > self.max_leads:
            raise InvalidInput(f"request has {leads} leads; the limit is {self.max_leads}")


def lead_keys(tenant: str, leads: Sequence[LeadInput]) -> LeadKeys:
    """The ``LeadKeys`` of a call on ``leads``: the id list is built only if a shadow asks."""
    return lambda: (tenant, [lead.lead_id for lead in leads])


def is_heavy(leads: int) -> bool:
    """Whether a request's per-lead Python work is long enough to move off the event loop."""
    return leads >= OFFLOAD_LEADS


def _check_unique(lead_ids: Sequence[str]) -> None:
    if len(set(lead_ids)) == len(lead_ids):
        return
    seen: set[str] = set()
    for lead_id in lead_ids:
        if lead_id in seen:
            raise InvalidInput(f"duplicate lead id '{lead_id}': each lead may appear once")
        seen.add(lead_id)


def build_scores(
    served: ServedModel,
    leads: Sequence[LeadInput],
    outputs: dict[str, np.ndarray],
    max_reasons: int,
) -> list[LeadScore]:
    """Bands, ranks and top reasons, in request order.

    Ranks and top reasons are vectorised over leads; a few leads take plain Python instead
    (numpy's per-call cost is their whole cost), with the same orderings: ties in probability
    rank in request order, ties in |contribution| list in column order.
    """
    config = served.config
    # tolist(): Python floats (exact widenings of float32) without a numpy scalar per element.
    probability = outputs[config.probability_output].reshape(-1).tolist()
    logit = outputs[config.logit_output].reshape(-1).tolist()
    contributions = outputs[config.contributions_output]
    n = len(leads)
    k = max(0, min(max_reasons, contributions.shape[1]))
    rows = contributions.tolist()
    if n <= SMALL_LEADS:
        ranks = _ranks_small(probability)
        top = [_top_k_small(row, k) for row in rows]
    else:
        ranks = _ranks(np.asarray(probability, dtype=np.float64))
        top = _top_k_by_magnitude(contributions, k).tolist()
    hot, warm = config.bands.hot, config.bands.warm
    names = served.schema.names
    labels = served.schema.labellers
    scores = []
    for row, lead in enumerate(leads):
        features = lead.features
        contribution = rows[row]
        p = probability[row]
        scores.append(
            LeadScore(
                lead_id=lead.lead_id,
                probability=p,
                band=Band.HOT if p >= hot else Band.WARM if p >= warm else Band.COLD,
                rank=ranks[row],
                logit=logit[row],
                base_value=served.base_value,
                reasons=[
                    Reason(names[j], labels[j](features.get(names[j])), contribution[j])
                    for j in top[row]
                ],
                model_name=served.name,
                model_version=served.version,
            )
        )
    return scores


def build_score_columns(
    served: ServedModel,
    lead_ids: Sequence[str],
    columns: Mapping[str, Sequence[FeatureValue] | LeadColumn],
    outputs: dict[str, np.ndarray],
    max_reasons: int,
) -> ScoreColumns:
    """``build_scores`` for leads sent column-wise: the same values, ranks, orderings and reason
    labels, as arrays. Reason labels are looked up for the whole request at once
    (``runtimes.column_labels``)."""
    config = served.config
    probability = outputs[config.probability_output].reshape(-1).astype(np.float64)
    contributions = outputs[config.contributions_output]
    k = max(0, min(max_reasons, contributions.shape[1]))
    top = _top_k_by_magnitude(contributions, k)
    hot, warm = config.bands.hot, config.bands.warm
    names = served.schema.names
    values = [columns.get(name) for name in names]
    if len(lead_ids) <= SMALL_LEADS:
        labellers = served.schema.labellers
        values = [v.as_values() if isinstance(v, LeadColumn) else v for v in values]
        reason_label: Sequence[str] = [
            labellers[j](None if values[j] is None else values[j][row])  # type: ignore[index]
            for row, picked in enumerate(top.tolist())
            for j in picked
        ]
    else:
        reason_label = served.schema.column_labeller.picked(values, top)
    return ScoreColumns(
        lead_ids=lead_ids,
        probability=probability,
        band=np.where(probability >= hot, 0, np.where(probability >= warm, 1, 2)).astype(np.int8),
        rank=_rank_array(probability),
        logit=outputs[config.logit_output].reshape(-1).astype(np.float64),
        reasons_per_lead=k,
        reason_feature=top.reshape(-1),
        reason_label=reason_label,
        reason_contribution=np.take_along_axis(contributions, top, axis=1)
        .astype(np.float64)
        .reshape(-1),
        base_value=served.base_value,
        model_name=served.name,
        model_version=served.version,
        feature_names=names,
    )


def _ranks(probability: np.ndarray) -> list[int]:
    """1 for the highest probability; ties keep request order."""
    return _rank_array(probability).tolist()


def _rank_array(probability: np.ndarray) -> np.ndarray:
    """``_ranks`` as an int64 array."""
    ranks = np.empty(len(probability), dtype=np.int64)
    ranks[np.argsort(-probability, kind="stable")] = np.arange(1, len(probability) + 1)
    return ranks


def _ranks_small(probability: list[float]) -> list[int]:
    """``_ranks`` in plain Python: sorted() is stable, with ``reverse`` too (equal keys keep
    their order), and a bound method as the key runs no Python code per lead."""
    if len(probability) == 1:
        return [1]
    ranks = [0] * len(probability)
    order = sorted(range(len(probability)), key=probability.__getitem__, reverse=True)
    for rank, i in enumerate(order, 1):
        ranks[i] = rank
    return ranks


# Up to this many reasons, they are picked by repeated argmax rather than a full sort.
ARGMAX_REASONS = 8


def _top_k_by_magnitude(contributions: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest |contribution|, largest first, ties by column.

    Not argpartition, which breaks ties between equal magnitudes arbitrarily. Where a NaN is
    (argmax would pick it first, the stable sort last), a full stable sort; float32 (the bundled
    models' outputs), one sort of keys that hold the column (``_top_k_by_key``); otherwise, for a
    few reasons, k rounds of argmax (which returns the first of equal maxima, so ties go by
    column) with each pick knocked out, and for more a full stable sort.
    """
    rows = contributions.shape[0]
    if k <= 0:
        return np.empty((rows, 0), dtype=np.int64)
    magnitude = np.abs(contributions)
    if np.isnan(magnitude).any():
        return np.argsort(-magnitude, axis=1, kind="stable")[:, :k]
    if magnitude.dtype == np.float32 and contributions.shape[1] <= _KEY_COLUMNS:
        return _top_k_by_key(magnitude, k)
    if k > ARGMAX_REASONS:
        return np.argsort(-magnitude, axis=1, kind="stable")[:, :k]
    top = np.empty((rows, k), dtype=np.int64)
    every_row = np.arange(rows)
    for i in range(k):
        picked = magnitude.argmax(axis=1)
        top[:, i] = picked
        magnitude[every_row, picked] = -1.0  # below any magnitude
    return top


# Columns a sort key can tell apart: the key is a magnitude's 32 bits, then 16 for the column.
_KEY_COLUMNS = 1 << 16


def _top_k_by_key(magnitude: np.ndarray, k: int) -> np.ndarray:
    """``_top_k_by_magnitude`` of float32 magnitudes (none NaN) by one sort of unique keys: a
    non-negative float32's bits order as its value does, and below them the column, inverted so
    that of equal magnitudes the first column sorts last, that is, is picked first. One sort of
    every row (a few µs per thousand rows in numpy's SIMD sort) costs less than k argmax passes."""
    columns = np.arange(magnitude.shape[1], dtype=np.uint64)
    key = magnitude.view(np.uint32).astype(np.uint64) << np.uint64(16)
    key |= np.uint64(_KEY_COLUMNS - 1) - columns
    largest = np.sort(key, axis=1)[:, : -k - 1 : -1]
    return (np.uint64(_KEY_COLUMNS - 1) - (largest & np.uint64(_KEY_COLUMNS - 1))).astype(np.int64)


def _top_k_small(row: list[float], k: int) -> list[int]:
    """``_top_k_by_magnitude`` for one row, in plain Python (stable with ``reverse``, as in
    ``_ranks_small``: of equal magnitudes the first column comes first)."""
    magnitude = list(map(abs, row))
    return sorted(range(len(row)), key=magnitude.__getitem__, reverse=True)[:k]
