"""``gateway.summary_rpc``: protobuf in, protobuf out, around the real pipeline."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from summary_helpers import LEAD, TENANT

from gateway import summary_rpc
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes.errors import NotFound
from tests.fakes.openai_server import ErrorReply, StreamReply


async def rpc(summarizer, request: pb.SummarizeLeadRequest) -> list[pb.SummarizeLeadResponse]:
    deadline = time.monotonic() + 5
    return [m async for m in summary_rpc.summarize_lead(summarizer, TENANT, request, deadline)]


async def test_text_messages_then_one_final(llm_server, make_summarizer, scorer):
    llm_server.script(
        StreamReply(["Retiring soon [3]", ". Meeting booked for June [1].", " Buys crypto [2]."])
    )
    request = pb.SummarizeLeadRequest(lead_id=LEAD, model_name="lead_scorer", model_version="2")
    request.features["age"].number = 58
    request.features["segment"].category = "hnw"
    request.features["has_pension"].flag = False
    request.features["unknown"].SetInParent()  # a FeatureValue with no kind set: missing

    messages = await rpc(make_summarizer(), request)

    *texts, last = messages
    assert all(m.WhichOneof("event") == "text" for m in texts)
    text = "".join(m.text for m in texts)
    assert text.startswith("Conversion score: 72% (hot).")
    assert text.endswith("\n\nRetiring soon [3]. Meeting booked for June [1].")
    assert last.WhichOneof("event") == "final"
    final = last.final
    # [2] was cited only by the dropped sentence: it is not among the citations shown.
    assert [(c.index, c.note_id) for c in final.citations] == [(1, "n-3"), (3, "n-1")]
    assert final.citations[0].created_at.ToDatetime(tzinfo=UTC) == datetime(
        2024, 5, 15, 9, 30, tzinfo=UTC
    )
    assert final.generator == "fake-model" and not final.fallback
    assert (final.prompt_tokens, final.completion_tokens) == (42, 17)
    assert final.prompt_version == "lead-summary/v2"
    assert final.sentences_shown == 2 and final.sentences_dropped == 1
    assert dict(final.dropped_by_reason) == {"unsupported_term": 1}
    assert final.capped == "" and final.latency.first_shown_ms > 0
    assert final.latency.total_ms > 0
    assert final.score.band == pb.SCORE_BAND_HOT
    assert final.score.model_version == "2"
    assert final.score.reasons[0].label == "Retiring within 5 years"
    assert scorer.calls[0][0].features == {
        "age": 58.0,
        "segment": "hnw",
        "has_pension": False,
        "unknown": None,
    }


async def test_empty_features_use_the_stored_profile(llm_server, make_summarizer, scorer):
    await rpc(make_summarizer(), pb.SummarizeLeadRequest(lead_id=LEAD))
    assert scorer.calls[0][0].features["segment"] == "hnw"


async def test_fallback_fields(llm_server, make_summarizer):
    llm_server.default = ErrorReply(500)
    messages = await rpc(make_summarizer(mask_pii=True), pb.SummarizeLeadRequest(lead_id=LEAD))

    final = messages[-1].final
    assert final.fallback and final.generator == "fallback"
    assert final.fallback_reason == "http_500"
    assert final.masked_pii == 5
    assert len(final.citations) == 3


async def test_domain_errors_propagate(make_summarizer):
    with pytest.raises(NotFound):
        await rpc(make_summarizer(), pb.SummarizeLeadRequest(lead_id="nobody"))
