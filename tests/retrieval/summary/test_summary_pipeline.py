"""The summary pipeline against a fake OpenAI-protocol server: streaming, citations, PII, cache,
tenancy."""

from __future__ import annotations

import re

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from summary_helpers import LEAD, OTHER_TENANT, TENANT, model_part, note, summarize

from retrieval.summary import PROMPT_VERSION
from retrieval.summary.fallback import FALLBACK_HEADER
from runtimes.errors import DeadlineExceeded, InvalidInput, NotFound
from tests.fakes.openai_server import ErrorReply, StreamReply


async def test_streams_chunks_in_order_and_ends_with_cited_result(llm_server, make_summarizer):
    llm_server.script(
        StreamReply(
            ["The lead is retiring ", "within five years [3]. ", "A meeting is booked [1]."]
        )
    )
    chunks, result = await summarize(make_summarizer())

    text = "".join(chunks)
    # The gateway's facts first (score, reasons, note dates), then the model's checked sentences.
    assert text.startswith("Conversion score: 72% (hot).\n- Retiring within 5 years")
    assert "[1] 2024-05-15 (15 May 2024) meeting" in text
    assert (
        model_part(text) == "The lead is retiring within five years [3]. A meeting is booked [1]."
    )
    assert len(chunks) >= 2  # streamed, sentence by sentence, not one blob
    assert [(c.index, c.note_id) for c in result.citations] == [(1, "n-3"), (3, "n-1")]
    assert result.citations[0].created_at.day == 15
    assert result.generator == "fake-model"
    assert not result.fallback and result.fallback_reason == ""
    assert (result.prompt_tokens, result.completion_tokens) == (42, 17)
    assert not result.tokens_estimated
    assert result.removed_citations == 0
    assert result.prompt_version == PROMPT_VERSION
    assert result.score.probability == pytest.approx(0.72)
    assert result.latency.total_ms >= result.latency.first_shown_ms
    assert result.latency.first_shown_ms >= result.latency.first_token_ms > 0
    assert result.sentences_shown == 2 and result.dropped_by_reason == {}
    assert result.capped == ""


async def test_prompt_numbers_the_lead_notes_and_firm_documents_it_sends(
    llm_server, make_summarizer
):
    await summarize(make_summarizer())

    (request,) = llm_server.chat_requests
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["model"] == "fake-model"
    system, user = request.body["messages"]
    assert system["role"] == "system" and "[n]" in system["content"]
    assert "investment advice" in system["content"]
    assert "never instructions" in system["content"]
    assert re.search(
        r'^<note n="1" date="2024-05-15" kind="meeting">Meeting booked .*</note>$',
        user["content"],
        re.M,
    )
    assert re.search(
        r'^<note n="4" date="2024-05-02" kind="firm document">Firm guidance', user["content"], re.M
    )
    assert "Retiring within 5 years (raises the odds)" in user["content"]
    assert "Globex" not in request.prompt_text  # another tenant's note never reaches the prompt


async def test_invented_citations_are_removed_and_counted(llm_server, make_summarizer):
    # [9] names no note given; "[1" + "2]" is a split invented marker; "[2, 7]" keeps only 2.
    llm_server.script(
        StreamReply(
            [
                "Retiring soon [9]. The client emailed from jane.doe@example.com [2, 7]. ",
                "A meeting is booked for June to review pension transfer options [",
                "1",
                "2]",
                ".",
            ]
        )
    )
    chunks, result = await summarize(make_summarizer())

    # Sentences left with no valid citation are dropped by the guard.
    shown, notice, rest = re.split(r"\n\n(\[.*?\])\n\n", model_part("".join(chunks)))
    assert shown == "The client emailed from jane.doe@example.com [2]."
    # One sentence of three is too little: the automatic summary follows, marked.
    assert notice.startswith("[2 of the AI summary's 3 sentences did not match their notes")
    assert rest.startswith("Most recent notes:")
    assert result.removed_citations == 3
    assert [c.note_id for c in result.citations] == ["n-3", "n-2", "n-1"]  # with the fallback's
    assert result.dropped_by_reason == {"no_citation": 2} and result.sentences_shown == 1
    assert result.fallback and result.fallback_reason == "guard_rejected after partial output"


async def test_a_valid_marker_split_across_chunks_is_kept(llm_server, make_summarizer):
    llm_server.script(
        StreamReply(
            ["Meeting booked for June [", "1", "]", " and retiring within 5 years [3", "]."]
        )
    )
    chunks, result = await summarize(make_summarizer())

    assert (
        model_part("".join(chunks))
        == "Meeting booked for June [1] and retiring within 5 years [3]."
    )
    assert not any(c.endswith("[") for c in chunks)  # the partial marker was held back
    assert [c.index for c in result.citations] == [1, 3]
    assert result.removed_citations == 0


async def test_pii_is_masked_before_the_prompt_leaves(llm_server, make_summarizer):
    _, result = await summarize(make_summarizer(mask_pii=True))

    sent = llm_server.chat_requests[0].prompt_text
    for secret in ("jane.doe@example.com", "7946 0958", "12345678", "4111 1111", "123-45-6789"):
        assert secret not in sent
    for placeholder in ("[EMAIL]", "[PHONE]", "[ACCOUNT]", "[CARD]", "[NATIONAL_ID]"):
        assert placeholder in sent
    assert result.masked_pii == 5
    assert result.masked_by_type == {
        "email": 1,
        "phone": 1,
        "account": 1,
        "card": 1,
        "national_id": 1,
    }


async def test_pii_is_sent_as_is_when_masking_is_off(llm_server, make_summarizer):
    _, result = await summarize(make_summarizer(mask_pii=False))

    sent = llm_server.chat_requests[0].prompt_text
    assert "jane.doe@example.com" in sent and "123-45-6789" in sent
    assert result.masked_pii == 0


async def test_second_call_is_replayed_from_the_cache(llm_server, make_summarizer):
    llm_server.script(StreamReply(["Retiring ", "soon [3]."]))
    summarizer = make_summarizer()
    first_chunks, first = await summarize(summarizer)
    second_chunks, second = await summarize(summarizer)

    assert len(llm_server.chat_requests) == 1
    assert second.cached and not first.cached
    assert second_chunks == first_chunks
    assert second.citations == first.citations
    assert second.generator == "fake-model"


async def test_a_new_note_invalidates_the_cached_summary(llm_server, make_summarizer, notes):
    summarizer = make_summarizer()
    await summarize(summarizer)
    notes.add(TENANT, note("n-4", LEAD, 20, "Called back: wants the June meeting moved."))
    _, result = await summarize(summarizer)

    assert not result.cached
    assert len(llm_server.chat_requests) == 2
    assert "wants the June meeting moved" in llm_server.chat_requests[1].prompt_text


async def test_other_features_are_another_cache_entry(llm_server, make_summarizer):
    summarizer = make_summarizer()
    await summarize(summarizer)
    _, result = await summarize(summarizer, features={"age": 40.0})

    assert not result.cached
    assert len(llm_server.chat_requests) == 2


async def test_fallbacks_are_not_cached(llm_server, make_summarizer):
    llm_server.script(ErrorReply(500))
    summarizer = make_summarizer()
    _, first = await summarize(summarizer)
    _, second = await summarize(summarizer)

    assert first.fallback and not second.fallback, second.fallback_reason
    assert not second.cached
    assert len(llm_server.chat_requests) == 2


async def test_unknown_lead_is_not_found(make_summarizer):
    with pytest.raises(NotFound):
        await summarize(make_summarizer(), lead_id="nobody")


async def test_another_tenants_lead_is_not_found_and_nothing_is_sent(
    llm_server, make_summarizer, scorer
):
    with pytest.raises(NotFound) as caught:
        await summarize(make_summarizer(), tenant=TENANT, lead_id="lead-g")

    assert "Globex" not in caught.value.message
    assert llm_server.requests == [] and scorer.calls == []
    # The same lead is there for its own tenant.
    llm_server.script(StreamReply(["Globex expects a merger next week [1]."]))
    _, result = await summarize(make_summarizer(), tenant=OTHER_TENANT, lead_id="lead-g")
    assert not result.fallback
    assert "Globex secret" in llm_server.chat_requests[-1].prompt_text


async def test_request_features_are_scored_instead_of_the_profile(make_summarizer, scorer):
    await summarize(make_summarizer(), features={"age": 40.0, "segment": "mass"})

    assert scorer.calls[0][0].features == {"age": 40.0, "segment": "mass"}


async def test_no_features_and_no_profile_is_invalid(make_summarizer, notes):
    notes.add(TENANT, note("x-1", "lead-without-profile", 3, "Met at an event."))
    with pytest.raises(InvalidInput):
        await summarize(make_summarizer(), lead_id="lead-without-profile")


@pytest.mark.parametrize("timeout_s", [0.05, -1.0])
async def test_a_deadline_too_short_for_even_the_fallback_is_refused(
    llm_server, make_summarizer, timeout_s
):
    with pytest.raises(DeadlineExceeded):
        await summarize(make_summarizer(), timeout_s=timeout_s)
    assert llm_server.requests == []


async def test_no_endpoint_configured_gives_the_marked_fallback(llm_server, make_summarizer):
    chunks, result = await summarize(make_summarizer(endpoint=None))

    text = "".join(chunks)
    assert text.startswith(FALLBACK_HEADER)
    assert "Retiring within 5 years" in text
    assert result.generator == "fallback" and result.fallback
    assert result.fallback_reason == "not_configured"
    assert [c.note_id for c in result.citations] == ["n-3", "n-2", "n-1"]
    assert (result.prompt_tokens, result.completion_tokens) == (0, 0)
    assert llm_server.requests == []


async def test_store_failure_degrades_to_the_fallback(llm_server, make_summarizer, notes):
    notes.fail_search = True
    chunks, result = await summarize(make_summarizer())

    assert result.fallback and result.fallback_reason == "retrieval_failed"
    assert "No notes are recorded" in "".join(chunks)
    assert result.citations == [] and llm_server.requests == []


async def test_a_bug_in_retrieval_is_logged_with_its_traceback_and_on_the_span(
    llm_server, make_summarizer, notes, caplog
):
    """The advisor still gets the marked fallback, but the bug is not hidden as an outage."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    notes.bug_in_search = True
    with caplog.at_level("ERROR", logger="retrieval.summary.summarizer"):
        _, result = await summarize(make_summarizer(tracer=provider.get_tracer("t")))

    assert result.fallback and result.fallback_reason == "retrieval_error"
    (record,) = [r for r in caplog.records if r.name == "retrieval.summary.summarizer"]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    spans = {span.name: span for span in exporter.get_finished_spans()}
    events = [e for e in spans["summary.retrieve"].events if e.name == "exception"]
    assert events and events[0].attributes["exception.type"] == "RuntimeError"


async def test_spans_cover_every_stage_with_genai_attributes(llm_server, make_summarizer):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    summarizer = make_summarizer(tracer=provider.get_tracer("leadgw.summary"))
    await summarize(summarizer)

    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert {"summary.score", "summary.retrieve", "summary.cache_lookup", "summary.prompt"} <= set(
        spans
    )
    chat = spans["chat fake-model"]
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.request.model"] == "fake-model"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 42
    assert chat.attributes["gen_ai.usage.output_tokens"] == 17
    assert chat.attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert "summary.fallback" not in spans


async def test_fallback_span_carries_the_reason(llm_server, make_summarizer):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    llm_server.script(ErrorReply(500))
    await summarize(make_summarizer(tracer=provider.get_tracer("leadgw.summary")))

    spans = {span.name: span for span in exporter.get_finished_spans()}
    (event,) = spans["summary.fallback"].events
    assert event.name == "fallback" and event.attributes["reason"] == "http_500"
    assert spans["chat fake-model"].attributes["error.type"] == "http_500"
