import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreBand(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCORE_BAND_UNSPECIFIED: _ClassVar[ScoreBand]
    SCORE_BAND_HOT: _ClassVar[ScoreBand]
    SCORE_BAND_WARM: _ClassVar[ScoreBand]
    SCORE_BAND_COLD: _ClassVar[ScoreBand]
SCORE_BAND_UNSPECIFIED: ScoreBand
SCORE_BAND_HOT: ScoreBand
SCORE_BAND_WARM: ScoreBand
SCORE_BAND_COLD: ScoreBand

class FeatureValue(_message.Message):
    __slots__ = ("number", "category", "flag")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    number: float
    category: str
    flag: bool
    def __init__(self, number: _Optional[float] = ..., category: _Optional[str] = ..., flag: _Optional[bool] = ...) -> None: ...

class Lead(_message.Message):
    __slots__ = ("lead_id", "features")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FeatureValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FeatureValue, _Mapping]] = ...) -> None: ...
    LEAD_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    lead_id: str
    features: _containers.MessageMap[str, FeatureValue]
    def __init__(self, lead_id: _Optional[str] = ..., features: _Optional[_Mapping[str, FeatureValue]] = ...) -> None: ...

class ScoreLeadsRequest(_message.Message):
    __slots__ = ("leads", "model_name", "model_version", "max_reasons", "columns")
    LEADS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_REASONS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    leads: _containers.RepeatedCompositeFieldContainer[Lead]
    model_name: str
    model_version: str
    max_reasons: int
    columns: LeadColumns
    def __init__(self, leads: _Optional[_Iterable[_Union[Lead, _Mapping]]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., max_reasons: _Optional[int] = ..., columns: _Optional[_Union[LeadColumns, _Mapping]] = ...) -> None: ...

class LeadColumns(_message.Message):
    __slots__ = ("lead_ids", "features")
    LEAD_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    lead_ids: _containers.RepeatedScalarFieldContainer[str]
    features: _containers.RepeatedCompositeFieldContainer[FeatureColumn]
    def __init__(self, lead_ids: _Optional[_Iterable[str]] = ..., features: _Optional[_Iterable[_Union[FeatureColumn, _Mapping]]] = ...) -> None: ...

class FeatureColumn(_message.Message):
    __slots__ = ("name", "numbers", "categories", "flags", "missing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBERS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    name: str
    numbers: NumberColumn
    categories: CategoryColumn
    flags: FlagColumn
    missing: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., numbers: _Optional[_Union[NumberColumn, _Mapping]] = ..., categories: _Optional[_Union[CategoryColumn, _Mapping]] = ..., flags: _Optional[_Union[FlagColumn, _Mapping]] = ..., missing: _Optional[_Iterable[int]] = ...) -> None: ...

class NumberColumn(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class CategoryColumn(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class FlagColumn(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, values: _Optional[_Iterable[bool]] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("feature", "label", "contribution")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    feature: str
    label: str
    contribution: float
    def __init__(self, feature: _Optional[str] = ..., label: _Optional[str] = ..., contribution: _Optional[float] = ...) -> None: ...

class LeadScore(_message.Message):
    __slots__ = ("lead_id", "probability", "band", "rank", "reasons", "logit", "base_value", "model_name", "model_version")
    LEAD_ID_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    BAND_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    LOGIT_FIELD_NUMBER: _ClassVar[int]
    BASE_VALUE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    lead_id: str
    probability: float
    band: ScoreBand
    rank: int
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    logit: float
    base_value: float
    model_name: str
    model_version: str
    def __init__(self, lead_id: _Optional[str] = ..., probability: _Optional[float] = ..., band: _Optional[_Union[ScoreBand, str]] = ..., rank: _Optional[int] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., logit: _Optional[float] = ..., base_value: _Optional[float] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class ScoreLeadsResponse(_message.Message):
    __slots__ = ("scores", "columns")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[LeadScore]
    columns: ScoreColumns
    def __init__(self, scores: _Optional[_Iterable[_Union[LeadScore, _Mapping]]] = ..., columns: _Optional[_Union[ScoreColumns, _Mapping]] = ...) -> None: ...

class ScoreColumns(_message.Message):
    __slots__ = ("lead_ids", "probability", "band", "rank", "logit", "reasons_per_lead", "reason_feature", "reason_label", "reason_contribution", "base_value", "model_name", "model_version", "feature_names")
    LEAD_IDS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    BAND_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    LOGIT_FIELD_NUMBER: _ClassVar[int]
    REASONS_PER_LEAD_FIELD_NUMBER: _ClassVar[int]
    REASON_FEATURE_FIELD_NUMBER: _ClassVar[int]
    REASON_LABEL_FIELD_NUMBER: _ClassVar[int]
    REASON_CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    BASE_VALUE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    lead_ids: _containers.RepeatedScalarFieldContainer[str]
    probability: _containers.RepeatedScalarFieldContainer[float]
    band: _containers.RepeatedScalarFieldContainer[ScoreBand]
    rank: _containers.RepeatedScalarFieldContainer[int]
    logit: _containers.RepeatedScalarFieldContainer[float]
    reasons_per_lead: int
    reason_feature: _containers.RepeatedScalarFieldContainer[int]
    reason_label: _containers.RepeatedScalarFieldContainer[str]
    reason_contribution: _containers.RepeatedScalarFieldContainer[float]
    base_value: float
    model_name: str
    model_version: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lead_ids: _Optional[_Iterable[str]] = ..., probability: _Optional[_Iterable[float]] = ..., band: _Optional[_Iterable[_Union[ScoreBand, str]]] = ..., rank: _Optional[_Iterable[int]] = ..., logit: _Optional[_Iterable[float]] = ..., reasons_per_lead: _Optional[int] = ..., reason_feature: _Optional[_Iterable[int]] = ..., reason_label: _Optional[_Iterable[str]] = ..., reason_contribution: _Optional[_Iterable[float]] = ..., base_value: _Optional[float] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ...) -> None: ...

class Note(_message.Message):
    __slots__ = ("note_id", "lead_id", "kind", "text", "created_at", "title")
    NOTE_ID_FIELD_NUMBER: _ClassVar[int]
    LEAD_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    note_id: str
    lead_id: str
    kind: str
    text: str
    created_at: _timestamp_pb2.Timestamp
    title: str
    def __init__(self, note_id: _Optional[str] = ..., lead_id: _Optional[str] = ..., kind: _Optional[str] = ..., text: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., title: _Optional[str] = ...) -> None: ...

class IndexNotesRequest(_message.Message):
    __slots__ = ("notes", "leads")
    NOTES_FIELD_NUMBER: _ClassVar[int]
    LEADS_FIELD_NUMBER: _ClassVar[int]
    notes: _containers.RepeatedCompositeFieldContainer[Note]
    leads: _containers.RepeatedCompositeFieldContainer[Lead]
    def __init__(self, notes: _Optional[_Iterable[_Union[Note, _Mapping]]] = ..., leads: _Optional[_Iterable[_Union[Lead, _Mapping]]] = ...) -> None: ...

class NoteResult(_message.Message):
    __slots__ = ("note_id", "status", "error")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[NoteResult.Status]
        STATUS_ADDED: _ClassVar[NoteResult.Status]
        STATUS_UPDATED: _ClassVar[NoteResult.Status]
        STATUS_UNCHANGED: _ClassVar[NoteResult.Status]
        STATUS_REJECTED: _ClassVar[NoteResult.Status]
    STATUS_UNSPECIFIED: NoteResult.Status
    STATUS_ADDED: NoteResult.Status
    STATUS_UPDATED: NoteResult.Status
    STATUS_UNCHANGED: NoteResult.Status
    STATUS_REJECTED: NoteResult.Status
    NOTE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    note_id: str
    status: NoteResult.Status
    error: str
    def __init__(self, note_id: _Optional[str] = ..., status: _Optional[_Union[NoteResult.Status, str]] = ..., error: _Optional[str] = ...) -> None: ...

class IndexNotesResponse(_message.Message):
    __slots__ = ("results", "added", "updated", "unchanged", "rejected", "leads_upserted")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    LEADS_UPSERTED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[NoteResult]
    added: int
    updated: int
    unchanged: int
    rejected: int
    leads_upserted: int
    def __init__(self, results: _Optional[_Iterable[_Union[NoteResult, _Mapping]]] = ..., added: _Optional[int] = ..., updated: _Optional[int] = ..., unchanged: _Optional[int] = ..., rejected: _Optional[int] = ..., leads_upserted: _Optional[int] = ...) -> None: ...

class DeleteNotesRequest(_message.Message):
    __slots__ = ("note_ids", "lead_id")
    NOTE_IDS_FIELD_NUMBER: _ClassVar[int]
    LEAD_ID_FIELD_NUMBER: _ClassVar[int]
    note_ids: _containers.RepeatedScalarFieldContainer[str]
    lead_id: str
    def __init__(self, note_ids: _Optional[_Iterable[str]] = ..., lead_id: _Optional[str] = ...) -> None: ...

class DeleteNotesResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class SearchNotesRequest(_message.Message):
    __slots__ = ("query", "lead_id", "kinds", "since", "until", "top_k")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    LEAD_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    query: str
    lead_id: str
    kinds: _containers.RepeatedScalarFieldContainer[str]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    top_k: int
    def __init__(self, query: _Optional[str] = ..., lead_id: _Optional[str] = ..., kinds: _Optional[_Iterable[str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., top_k: _Optional[int] = ...) -> None: ...

class NoteHit(_message.Message):
    __slots__ = ("note_id", "lead_id", "kind", "text", "created_at", "score", "title")
    NOTE_ID_FIELD_NUMBER: _ClassVar[int]
    LEAD_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    note_id: str
    lead_id: str
    kind: str
    text: str
    created_at: _timestamp_pb2.Timestamp
    score: float
    title: str
    def __init__(self, note_id: _Optional[str] = ..., lead_id: _Optional[str] = ..., kind: _Optional[str] = ..., text: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., score: _Optional[float] = ..., title: _Optional[str] = ...) -> None: ...

class SearchNotesResponse(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[NoteHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[NoteHit, _Mapping]]] = ...) -> None: ...

class SummarizeLeadRequest(_message.Message):
    __slots__ = ("lead_id", "features", "model_name", "model_version")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FeatureValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FeatureValue, _Mapping]] = ...) -> None: ...
    LEAD_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    lead_id: str
    features: _containers.MessageMap[str, FeatureValue]
    model_name: str
    model_version: str
    def __init__(self, lead_id: _Optional[str] = ..., features: _Optional[_Mapping[str, FeatureValue]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("index", "note_id", "created_at")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NOTE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    index: int
    note_id: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, index: _Optional[int] = ..., note_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LatencyBreakdown(_message.Message):
    __slots__ = ("score_ms", "retrieve_ms", "first_token_ms", "total_ms", "prompt_ms", "first_shown_ms")
    SCORE_MS_FIELD_NUMBER: _ClassVar[int]
    RETRIEVE_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SHOWN_MS_FIELD_NUMBER: _ClassVar[int]
    score_ms: float
    retrieve_ms: float
    first_token_ms: float
    total_ms: float
    prompt_ms: float
    first_shown_ms: float
    def __init__(self, score_ms: _Optional[float] = ..., retrieve_ms: _Optional[float] = ..., first_token_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., prompt_ms: _Optional[float] = ..., first_shown_ms: _Optional[float] = ...) -> None: ...

class SummaryFinal(_message.Message):
    __slots__ = ("citations", "generator", "fallback", "fallback_reason", "prompt_tokens", "completion_tokens", "cached", "latency", "removed_citations", "masked_pii", "prompt_version", "score", "sentences_shown", "sentences_dropped", "dropped_by_reason", "capped", "note_instructions_removed")
    class DroppedByReasonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    REMOVED_CITATIONS_FIELD_NUMBER: _ClassVar[int]
    MASKED_PII_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_SHOWN_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    CAPPED_FIELD_NUMBER: _ClassVar[int]
    NOTE_INSTRUCTIONS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    citations: _containers.RepeatedCompositeFieldContainer[Citation]
    generator: str
    fallback: bool
    fallback_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    latency: LatencyBreakdown
    removed_citations: int
    masked_pii: int
    prompt_version: str
    score: LeadScore
    sentences_shown: int
    sentences_dropped: int
    dropped_by_reason: _containers.ScalarMap[str, int]
    capped: str
    note_instructions_removed: int
    def __init__(self, citations: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ..., generator: _Optional[str] = ..., fallback: _Optional[bool] = ..., fallback_reason: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cached: _Optional[bool] = ..., latency: _Optional[_Union[LatencyBreakdown, _Mapping]] = ..., removed_citations: _Optional[int] = ..., masked_pii: _Optional[int] = ..., prompt_version: _Optional[str] = ..., score: _Optional[_Union[LeadScore, _Mapping]] = ..., sentences_shown: _Optional[int] = ..., sentences_dropped: _Optional[int] = ..., dropped_by_reason: _Optional[_Mapping[str, int]] = ..., capped: _Optional[str] = ..., note_instructions_removed: _Optional[int] = ...) -> None: ...

class SummarizeLeadResponse(_message.Message):
    __slots__ = ("text", "final")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    text: str
    final: SummaryFinal
    def __init__(self, text: _Optional[str] = ..., final: _Optional[_Union[SummaryFinal, _Mapping]] = ...) -> None: ...
