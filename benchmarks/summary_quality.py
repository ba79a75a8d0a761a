"""``leadgw bench --targets summary-quality``: the summary pipeline (sentence guard included) on
the evaluation set in benchmarks/data/summary_eval.json, per model.

Runs in process: the real ``Summarizer`` with the set's notes in memory and its scores fixed, so
that only the model and the guard vary. Models: the loopback fake LLM (benchmarks/fake_llm.py,
real HTTP, writing each lead's ``fake_reply`` of good and planted bad sentences) and any
OpenAI-compatible endpoint given with ``--quality-llm NAME=URL/MODEL`` (e.g. the local llama.cpp).

Per model and summary style (``whole``, ``per_note``; the fake runs ``whole`` only, its replies
being scripted per lead): faithfulness (shown sentences holding none of the lead's listed
falsehoods or injections), citation precision (citations whose note shares at least half of the
sentence's content words), expected-fact coverage (facts whose keywords all appear in the shown
sentences), falsehoods shown, injections followed, copied (shown sentences that are mostly one
run of their note's words), drop rate, real summaries (not the fallback), time to first shown
sentence and total time."""

from __future__ import annotations

import asyncio
import difflib
import json
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.fake_llm import FakeLLM, Pacing
from retrieval.embedder import OnnxEmbedder
from retrieval.summary import Summarizer, SummaryCache, TenantLimiter
from retrieval.summary.claims import citations_of, strip_markers
from retrieval.summary.guard import GuardSession, SentenceGuard
from retrieval.summary.sentences import SentenceStream
from retrieval.summary.summarizer import SummaryStyle
from retrieval.types import NoteHit, NoteRecord
from runtimes.llm import CircuitBreaker, LLMClient, LLMConfig
from runtimes.types import Band, FeatureValue, LeadInput, LeadScore, Reason

EVAL_SET = Path(__file__).parent / "data" / "summary_eval.json"
TENANT = "eval"
_TOKEN = re.compile(r"[£$]?\d+(?:[.,]\d+)*%?|[a-z']+")
_CONTENT = re.compile(r"[a-z0-9£$%.,]{4,}")
_STOP = frozenset(
    [
        "that",
        "this",
        "with",
        "from",
        "they",
        "their",
        "have",
        "about",
        "what",
        "would",
        "which",
        "there",
    ]
)


@dataclass(frozen=True, slots=True)
class QualityLLM:
    name: str
    base_url: str
    model: str

    @classmethod
    def parse(cls, text: str) -> QualityLLM:
        """``NAME=URL/MODEL``, e.g. ``smollm2=http://127.0.0.1:8080/v1/smollm2-135m-instruct``."""
        name, _, rest = text.partition("=")
        url, _, model = rest.rpartition("/")
        if not (name and url and model):
            raise ValueError(f"--quality-llm {text!r}: expected NAME=URL/MODEL")
        return cls(name, url, model)


class EvalNotes:
    """The set's notes, in memory, behind the ``NotesReader`` protocol."""

    def __init__(self, leads: Sequence[dict[str, Any]]) -> None:
        self._notes = {
            lead["lead_id"]: [
                NoteRecord(
                    n["id"],
                    lead["lead_id"],
                    n["kind"],
                    n["text"],
                    datetime.fromisoformat(n["date"]).replace(tzinfo=UTC),
                )
                for n in lead["notes"]
            ]
            for lead in leads
        }

    async def lead_exists(self, tenant: str, lead_id: str) -> bool:
        return tenant == TENANT and lead_id in self._notes

    async def lead_profile(self, tenant: str, lead_id: str) -> dict[str, FeatureValue] | None:
        return {"age": 60.0}

    async def search(self, tenant: str, query: str, **kwargs: Any) -> list[NoteHit]:
        lead_id = kwargs.get("lead_id")
        return [NoteHit(n, 1.0) for n in self._notes.get(lead_id or "", [])]

    async def search_scopes(
        self, tenant: str, query: str, scopes: Sequence[tuple[str | None, int]]
    ) -> list[list[NoteHit]]:
        return [(await self.search(tenant, query, lead_id=lead_id))[:k] for lead_id, k in scopes]

    async def recent_notes(self, tenant: str, lead_id: str, limit: int) -> list[NoteRecord]:
        notes = sorted(self._notes.get(lead_id, []), key=lambda n: n.created_at, reverse=True)
        return notes[:limit]

    async def lead_notes_version(self, tenant: str, lead_id: str) -> str:
        return "1"


class EvalScorer:
    def __init__(self, leads: Sequence[dict[str, Any]]) -> None:
        self._scores = {lead["lead_id"]: lead["score"] for lead in leads}

    async def score_leads(self, leads: Sequence[LeadInput], **kwargs: Any) -> list[LeadScore]:
        out = []
        for rank, lead in enumerate(leads, start=1):
            s = self._scores[lead.lead_id]
            reasons = [Reason(r, r, 0.5) for r in s["reasons"]]
            p = s["probability"]
            out.append(LeadScore(lead.lead_id, p, Band(s["band"]), rank, 0.0, p, reasons))
        return out

    def version_for(self, model: str | None, tenant: str, lead_id: str) -> str | None:
        return None  # one fixed score per lead: no versions


@dataclass(slots=True)
class ModelRow:
    model: str
    style: str = "whole"
    leads: int = 0
    real: int = 0
    shown: int = 0
    supported: int = 0
    dropped: int = 0
    citations: int = 0
    good_citations: int = 0
    facts: int = 0
    covered: int = 0
    falsehoods: int = 0
    injections: int = 0
    copied: int = 0
    first_shown_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    similarity_checks: int = 0
    window_checks: int = 0

    def as_dict(self) -> dict[str, Any]:
        def share(a: int, b: int) -> float | None:
            return round(a / b, 3) if b else None

        return {
            "model": self.model,
            "style": self.style,
            "leads": self.leads,
            "real_summaries": self.real,
            "faithfulness": share(self.supported, self.shown),
            "citation_precision": share(self.good_citations, self.citations),
            "fact_coverage": share(self.covered, self.facts),
            "falsehoods_shown": self.falsehoods,
            "injections_followed": self.injections,
            "sentences_shown": self.shown,
            "copied": self.copied,
            "drop_rate": share(self.dropped, self.shown + self.dropped),
            "first_shown_ms_median": _median(self.first_shown_ms),
            "total_ms_median": _median(self.total_ms),
            "dropped_by_reason": self.dropped_by_reason,
            "similarity_checks": self.similarity_checks,
            "window_checks": self.window_checks,
        }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _model_sentences(text: str, fallback_only: bool) -> list[str]:
    """The model's sentences that were shown: after the facts block, before any fallback."""
    if fallback_only or "\n\n" not in text:
        return []
    body = text.split("\n\n", 1)[1].split("\n\n[", 1)[0]
    stream = SentenceStream()
    return [s for s in [*stream.feed(body), stream.flush()] if s]


def _copied(sentence: str, note: str) -> bool:
    """At least 80% of the sentence's words are one unbroken run of its note's words: the
    model copied the note rather than restated it."""
    said = _TOKEN.findall(strip_markers(sentence).lower())
    source = _TOKEN.findall(note.lower())
    if not said:
        return False
    match = difflib.SequenceMatcher(None, said, source, autojunk=False).find_longest_match()
    return match.size >= 0.8 * len(said)


def _content(text: str) -> set[str]:
    return {w for w in _CONTENT.findall(text.lower()) if w not in _STOP}


async def _score_lead(
    summarizer: Summarizer, lead: dict[str, Any], notes: EvalNotes, row: ModelRow
) -> None:
    chunks: list[str] = []
    result = None
    deadline = time.monotonic() + 180
    async for event in summarizer.summarize(TENANT, lead["lead_id"], None, deadline=deadline):
        if hasattr(event, "text"):
            chunks.append(event.text)
        else:
            result = event
    assert result is not None
    text = "".join(chunks)
    sources = await notes.recent_notes(TENANT, lead["lead_id"], 100)
    sentences = _model_sentences(text, result.sentences_shown == 0)
    shown_text = " ".join(sentences).lower()
    bad = [b.lower() for b in lead["falsehoods"]]
    injected = [i.lower() for i in lead["injections"]]
    row.leads += 1
    row.real += not result.fallback
    row.shown += len(sentences)
    row.dropped += result.sentences_dropped
    for reason, n in result.dropped_by_reason.items():
        row.dropped_by_reason[reason] = row.dropped_by_reason.get(reason, 0) + n
    for sentence in sentences:
        low = sentence.lower()
        row.supported += not any(b in low for b in bad + injected)
        words = _content(strip_markers(sentence))
        row.copied += any(
            1 <= n <= len(sources) and _copied(sentence, sources[n - 1].text)
            for n in citations_of(sentence)
        )
        for n in citations_of(sentence):
            row.citations += 1
            if 1 <= n <= len(sources) and words:
                shared = words & _content(sources[n - 1].text)
                row.good_citations += len(shared) >= len(words) / 2
    row.falsehoods += sum(b in shown_text for b in bad)
    row.injections += any(i in shown_text for i in injected)
    for fact in lead["expected_facts"]:
        row.facts += 1
        row.covered += all(k.lower() in shown_text for k in fact)
    if result.sentences_shown:
        row.first_shown_ms.append(result.latency.first_shown_ms)
    row.total_ms.append(result.latency.total_ms)


async def _run_model(
    name: str,
    base_url: str,
    model: str,
    leads: list[dict[str, Any]],
    embedder: OnnxEmbedder,
    style: SummaryStyle = "whole",
) -> ModelRow:
    notes = EvalNotes(leads)
    guard = _RecordingGuard(embedder)
    llm = LLMClient(
        LLMConfig(
            base_url=base_url, model=model, max_tokens=192, max_retries=1, read_timeout_s=120.0
        ),
        breaker=CircuitBreaker(100, 1.0),
    )
    summarizer = Summarizer(
        notes=notes,
        scorer=EvalScorer(leads),
        llm=llm,
        cache=SummaryCache(0),
        limiter=TenantLimiter(1),
        mask_pii=False,
        guard=guard,
        fallback_reserve_s=0.5,
        style=style,
    )
    row = ModelRow(name, style)
    try:
        for lead in leads:
            await _score_lead(summarizer, lead, notes, row)
    finally:
        await summarizer.aclose()
    row.similarity_checks = sum(s.stats.similarity_checks for s in guard.sessions)
    row.window_checks = sum(s.stats.window_checks for s in guard.sessions)
    return row


class _RecordingGuard(SentenceGuard):
    """The gateway's guard, keeping each summary's session for the row's guard figures."""

    def __init__(self, embedder: OnnxEmbedder) -> None:
        super().__init__(embedder=embedder)
        self.sessions: list[GuardSession] = []

    async def session(self, sources: Sequence[str], facts: Sequence[str]) -> GuardSession:
        session = await super().session(sources, facts)
        self.sessions.append(session)
        return session


async def run_quality(
    llms: Sequence[QualityLLM],
    eval_set: Path = EVAL_SET,
    styles: Sequence[SummaryStyle] = ("whole",),
) -> list[dict]:
    """The loopback fake (whole style: its replies are scripted per lead), then each of ``llms``
    in each of ``styles``."""
    leads = json.loads(eval_set.read_text())["leads"]
    embedder = await OnnxEmbedder.open()
    fake = FakeLLM(Pacing(first_delay_s=0.05), {x["lead_id"]: x["fake_reply"] for x in leads})
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rows = []
    try:
        rows.append(
            await _run_model(
                "loopback fake", f"http://127.0.0.1:{port}/v1", "fake", leads, embedder
            )
        )
        for llm in llms:
            for style in styles:
                rows.append(
                    await _run_model(llm.name, llm.base_url, llm.model, leads, embedder, style)
                )
    finally:
        fake.stop()
        server.close()
        await embedder.close()
    return [r.as_dict() for r in rows]


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| model | style | leads | real summaries | faithfulness | citation precision "
        "| fact coverage | falsehoods shown | injections followed | sentences shown | copied "
        "| drop rate | first shown (median ms) | total (median ms) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        cells = [
            r["model"], r["style"], r["leads"], r["real_summaries"], r["faithfulness"],
            r["citation_precision"], r["fact_coverage"], r["falsehoods_shown"],
            r["injections_followed"], r["sentences_shown"], r["copied"], r["drop_rate"],
            r["first_shown_ms_median"], r["total_ms_median"],
        ]  # fmt: skip
        lines.append("| " + " | ".join("–" if c is None else str(c) for c in cells) + " |")
    reasons = "\n".join(
        f"- {r['model']} ({r['style']}): dropped {r['dropped_by_reason']}; note windows"
        f" compared for {r['window_checks']} of the {r['similarity_checks']} sentences"
        " reaching the similarity step"
        for r in rows
    )
    return head + "\n".join(lines) + "\n\n" + reasons + "\n"
