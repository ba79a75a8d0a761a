"""The sentence guard: every sentence of a model's summary is checked before an advisor sees it.

A sentence is shown only if it cites at least one retrieved note, every number, date, name and
domain term in it is found in its cited notes or in the facts the gateway renders itself
(``claims``), and its meaning is close to one of its cited notes (cosine similarity of the
project's MiniLM embeddings). Everything else is dropped and counted by reason.

The threshold was chosen on the hand-labelled pairs in tests/retrieval/summary/data (see
docs/summaries.md): the lowest value at which at least 95% of the sentences passed are labelled
supported, with every labelled contradiction dropped."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from retrieval.embedder import MINILM_DQ_NAME, Embedder, OnnxEmbedder
from retrieval.summary.claims import Support, extract, strip_markers, unsupported
from retrieval.summary.sentences import SentenceStream
from retrieval.thread_priority import NORMAL, ThreadPriority, check_priority

GUARD_EMBEDDER = MINILM_DQ_NAME
"""The local model the guard's threshold was chosen with, whatever embeds the notes."""
MIN_SIMILARITY = 0.55
DUPLICATE_SIMILARITY = 0.95


@dataclass(frozen=True, slots=True)
class GuardConfig:
    min_similarity: float = MIN_SIMILARITY
    duplicate_similarity: float = DUPLICATE_SIMILARITY
    max_sentence_chars: int = 600
    min_shown: int = 1
    """Fewer sentences shown than this: the fallback is sent instead."""
    min_shown_fraction: float = 0.4
    """A smaller share of the model's sentences shown: the fallback is sent instead."""


@dataclass(frozen=True, slots=True)
class Verdict:
    shown: bool
    reason: str = ""
    similarity: float = 0.0


@dataclass(slots=True)
class GuardStats:
    shown: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    similarity_checks: int = 0
    """Sentences that reached the similarity step (the content checks passed)."""
    window_checks: int = 0
    """Of those, the ones whose notes and note sentences fell short, so that their windows were
    compared (the costly tier)."""

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def enough(self, config: GuardConfig) -> bool:
        total = self.shown + self.dropped_total
        return self.shown >= config.min_shown and self.shown >= config.min_shown_fraction * total


class SentenceGuard:
    """One per process; opens the embedder on first use (loading it blocks, off the loop)."""

    def __init__(
        self,
        config: GuardConfig | None = None,
        *,
        embedder: Embedder | None = None,
        open_embedder: Callable[[], Awaitable[Embedder]] = OnnxEmbedder.open,
    ) -> None:
        self.config = config or GuardConfig()
        self._embedder = embedder
        self._owned = embedder is None
        self._open = open_embedder
        self._lock = asyncio.Lock()

    async def embedder(self) -> Embedder:
        async with self._lock:
            if self._embedder is None:
                self._embedder = await self._open()
            return self._embedder

    async def warm(self) -> None:
        """Loads the model and runs it once, before serving: otherwise the first summary loads
        it (seconds of the interpreter lock, beside the event loop) while others wait."""
        await (await self.embedder()).embed(["warm-up"])

    async def session(self, sources: Sequence[str], facts: Sequence[str]) -> GuardSession:
        """``sources[n - 1]`` is the text (as the model saw it) of the note cited as [n]."""
        return GuardSession(self.config, await self.embedder(), list(sources), list(facts))

    async def aclose(self) -> None:
        if self._owned and self._embedder is not None:
            await self._embedder.close()
            self._embedder = None


class GuardSession:
    """Checks the sentences of one summary, in order, and keeps the counts."""

    def __init__(
        self,
        config: GuardConfig,
        embedder: Embedder,
        sources: list[str],
        facts: list[str],
    ) -> None:
        self._config = config
        self._embedder = embedder
        self._sources = sources
        self._facts = facts
        # Embedded on first need, by tier and cited note number: a summary cites a few of its
        # notes, and each note is a few sentences and dozens of windows (see ``note_pieces``).
        self._pieces: dict[int, NotePieces] = {}
        self._vectors: list[dict[int, np.ndarray]] = [{} for _ in NotePieces.TIERS]
        self._shown: list[np.ndarray] = []
        self._shown_text: set[str] = set()
        self.stats = GuardStats()

    async def check(self, sentence: str) -> Verdict:
        verdict = await self._verdict(sentence)
        if verdict.shown:
            self.stats.shown += 1
        else:
            self.stats.dropped[verdict.reason] += 1
        return verdict

    def drop(self, reason: str) -> None:
        """Count a sentence dropped without a check (e.g. cut off by a cap)."""
        self.stats.dropped[reason] += 1

    async def _verdict(self, sentence: str) -> Verdict:
        claims = extract(sentence)
        if claims.template_marker:
            return Verdict(False, "template_marker")
        if len(sentence) > self._config.max_sentence_chars:
            return Verdict(False, "too_long")
        cited = sorted(n for n in claims.citations if 1 <= n <= len(self._sources))
        if not cited:
            return Verdict(False, "no_citation")
        support = Support.of([self._sources[n - 1] for n in cited] + self._facts)
        reason = unsupported(claims, support)
        if reason:
            return Verdict(False, reason)
        body = strip_markers(sentence)
        key = " ".join(body.lower().split())
        if key in self._shown_text:
            return Verdict(False, "duplicate")
        vector, similarity = await self._similarity(body, cited)
        if similarity < self._config.min_similarity:
            return Verdict(False, "low_similarity", similarity)
        if self._shown and float(np.max(np.vstack(self._shown) @ vector)) >= (
            self._config.duplicate_similarity
        ):
            return Verdict(False, "duplicate", similarity)
        self._shown.append(vector)
        self._shown_text.add(key)
        return Verdict(True, "", similarity)

    async def _similarity(self, body: str, cited: list[int]) -> tuple[np.ndarray, float]:
        """The sentence's vector and its best cosine with the pieces of its cited notes.

        The pieces are compared tier by tier (``NotePieces.TIERS``), each tier embedded only
        when the ones before it fell short of the threshold: a sentence restating a note's
        sentence costs the note's sentences, not its windows (most of its pieces, so most of the
        guard's CPU). The verdict is the same as over every piece at once; the similarity of a
        sentence shown may be below that maximum (it is the first that cleared the threshold)."""
        self.stats.similarity_checks += 1
        vector: np.ndarray | None = None
        similarity = -1.0
        for depth, tier in enumerate(NotePieces.TIERS):
            if tier == "windows":
                self.stats.window_checks += 1
            extra = [body] if vector is None else []
            embedded = await self._embed_missing(cited, depth, extra)
            if vector is None:
                vector = embedded[0]
            tier_vectors = self._vectors[depth]
            similarity = max(similarity, _best(vector, [tier_vectors[n] for n in cited]))
            if similarity >= self._config.min_similarity:
                break
        assert vector is not None
        return vector, similarity

    async def _embed_missing(self, cited: list[int], depth: int, extra: list[str]) -> np.ndarray:
        """Embeds, in one call, ``extra`` and tier ``depth``'s pieces of each cited note not yet
        embedded (kept by note); returns the vectors of ``extra``."""
        into = self._vectors[depth]
        missing = [n for n in cited if n not in into]
        pieces = [(n, p) for n in missing for p in self._pieces_of(n).tier(depth)]
        texts = [*extra, *(p for _, p in pieces)]
        # A sentence that quotes its note, or two notes sharing a sentence: each text once.
        unique = {text: row for row, text in enumerate(dict.fromkeys(texts))}
        vectors = await self._embedder.embed(list(unique)) if texts else np.zeros((0, 0))
        vectors = vectors[[unique[text] for text in texts]]
        for n in missing:
            rows = [len(extra) + i for i, (m, _) in enumerate(pieces) if m == n]
            into[n] = vectors[rows]
        return vectors[: len(extra)]

    def _pieces_of(self, n: int) -> NotePieces:
        if n not in self._pieces:
            self._pieces[n] = note_pieces(self._sources[n - 1])
        return self._pieces[n]


def _best(vector: np.ndarray, matrices: list[np.ndarray]) -> float:
    """The highest cosine of ``vector`` with a row of any of ``matrices`` (-1 when none)."""
    return max((float(np.max(m @ vector)) for m in matrices if len(m)), default=-1.0)


WINDOWS = (6, 12)
"""Word windows of a note that sentences are also compared with: a sentence that restates part
of a long note sentence is closer to that part than to the whole."""


@dataclass(frozen=True, slots=True)
class NotePieces:
    """What a cited note's meaning is compared by, in the order the guard embeds them: its
    ``sentences``; the ``note`` itself when it has more than one; overlapping word ``windows`` of
    its sentences. No piece is in two tiers."""

    TIERS: ClassVar[tuple[str, ...]] = ("sentences", "note", "windows")

    sentences: list[str]
    note: list[str]
    windows: list[str]

    def tier(self, depth: int) -> list[str]:
        return (self.sentences, self.note, self.windows)[depth]


def note_pieces(text: str) -> NotePieces:
    stream = SentenceStream()
    sentences = list(dict.fromkeys(p for p in [*stream.feed(text), stream.flush()] if p))
    windows: list[str] = []
    for sentence in sentences:
        words = sentence.split()
        for size in WINDOWS:
            if len(words) > size:
                step = max(1, size // 2)
                for start in range(0, len(words) - size + step, step):
                    windows.append(" ".join(words[start : start + size]))
    note = [] if text in sentences else [text]
    earlier = {*sentences, *note}
    return NotePieces(sentences, note, [w for w in dict.fromkeys(windows) if w not in earlier])


def shared_guard_model(
    notes_embedder: Embedder, thread_priority: ThreadPriority = NORMAL
) -> Embedder | None:
    """The notes' own model when it is the guard's run locally (the default), so a process
    holds one copy, loaded at start; None when the guard needs its own.

    With ``thread_priority`` "normal" the guard embeds on the notes' thread; with any other, on
    a thread of its own at that priority (same model), so that the notes' queries keep theirs.
    The caller closes what it gets when it is not ``notes_embedder``."""
    if isinstance(notes_embedder, OnnxEmbedder) and notes_embedder.name == GUARD_EMBEDDER:
        if check_priority(thread_priority) == NORMAL:
            return notes_embedder
        return notes_embedder.on_own_thread(thread_priority)
    return None
