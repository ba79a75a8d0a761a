"""Whatever a client sends, valid or not, to any RPC: the answer is never UNKNOWN or INTERNAL,
the server stays up, and the next valid request succeeds. Hypothesis generates the requests
(random field values, bytes, huge strings, NaN and infinities, wrong types in columns, random
tensor shapes and datatypes) and sends them to one real gateway, on a bounded budget."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import lead_codec
from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from runtimes.training import synth

pytestmark = pytest.mark.property

# Bounded: the whole suite runs in well under a minute on a shared machine.
BUDGET = settings(
    max_examples=40,
    deadline=None,  # latency belongs to `leadgw bench`, not here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,  # the same examples every run: a failure reproduces
)
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
SAMPLE = synth.generate(4, 7).leads("prop-")
FEATURE_NAMES = sorted(SAMPLE[0].features)
DATATYPES = ["FP32", "FP64", "INT64", "BYTES", "BOOL", "UINT8", "BF16", "", "fp32", "NOPE"]

texts = st.text(max_size=40) | st.sampled_from(["", " ", "\x00", "L-1", "x" * 200_000])
ids = st.sampled_from(["L-1", "prop-0", "", "  ", "a\x00b", "é", "x" * 129]) | st.text(max_size=12)
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([math.nan, -math.inf])
names = st.sampled_from([*FEATURE_NAMES, "", "shoe_size"]) | st.text(max_size=8)
feature_values = st.one_of(
    st.builds(pb.FeatureValue),
    numbers.map(lambda v: pb.FeatureValue(number=v)),
    texts.map(lambda v: pb.FeatureValue(category=v)),
    st.booleans().map(lambda v: pb.FeatureValue(flag=v)),
)
leads = st.builds(
    lambda lead_id, features: pb.Lead(lead_id=lead_id, features=features),
    ids,
    st.dictionaries(names, feature_values, max_size=20),
)
valid_leads = st.sampled_from(SAMPLE).map(lead_codec.lead_to_pb)
timestamps = st.builds(
    Timestamp,
    seconds=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    nanos=st.integers(min_value=-(2**31), max_value=2**31 - 1),
)


def _column(draw: st.DrawFn, n: int) -> pb.FeatureColumn:
    column = pb.FeatureColumn(name=draw(names))
    kind = draw(st.sampled_from(["numbers", "categories", "flags", None]))
    length = draw(st.sampled_from([n, 0, n + 1, max(0, n - 1)]))
    if kind == "numbers":
        column.numbers.values.extend(draw(st.lists(numbers, min_size=length, max_size=length)))
    elif kind == "categories":
        column.categories.values.extend(draw(st.lists(texts, min_size=length, max_size=length)))
    elif kind == "flags":
        column.flags.values.extend(draw(st.lists(st.booleans(), min_size=length, max_size=length)))
    column.missing.extend(draw(st.lists(st.integers(0, 2**32 - 1), max_size=3)))
    return column


@st.composite
def score_requests(draw: st.DrawFn) -> pb.ScoreLeadsRequest:
    request = pb.ScoreLeadsRequest(
        model_name=draw(st.sampled_from(["", "lead_scorer", "nope"]) | st.text(max_size=5)),
        model_version=draw(st.sampled_from(["", "1", "v1", "99"])),
        max_reasons=draw(st.sampled_from([0, 1, 3, 2**32 - 1])),
    )
    if draw(st.booleans()):
        request.leads.extend(draw(st.lists(valid_leads | leads, max_size=12)))
    if draw(st.booleans()):
        lead_ids = draw(st.lists(ids, max_size=10))
        request.columns.lead_ids.extend(lead_ids)
        request.columns.features.extend(
            _column(draw, len(lead_ids)) for _ in range(draw(st.integers(0, 6)))
        )
    return request


@st.composite
def infer_requests(draw: st.DrawFn) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(
        model_name=draw(st.sampled_from(["lead_scorer", "", "nope"])),
        model_version=draw(st.sampled_from(["", "1", "x"])),
        id=draw(texts),
    )
    for _ in range(draw(st.integers(0, 2))):
        tensor = request.inputs.add(
            name=draw(st.sampled_from(["features", "input", ""])),
            datatype=draw(st.sampled_from(DATATYPES)),
            shape=draw(st.lists(st.integers(-(2**40), 2**40) | st.integers(-1, 20), max_size=4)),
        )
        contents = tensor.contents
        which = draw(st.sampled_from(["fp32", "fp64", "int64", "bytes", "bool", None]))
        if which == "fp32":
            contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=60)))
        elif which == "fp64":
            contents.fp64_contents.extend(draw(st.lists(numbers, max_size=20)))
        elif which == "int64":
            contents.int64_contents.extend(
                draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20))
            )
        elif which == "bytes":
            contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=20), max_size=3)))
        elif which == "bool":
            contents.bool_contents.extend(draw(st.lists(st.booleans(), max_size=20)))
    request.raw_input_contents.extend(draw(st.lists(st.binary(max_size=300), max_size=2)))
    for name in draw(st.lists(st.sampled_from(["probability", "logit", "nope", ""]), max_size=3)):
        request.outputs.add(name=name)
    return request


notes = st.builds(
    lambda note_id, lead_id, kind, text, title, created: pb.Note(
        note_id=note_id, lead_id=lead_id, kind=kind, text=text, title=title, created_at=created
    ),
    ids,
    ids,
    st.sampled_from(["call", "email", "meeting", "event", "document", "", "fax"]),
    texts,
    texts,
    timestamps,
)
index_requests = st.builds(
    lambda n, ls: pb.IndexNotesRequest(notes=n, leads=ls),
    st.lists(notes, max_size=4),
    st.lists(valid_leads | leads, max_size=3),
)
search_requests = st.builds(
    lambda q, lead, kinds, since, until, top_k: pb.SearchNotesRequest(
        query=q, lead_id=lead, kinds=kinds, since=since, until=until, top_k=top_k
    ),
    texts,
    ids,
    st.lists(st.sampled_from(["call", "email", "fax", ""]), max_size=3),
    timestamps,
    timestamps,
    st.integers(0, 2**32 - 1),
)
delete_requests = st.builds(
    lambda note_ids, lead: pb.DeleteNotesRequest(note_ids=note_ids, lead_id=lead),
    st.lists(ids, max_size=4),
    ids,
)


def _valid_request_succeeds(channel: grpc.Channel) -> None:
    stub = pb_grpc.LeadServiceStub(channel)
    response = stub.ScoreLeads(
        pb.ScoreLeadsRequest(leads=[lead_codec.lead_to_pb(SAMPLE[0])]), timeout=30
    )
    assert len(response.scores) == 1


def _never_unknown_nor_internal(call: Callable[[], Any]) -> None:
    try:
        call()
    except grpc.RpcError as error:
        assert error.code() not in FORBIDDEN, (error.code(), error.details())


@BUDGET
@given(request=score_requests())
def test_score_leads_any_request(
    property_channel: grpc.Channel, request: pb.ScoreLeadsRequest
) -> None:
    stub = pb_grpc.LeadServiceStub(property_channel)
    _never_unknown_nor_internal(lambda: stub.ScoreLeads(request, timeout=30))
    _valid_request_succeeds(property_channel)


@BUDGET
@given(request=infer_requests())
def test_model_infer_any_request(
    property_channel: grpc.Channel, request: oip.ModelInferRequest
) -> None:
    stub = oip_grpc.GRPCInferenceServiceStub(property_channel)
    _never_unknown_nor_internal(lambda: stub.ModelInfer(request, timeout=30))
    _valid_request_succeeds(property_channel)


@BUDGET
@given(request=index_requests)
def test_index_notes_any_request(
    property_channel: grpc.Channel, request: pb.IndexNotesRequest
) -> None:
    stub = pb_grpc.LeadServiceStub(property_channel)
    _never_unknown_nor_internal(lambda: stub.IndexNotes(request, timeout=30))
    _valid_request_succeeds(property_channel)


@BUDGET
@given(request=search_requests)
def test_search_notes_any_request(
    property_channel: grpc.Channel, request: pb.SearchNotesRequest
) -> None:
    stub = pb_grpc.LeadServiceStub(property_channel)
    _never_unknown_nor_internal(lambda: stub.SearchNotes(request, timeout=30))
    _valid_request_succeeds(property_channel)


@BUDGET
@given(request=delete_requests)
def test_delete_notes_any_request(
    property_channel: grpc.Channel, request: pb.DeleteNotesRequest
) -> None:
    stub = pb_grpc.LeadServiceStub(property_channel)
    _never_unknown_nor_internal(lambda: stub.DeleteNotes(request, timeout=30))
    _valid_request_succeeds(property_channel)


@settings(BUDGET, max_examples=15)
@given(
    lead_id=ids,
    features=st.dictionaries(names, feature_values, max_size=8),
    model=st.sampled_from(["", "nope"]),
)
def test_summarize_lead_any_request(
    property_channel: grpc.Channel, lead_id: str, features: dict[str, pb.FeatureValue], model: str
) -> None:
    stub = pb_grpc.LeadServiceStub(property_channel)
    request = pb.SummarizeLeadRequest(lead_id=lead_id, features=features, model_name=model)
    _never_unknown_nor_internal(lambda: list(stub.SummarizeLead(request, timeout=30)))
    _valid_request_succeeds(property_channel)


PATHS = [
    f"/{service.full_name}/{method.name}"
    for file in (pb.DESCRIPTOR, oip.DESCRIPTOR)
    for service in file.services_by_name.values()
    for method in service.methods
]
STREAMING = {"/leadgw.v1.LeadService/SummarizeLead"}


@BUDGET
@given(path=st.sampled_from(PATHS), payload=st.binary(max_size=2_000))
def test_any_bytes_to_any_method(property_channel: grpc.Channel, path: str, payload: bytes) -> None:
    if path in STREAMING:
        call = property_channel.unary_stream(path)
        _never_unknown_nor_internal(lambda: list(call(payload, timeout=30)))
    else:
        unary = property_channel.unary_unary(path)
        _never_unknown_nor_internal(lambda: unary(payload, timeout=30))
    _valid_request_succeeds(property_channel)
