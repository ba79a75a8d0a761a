"""OTLP/gRPC span export that writes the protobuf wire bytes itself.

The official exporter builds a protobuf object for every span, attribute and value, then
serialises the tree: about 48 µs a span on the export thread, which holds the GIL the event loop
needs. ``ExportRequestEncoder`` writes the same ``ExportTraceServiceRequest`` bytes directly and
keeps the parts that repeat (resource, scope headers, common attributes) as ready bytes.

The bytes decode equal to ``encode_spans`` of opentelemetry-exporter-otlp-proto-common (checked
field by field in tests/gateway/telemetry/test_otlp_wire.py), including its quirks: a link's
trace state is not sent, and an attribute it cannot encode is logged and left out.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PB2Span
from opentelemetry.proto.trace.v1.trace_pb2 import SpanFlags
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode
from opentelemetry.util.types import Attributes

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

# A tag byte is (field number << 3) | wire type; wire types: 0 varint, 1 fixed64, 2 length-
# delimited, 5 fixed32. Field numbers are those of opentelemetry/proto/trace/v1/trace.proto.
_SMALL_VARINTS = [bytes((n,)) for n in range(128)]
_TIMES = struct.Struct("<BQBQ").pack  # Span fields 7 and 8, fixed64
_TIME = struct.Struct("<BQ").pack  # Event field 1, fixed64
_DOUBLE = struct.Struct("<d").pack
# trace_id (16 bytes) and span_id (8 bytes), optionally parent_span_id: fields 1, 2 and 4 of a
# Span, 1 and 2 of a Link. The ids are big-endian bytes, as the official encoder writes them.
_IDS = struct.Struct(">BBQQBBQ").pack
_IDS_AND_PARENT = struct.Struct(">BBQQBBQBBQ").pack
_LOW64 = (1 << 64) - 1

_KINDS = {
    kind: b"\x30" + bytes((PB2Span.SpanKind.Value(f"SPAN_KIND_{kind.name}"),)) for kind in SpanKind
}
# Status (field 15) without a message; the code is field 3, left out when UNSET.
_STATUSES = {
    code: b"\x7a\x02\x18" + bytes((code.value,)) if code.value else b"\x7a\x00"
    for code in StatusCode
}
_HAS_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
# Span.flags is field 16 (a two-byte tag), Link.flags field 6; both fixed32.
_SPAN_FLAGS_LOCAL = b"\x85\x01" + struct.pack("<I", _HAS_IS_REMOTE)
_SPAN_FLAGS_REMOTE = b"\x85\x01" + struct.pack("<I", _HAS_IS_REMOTE | _IS_REMOTE)
_LINK_FLAGS_LOCAL = b"\x35" + struct.pack("<I", _HAS_IS_REMOTE)
_LINK_FLAGS_REMOTE = b"\x35" + struct.pack("<I", _HAS_IS_REMOTE | _IS_REMOTE)

_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL_VARINTS[n]
    if n < 0x4000:  # most lengths: a span, a KeyValue
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    return tag + _varint(len(payload)) + payload


def _int64(n: int) -> bytes:
    if not -(1 << 63) <= n < 1 << 63:
        raise ValueError(f"Value out of range: {n}")  # as protobuf refuses it
    return _varint(n & _LOW64)  # two's complement: a negative int64 takes ten bytes


def _any_value(value: Any) -> bytes:
    """An AnyValue message; the checks run in the order of the official ``_encode_value``."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        return b"\x18" + _int64(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        pairs = (_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items())
        return _field(b"\x32", b"".join(pairs))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    """A KeyValue message; its value is always present, if empty for None."""
    return (_field(b"\x0a", key.encode()) if key else b"") + _field(b"\x12", _any_value(value))


def _key_value_field(key: str, value: Any) -> bytes | None:
    """Length and KeyValue, ready to follow a tag; None, logged, if the value cannot be encoded
    (the official ``_encode_attributes`` logs and skips such a key too)."""
    try:
        key_value = _key_value(key, value)
        return _varint(len(key_value)) + key_value
    except Exception as error:
        _logger.exception("Failed to encode key %s: %s", key, error)
        return None


def _ids(context: SpanContext, parent: SpanContext | None = None) -> bytes:
    """The trace_id, span_id and parent_span_id fields: 1, 2 and 4 of a Span, 1 and 2 of a Link."""
    high, low = context.trace_id >> 64, context.trace_id & _LOW64
    if parent is None:
        return _IDS(0x0A, 16, high, low, 0x12, 8, context.span_id)
    return _IDS_AND_PARENT(0x0A, 16, high, low, 0x12, 8, context.span_id, 0x22, 8, parent.span_id)


class ExportRequestEncoder:
    """Writes finished spans as ``ExportTraceServiceRequest`` bytes.

    Keeps, for later calls, the encoded resources and scope headers, and attributes whose value
    is a str, int or bool. Safe to share between threads: an entry is stored whole, and one lost
    to a concurrent clear is only a miss.
    """

    def __init__(self, max_cached_attributes: int = 4096) -> None:
        self._max_cached_attributes = max_cached_attributes
        # (key, value, type): the type keeps True and 1 apart. Floats are not cached: they are
        # mostly unique measurements, and -0.0 == 0.0 would share one encoding.
        self._attributes: dict[tuple[str, object, type], bytes] = {}
        # id → (the object, kept so that its id is not reused; its encoded head and tail).
        self._blocks: dict[int, tuple[object, bytes, bytes]] = {}

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        # Grouped by resource, then scope, in dicts keyed by the objects (so by equality) as the
        # official encoder does; but looked up once per distinct pair of objects, since hashing
        # a Resource serialises its attributes to JSON.
        groups: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
        buckets: dict[tuple[int, int], list[bytes]] = {}
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope or None
            bucket = buckets.get((id(resource), id(scope)))
            if bucket is None:
                bucket = groups.setdefault(resource, {}).setdefault(scope, [])
                buckets[id(resource), id(scope)] = bucket
            body = self._span(span)
            bucket += (b"\x12", _varint(len(body)), body)  # ScopeSpans.spans

        request = []
        for resource, scopes in groups.items():
            resource_head, resource_tail = self._block(resource, self._resource)
            resource_spans = [resource_head]
            for scope, encoded_spans in scopes.items():
                scope_head, scope_tail = self._block(scope, self._scope)
                scope_spans = b"".join([scope_head, *encoded_spans, scope_tail])
                resource_spans.append(_field(b"\x12", scope_spans))  # ResourceSpans.scope_spans
            resource_spans.append(resource_tail)
            request.append(_field(b"\x0a", b"".join(resource_spans)))
        return b"".join(request)

    def _block(self, owner: _T, encode: Callable[[_T], tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
        """``encode(owner)``, remembered for the same object (a process has a few resources and
        scopes; the bound only stops a pathological growth)."""
        entry = self._blocks.get(id(owner))
        if entry is None or entry[0] is not owner:
            if len(self._blocks) >= 256:
                self._blocks.clear()
            entry = self._blocks[id(owner)] = (owner, *encode(owner))
        return entry[1], entry[2]

    def _resource(self, resource: Resource) -> tuple[bytes, bytes]:
        """ResourceSpans.resource (only its attributes, as the official encoder writes it) and
        ResourceSpans.schema_url."""
        attributes: list[bytes] = []
        self._append_attributes(attributes, b"\x0a", resource.attributes)
        schema_url = _field(b"\x1a", resource.schema_url.encode()) if resource.schema_url else b""
        return _field(b"\x0a", b"".join(attributes)), schema_url

    def _scope(self, scope: InstrumentationScope | None) -> tuple[bytes, bytes]:
        """ScopeSpans.scope (name, version, attributes; empty for no scope) and
        ScopeSpans.schema_url."""
        parts: list[bytes] = []
        schema_url = b""
        if scope is not None:
            if scope.name:
                parts.append(_field(b"\x0a", scope.name.encode()))
            if scope.version:
                parts.append(_field(b"\x12", scope.version.encode()))
            self._append_attributes(parts, b"\x1a", scope.attributes)
            if scope.schema_url:
                schema_url = _field(b"\x1a", scope.schema_url.encode())
        return _field(b"\x0a", b"".join(parts)), schema_url

    def _span(self, span: ReadableSpan) -> bytes:
        context, parent = span.get_span_context(), span.parent
        assert context is not None  # the SDK gives every span a context
        parts = [_ids(context, parent)]
        if context.trace_state:
            trace_state = ",".join(f"{k}={v}" for k, v in context.trace_state.items())
            parts.append(_field(b"\x1a", trace_state.encode()))
        if span.name:
            parts.append(_field(b"\x2a", span.name.encode()))
        parts.append(_KINDS[span.kind])
        start, end = span.start_time, span.end_time
        if start and end:
            parts.append(_TIMES(0x39, start, 0x41, end))
        else:
            if start:
                parts.append(_TIME(0x39, start))
            if end:
                parts.append(_TIME(0x41, end))
        self._append_attributes(parts, b"\x4a", span.attributes)
        if dropped := span.dropped_attributes:
            parts += (b"\x50", _varint(dropped))
        for event in span.events:
            parts.append(_field(b"\x5a", self._event(event)))
        if dropped := span.dropped_events:
            parts += (b"\x60", _varint(dropped))
        for link in span.links:
            parts.append(_field(b"\x6a", self._link(link)))
        if dropped := span.dropped_links:
            parts += (b"\x70", _varint(dropped))
        status = span.status
        if description := status.description:
            code = status.status_code.value
            message = _field(b"\x12", description.encode())
            parts.append(_field(b"\x7a", message + (b"\x18" + _varint(code) if code else b"")))
        else:
            parts.append(_STATUSES[status.status_code])
        parts.append(
            _SPAN_FLAGS_REMOTE if parent is not None and parent.is_remote else _SPAN_FLAGS_LOCAL
        )
        return b"".join(parts)

    def _event(self, event: Event) -> bytes:
        parts = [_TIME(0x09, event.timestamp)] if event.timestamp else []
        if event.name:
            parts.append(_field(b"\x12", event.name.encode()))
        self._append_attributes(parts, b"\x1a", event.attributes)
        if dropped := event.dropped_attributes:
            parts += (b"\x20", _varint(dropped))
        return b"".join(parts)

    def _link(self, link: Link) -> bytes:
        """Without the linked context's trace state: the official encoder leaves it out."""
        parts = [_ids(link.context)]
        self._append_attributes(parts, b"\x22", link.attributes)
        if dropped := link.dropped_attributes:
            parts += (b"\x28", _varint(dropped))
        parts.append(_LINK_FLAGS_REMOTE if link.context.is_remote else _LINK_FLAGS_LOCAL)
        return b"".join(parts)

    def _append_attributes(self, parts: list[bytes], tag: bytes, attributes: Attributes) -> None:
        """Appends ``tag`` and a KeyValue per attribute that can be encoded."""
        if attributes is None:
            return
        # A span's attributes are a read-only view of the SDK's BoundedAttributes, whose items()
        # calls back into Python per item; its public copy() is a plain dict, three times faster.
        items = (
            attributes.copy().items()
            if type(attributes) is MappingProxyType
            else attributes.items()
        )
        cache = self._attributes
        for key, value in items:
            cls = value.__class__
            if cls is str or cls is int or cls is bool:
                cache_key = (key, value, cls)
                encoded = cache.get(cache_key)
                if encoded is None:
                    encoded = _key_value_field(key, value)
                    if encoded is None:
                        continue
                    if len(cache) >= self._max_cached_attributes:
                        cache.clear()
                    cache[cache_key] = encoded
            else:
                encoded = _key_value_field(key, value)
                if encoded is None:
                    continue
            parts += (tag, encoded)


def encode_export_request(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialised ``ExportTraceServiceRequest`` for ``spans``: it decodes equal to
    ``encode_spans(spans)`` of the official OTLP exporter."""
    return ExportRequestEncoder().encode(spans)


class _BytesTraceServiceStub:
    """A ``TraceServiceStub`` whose ``Export`` sends request bytes as they are: grpc leaves a
    request unserialised when ``request_serializer`` is None."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Export = channel.unary_unary(
            _EXPORT_METHOD,
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )


class WireOTLPSpanExporter(OTLPSpanExporter):
    """The official OTLP/gRPC span exporter, sending the bytes ``ExportRequestEncoder`` writes.

    Takes the same arguments, and keeps everything else of it: configuration from the
    ``OTEL_EXPORTER_OTLP_*`` variables, headers, compression, timeout, retries with backoff,
    reconnecting and shutdown.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = ExportRequestEncoder()
        # Private hooks of OTLPExporterMixin (opentelemetry-exporter-otlp-proto-grpc 1.45):
        # it builds ``self._client = self._stub(self._channel)`` when created and again when it
        # reconnects after UNAVAILABLE, then calls ``self._client.Export(request=...)`` with
        # what ``_translate_data`` returns. Replacing the stub class covers both; the client
        # built in __init__ above with the official stub is replaced here. If the mixin changes,
        # the official stub gets bytes and fails to serialise them, which the end-to-end tests
        # in test_otlp_wire.py catch.
        self._stub = _BytesTraceServiceStub
        self._client = self._stub(self._channel)

    def _translate_data(self, data: Sequence[ReadableSpan]) -> bytes:  # type: ignore[override]
        # Called by ``_export`` for the request of each attempt; the stub above sends it as is.
        return self._encoder.encode(data)


def disagreement(encoder: ExportRequestEncoder | None = None) -> str | None:
    """Why the fast path must not be used here, or None when it is safe.

    Run once at start-up: the fast path leans on private hooks of the official exporter (pinned
    in pyproject to the versions it was tested with) and must write exactly what the official
    encoder writes. A sample of spans covering every field it encodes is encoded both ways."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    for hook in ("_translate_data", "_export"):
        if not callable(getattr(OTLPSpanExporter, hook, None)):
            return f"OTLPSpanExporter has no {hook}() to extend"
    spans = _sample_spans()
    ours = (encoder or ExportRequestEncoder()).encode(spans)
    try:
        decoded = ExportTraceServiceRequest.FromString(ours)
    except Exception as exc:  # DecodeError, or anything a broken encoder provokes
        return f"the fast encoder wrote bytes that do not decode: {exc}"
    if decoded != encode_spans(spans):
        return "the fast encoder's request differs from the official encoder's"
    return None


def _sample_spans() -> list[ReadableSpan]:
    """A few real SDK spans with attributes of every type, events, links, kinds and statuses."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "leadgw-self-check"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("leadgw.self_check", "1")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        parent.set_attributes(
            {"s": "text", "b": True, "i": 7, "f": 0.5, "ss": ["a", "b"], "ii": [1, 2]}
        )
        parent.add_event("event", {"n": 1})
        with tracer.start_as_current_span(
            "child", links=[Link(parent.get_span_context(), {"k": "v"})]
        ) as child:
            child.set_status(Status(StatusCode.ERROR, "failed"))
    provider.shutdown()
    return list(memory.get_finished_spans())
