"""One rule for lead ids across every API (ScoreLeads per lead and column-wise, the notes APIs),
and IndexNotes' lead profiles checked against the served model's schema exactly as ScoreLeads
checks features."""

from __future__ import annotations

import grpc
import pytest
from leads_helpers import columns_request, sample_leads, score_request

from gateway import lead_codec
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from runtimes.ids import MAX_ID_CHARS
from runtimes.types import LeadInput

GOOD = sample_leads(3, seed=5)
BAD_IDS = {
    "whitespace only": "   ",
    "NUL byte": "lead\x00one",
    "1 MiB": "x" * (1 << 20),
    "one past the limit": "x" * (MAX_ID_CHARS + 1),
    "leading dot": ".lead",
}


def _with_id(lead_id: str) -> list[LeadInput]:
    return [GOOD[0], LeadInput(lead_id, dict(GOOD[1].features)), GOOD[2]]


def _refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return caught.value


@pytest.mark.parametrize("form", ["per-lead", "columns"])
@pytest.mark.parametrize("lead_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_score_leads_refuses_a_lead_id_the_notes_apis_refuse(
    lead_stub: pb_grpc.LeadServiceStub, form: str, lead_id: str
) -> None:
    make = score_request if form == "per-lead" else columns_request
    details = _refused(lead_stub.ScoreLeads, make(_with_id(lead_id))).details()
    assert details.startswith("lead at position 1: lead id "), details
    assert len(details) < 400, "a huge id is not echoed back whole"
    # The notes APIs refuse the same id.
    _refused(lead_stub.SearchNotes, pb.SearchNotesRequest(query="fees", lead_id=lead_id))


@pytest.mark.parametrize("form", ["per-lead", "columns"])
def test_score_leads_accepts_an_id_at_the_limit_from_the_whole_alphabet(
    lead_stub: pb_grpc.LeadServiceStub, form: str
) -> None:
    lead_id = ("Az09._:@-" * 20)[:MAX_ID_CHARS]
    make = score_request if form == "per-lead" else columns_request
    response = lead_stub.ScoreLeads(make(_with_id(lead_id)), timeout=30)
    ids = [s.lead_id for s in response.scores] if form == "per-lead" else response.columns.lead_ids
    assert lead_id in ids


def _profile(name: str, value: object, lead_id: str = "profile-bad") -> pb.Lead:
    features = dict(GOOD[0].features)
    if value is None:
        features.pop(name)
    else:
        features[name] = value
    return lead_codec.lead_to_pb(LeadInput(lead_id, features))


PROFILE_CASES = {
    "age 250": (_profile("age", 250.0), ["'profile-bad'", "'age'", "250"]),
    "number for a category": (_profile("channel", 3.0), ["'profile-bad'", "'channel'"]),
    "unknown feature": (
        _profile("shoe_size", 44.0),
        ["'profile-bad'", "unknown feature", "'shoe_size'"],
    ),
    "missing required": (_profile("channel", None), ["'profile-bad'", "'channel'", "missing"]),
    "bad lead id": (_profile("age", 40.0, lead_id="bad id"), ["lead id"]),
}


@pytest.mark.parametrize(("profile", "words"), PROFILE_CASES.values(), ids=list(PROFILE_CASES))
def test_index_notes_checks_lead_profiles_as_score_leads_checks_features(
    lead_stub: pb_grpc.LeadServiceStub, profile: pb.Lead, words: list[str]
) -> None:
    good = lead_codec.lead_to_pb(LeadInput("profile-good", dict(GOOD[0].features)))
    request = pb.IndexNotesRequest(leads=[good, profile])
    details = _refused(lead_stub.IndexNotes, request).details()
    for word in words:
        assert word in details, details
    # ScoreLeads says the same of the same lead.
    score_details = _refused(
        lead_stub.ScoreLeads, pb.ScoreLeadsRequest(leads=[good, profile])
    ).details()
    assert details == score_details


def test_index_notes_stores_a_valid_profile(lead_stub: pb_grpc.LeadServiceStub) -> None:
    good = lead_codec.lead_to_pb(LeadInput("profile-ok", dict(GOOD[0].features)))
    response = lead_stub.IndexNotes(pb.IndexNotesRequest(leads=[good]), timeout=30)
    assert response.leads_upserted == 1
