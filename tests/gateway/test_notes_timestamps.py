"""Timestamps outside what google.protobuf.Timestamp allows (years 1 to 9999, nanos within a
second) get INVALID_ARGUMENT naming the field, in SearchNotes and in a note's created_at."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

YEAR_10000 = 253_402_300_800  # 10000-01-01T00:00:00Z, one second past the last valid instant
OUT_OF_RANGE = {
    "seconds 2**62": Timestamp(seconds=2**62),
    "nanos -1": Timestamp(seconds=1_700_000_000, nanos=-1),
    "nanos 2e9": Timestamp(seconds=1_700_000_000, nanos=2_000_000_000),
    "year 10000": Timestamp(seconds=YEAR_10000),
    "before year 1": Timestamp(seconds=-62_135_596_801),
}
CASES = list(OUT_OF_RANGE.items())
IDS = list(OUT_OF_RANGE)


def _refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


@pytest.mark.parametrize("field", ["since", "until"])
@pytest.mark.parametrize(("case", "stamp"), CASES, ids=IDS)
def test_search_notes_refuses_an_out_of_range_time_naming_the_field(
    lead_stub: pb_grpc.LeadServiceStub, field: str, case: str, stamp: Timestamp
) -> None:
    request = pb.SearchNotesRequest(query="retirement", **{field: stamp})
    error = _refused(lead_stub.SearchNotes, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith(f"{field} "), error.details()


@pytest.mark.parametrize(("case", "stamp"), CASES, ids=IDS)
def test_index_notes_refuses_an_out_of_range_created_at_naming_the_note(
    lead_stub: pb_grpc.LeadServiceStub, case: str, stamp: Timestamp
) -> None:
    good = pb.Note(note_id="ts-good", lead_id="ts-lead", kind="call", text="Asked about fees.")
    bad = pb.Note(
        note_id="ts-bad", lead_id="ts-lead", kind="call", text="Called back.", created_at=stamp
    )
    error = _refused(lead_stub.IndexNotes, pb.IndexNotesRequest(notes=[good, bad]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "notes[1]" in error.details() and "'ts-bad'" in error.details()
    assert "created_at" in error.details()


def test_the_last_valid_instant_is_accepted(lead_stub: pb_grpc.LeadServiceStub) -> None:
    last = Timestamp(seconds=YEAR_10000 - 1, nanos=999_999_999)
    response = lead_stub.SearchNotes(pb.SearchNotesRequest(query="fees", until=last), timeout=30)
    assert isinstance(response, pb.SearchNotesResponse)
