"""``leadgw.v1`` messages ↔ the core's plain types."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np

from gateway.category_codes import forms_of
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes.errors import InvalidInput, shown
from runtimes.types import (
    BAND_ORDER,
    Band,
    FeatureValue,
    LabelTable,
    LeadColumn,
    LeadInput,
    LeadScore,
    PickedLabels,
    ScoreColumns,
)

BAND_TO_PB = {
    Band.HOT: pb.SCORE_BAND_HOT,
    Band.WARM: pb.SCORE_BAND_WARM,
    Band.COLD: pb.SCORE_BAND_COLD,
}


# ScoreColumns.band (positions in BAND_ORDER) → ScoreBand numbers, by indexing; each number is
# below 128, so as a packed varint it is its one byte.
_BAND_CODES = np.array([BAND_TO_PB[band] for band in BAND_ORDER], dtype=np.uint8)
assert _BAND_CODES.max() < 0x80

_which = pb.FeatureValue.WhichOneof  # unbound: saves an attribute lookup per value


def features_from_pb(features: Mapping[str, pb.FeatureValue]) -> dict[str, FeatureValue]:
    # upb's map makes a Python object per key and per value, most of the cost. Its keys are
    # iterated in C; items() would add a Python generator step per entry (the Mapping mixin's).
    return {
        name: None
        if (kind := _which(value := features[name], "kind")) is None
        else getattr(value, kind)
        for name in features
    }


def leads_from_pb(leads: Iterable[pb.Lead]) -> list[LeadInput]:
    return [LeadInput(lead.lead_id, features_from_pb(lead.features)) for lead in leads]


def feature_to_pb(value: FeatureValue) -> pb.FeatureValue:
    if value is None:
        return pb.FeatureValue()
    if isinstance(value, bool):
        return pb.FeatureValue(flag=value)
    if isinstance(value, str):
        return pb.FeatureValue(category=value)
    return pb.FeatureValue(number=float(value))


def lead_to_pb(lead: LeadInput) -> pb.Lead:
    message = pb.Lead(lead_id=lead.lead_id)
    for name, value in lead.features.items():
        message.features[name].CopyFrom(feature_to_pb(value))
    return message


def score_to_pb(score: LeadScore) -> pb.LeadScore:
    return _fill_score(pb.LeadScore(), score)


def scores_to_pb(scores: Iterable[LeadScore]) -> pb.ScoreLeadsResponse:
    """The answer, each score and its reasons built in place (``add``): a message built apart and
    passed to its parent's constructor is copied in, which costs as much again (14 → 8 µs for
    one lead with three reasons, in a loop)."""
    response = pb.ScoreLeadsResponse()
    add = response.scores.add
    for score in scores:
        _fill_score(add(), score)
    return response


def _fill_score(message: pb.LeadScore, score: LeadScore) -> pb.LeadScore:
    message.lead_id = score.lead_id
    message.probability = score.probability
    message.band = BAND_TO_PB[score.band]
    message.rank = score.rank
    message.logit = score.logit
    message.base_value = score.base_value
    add_reason = message.reasons.add
    for r in score.reasons:
        add_reason(feature=r.feature, label=r.label, contribution=r.contribution)
    message.model_name = score.model_name
    message.model_version = score.model_version
    return message


def lead_columns_from_pb(
    columns: pb.LeadColumns,
    categories: Mapping[str, tuple[str, ...]] | None = None,
) -> tuple[list[str], dict[str, LeadColumn]]:
    """Lead ids and one typed column per feature, checked for shape: each column's length, its
    missing positions, and one column per feature. Whether the values suit the feature is the
    schema's check, which names the lead.

    Numbers and flags become numpy arrays without a Python object per value: the column's
    message re-serialised is its packed field (upb copies it in one go), read by
    ``np.frombuffer``. A category column of a feature in ``categories`` (name → its categories,
    ``FeatureSchema.category_lists``) whose values are all among them comes with their codes,
    read from its wire bytes (``gateway.category_codes``)."""
    lead_ids = list(columns.lead_ids)
    n = len(lead_ids)
    values: dict[str, LeadColumn] = {}
    for column in columns.features:
        name = column.name
        if not name:
            raise InvalidInput("columns: a feature column has no name")
        if name in values:
            raise InvalidInput(f"columns: feature {shown(name)} has two columns")
        kind = column.WhichOneof("values")
        if kind is None:
            raise InvalidInput(
                f"columns: feature {shown(name)} has no values: set numbers, categories or flags, "
                "or leave the column out if the feature is missing for every lead"
            )
        typed = getattr(column, kind)
        count = len(typed.values)
        if count != n:
            raise InvalidInput(
                f"columns: feature {shown(name)} has {count} values for {n} lead ids"
            )
        missing = None
        if column.missing:
            positions = np.fromiter(column.missing, dtype=np.int64, count=len(column.missing))
            if positions.max() >= n:
                position = int(positions[np.argmax(positions >= n)])
                raise InvalidInput(
                    f"columns: feature {shown(name)} lists missing position {position}, "
                    f"but there are {n} lead ids"
                )
            missing = np.zeros(n, dtype=bool)
            missing[positions] = True
        if kind == "categories" and categories is not None and name in categories:
            forms = forms_of(categories[name])
            codes = forms.codes(typed.SerializeToString(), n)
            if codes is not None:
                values[name] = LeadColumn(
                    "category", forms.values(codes), missing, codes, forms.categories
                )
                continue
        values[name] = LeadColumn(_KINDS[kind], _column_values(kind, typed), missing)
    return lead_ids, values


# FeatureColumn's oneof fields → FeatureSpec kinds.
_KINDS = {"numbers": "number", "flags": "boolean", "categories": "category"}
_PACKED_DTYPES: dict[str, np.dtype[Any]] = {"numbers": np.dtype("<f8"), "flags": np.dtype(np.uint8)}


def _column_values(kind: str, typed: Any) -> np.ndarray | list[str]:
    if kind == "categories":
        return list(typed.values)
    # NumberColumn / FlagColumn hold one field, ``values = 1``: serialised, it is the tag byte,
    # the payload's length as a varint, then the packed payload (doubles little-endian; bools
    # one byte each, 0 or 1, as upb writes them). Empty: nothing at all.
    wire = typed.SerializeToString()
    if not wire:
        return np.empty(0, dtype=np.float64 if kind == "numbers" else bool)
    start = 1
    while wire[start] & 0x80:
        start += 1
    array = np.frombuffer(wire, dtype=_PACKED_DTYPES[kind], offset=start + 1)
    return array.astype(np.float64) if kind == "numbers" else array != 0


def score_columns_answer(scores: ScoreColumns) -> bytes:
    """The column-wise answer, a ``ScoreLeadsResponse``, as its wire bytes: what a servicer may
    return in place of the message (``interceptors.request_decoding`` passes bytes through).

    Parsed, it is the message built field by field. Its numeric repeated fields (about 11 values
    per lead) are written as packed bytes by numpy; reason labels picked from a schema's table
    (``PickedLabels``) are joined from that table's labels encoded once, not a str each. Lead ids
    and names go through a small message. A message's fields may come in any order and a
    repeated field's entries need not be together, so the parts are simply joined."""
    head = pb.ScoreColumns(
        reasons_per_lead=scores.reasons_per_lead,
        base_value=scores.base_value,
        model_name=scores.model_name,
        model_version=scores.model_version,
    )
    head.lead_ids.extend(scores.lead_ids)
    head.feature_names.extend(scores.feature_names)
    columns = b"".join(
        (
            head.SerializeToString(),
            _packed_doubles(_PROBABILITY, scores.probability),
            _packed(_BAND, _BAND_CODES[scores.band].tobytes()),
            _packed_varints(_RANK, scores.rank),
            _packed_doubles(_LOGIT, scores.logit),
            _packed_varints(_REASON_FEATURE, scores.reason_feature),
            _packed_doubles(_REASON_CONTRIBUTION, scores.reason_contribution),
            _reason_labels(scores.reason_label),
        )
    )
    return _COLUMNS_TAG + _varint(len(columns)) + columns


def _reason_labels(labels: Sequence[str]) -> bytes:
    if not isinstance(labels, PickedLabels):
        return b"".join(map(_reason_label, labels))
    encoded = _ENCODED_TABLES.get(labels.table)
    if encoded is None:  # once per schema (a race only encodes it twice)
        encoded = np.array([_reason_label(label) for label in labels.table.labels], dtype=object)
        _ENCODED_TABLES[labels.table] = encoded
    fields = encoded[labels.keys]
    if len(labels.own_at):
        fields[labels.own_at] = [_reason_label(label) for label in labels.own]
    return b"".join(fields.tolist())


def _reason_label(label: str) -> bytes:
    """One ``reason_label`` entry: its tag, its UTF-8 length, its UTF-8 bytes."""
    utf8 = label.encode()
    return _REASON_LABEL_TAG + _varint(len(utf8)) + utf8


_FIELDS = pb.ScoreColumns.DESCRIPTOR.fields_by_name
_PROBABILITY = _FIELDS["probability"].number
_BAND = _FIELDS["band"].number
_RANK = _FIELDS["rank"].number
_LOGIT = _FIELDS["logit"].number
_REASON_FEATURE = _FIELDS["reason_feature"].number
_REASON_CONTRIBUTION = _FIELDS["reason_contribution"].number
_LENGTH_DELIMITED = 2
_REASON_LABEL_TAG = bytes([_FIELDS["reason_label"].number << 3 | _LENGTH_DELIMITED])
_COLUMNS_TAG = bytes(
    [pb.ScoreLeadsResponse.DESCRIPTOR.fields_by_name["columns"].number << 3 | _LENGTH_DELIMITED]
)
# A schema's label table → its labels as encoded reason_label entries (object [keys] of bytes).
_ENCODED_TABLES: WeakKeyDictionary[LabelTable, np.ndarray] = WeakKeyDictionary()


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _packed(field: int, payload: bytes) -> bytes:
    """A packed repeated field: its tag, the payload's length, the payload (nothing if empty)."""
    if not payload:
        return b""
    return _varint(field << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _packed_doubles(field: int, values: np.ndarray) -> bytes:
    return _packed(field, np.ascontiguousarray(values, dtype="<f8").tobytes())


def _packed_varints(field: int, values: np.ndarray) -> bytes:
    """Non-negative integers below 2**35 (uint32 fields, enum numbers) as packed varints."""
    numbers = np.asarray(values, dtype=np.int64)
    if not len(numbers):
        return b""
    largest = int(numbers.max())
    if largest >= 1 << 35 or numbers.min() < 0:
        raise ValueError("packed varints here are for non-negative values below 2**35")
    if largest < 0x80:  # one byte each: the common case (bands, reason features)
        return _packed(field, numbers.astype(np.uint8).tobytes())
    # Seven bits a byte, low first, the high bit set on every byte but the last: row i of
    # `groups` holds value i's bytes, of which the first `kept` are written. Built a byte (a
    # column) at a time: numpy broadcast over rows this short costs ~10x.
    width = (largest.bit_length() + 6) // 7
    groups = np.empty((len(numbers), width), dtype=np.uint8)
    kept = np.ones((len(numbers), width), dtype=bool)
    groups[:, 0] = numbers & 0x7F
    for byte in range(1, width):
        rest = numbers >> 7 * byte
        kept[:, byte] = rest > 0
        groups[:, byte] = rest & 0x7F
        groups[:, byte - 1] |= kept[:, byte].view(np.uint8) << 7
    return _packed(field, groups[kept].tobytes())


def leads_to_columns(leads: Sequence[LeadInput]) -> pb.LeadColumns | None:
    """The leads column-wise, for a client: None when a feature's values are not all of one type
    (numbers, category names or flags), which only the per-lead form can carry; the server then
    names the lead at fault."""
    columns = pb.LeadColumns(lead_ids=[lead.lead_id for lead in leads])
    names = dict.fromkeys(name for lead in leads for name in lead.features)
    for name in names:
        values = [lead.features.get(name) for lead in leads]
        kinds = {type(value) for value in values if value is not None}
        if not kinds:
            continue  # missing for every lead: no column says the same
        column = columns.features.add(name=name)
        column.missing.extend(i for i, value in enumerate(values) if value is None)
        if kinds == {bool}:
            column.flags.values.extend(value is True for value in values)
        elif kinds == {str}:
            column.categories.values.extend(v if isinstance(v, str) else "" for v in values)
        elif kinds <= {int, float}:
            column.numbers.values.extend(0.0 if v is None else float(v) for v in values)
        else:
            return None
    return columns


def scores_from_columns(columns: pb.ScoreColumns) -> list[pb.LeadScore]:
    """A column-wise answer as per-lead ``LeadScore`` messages (for display, not the hot path)."""
    k = columns.reasons_per_lead
    names = columns.feature_names
    return [
        pb.LeadScore(
            lead_id=lead_id,
            probability=columns.probability[i],
            band=columns.band[i],
            rank=columns.rank[i],
            logit=columns.logit[i],
            base_value=columns.base_value,
            reasons=[
                pb.Reason(
                    feature=names[columns.reason_feature[j]],
                    label=columns.reason_label[j],
                    contribution=columns.reason_contribution[j],
                )
                for j in range(i * k, (i + 1) * k)
            ],
            model_name=columns.model_name,
            model_version=columns.model_version,
        )
        for i, lead_id in enumerate(columns.lead_ids)
    ]
