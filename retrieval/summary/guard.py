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
        # Embedded on first citation: a summary cites a few of its notes, and each note is
        # dozens of pieces (see ``note_pieces``).
        self._note_vectors: dict[int, np.ndarray] = {}
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
        missing = [n for n in cited if n not in self._note_vectors]
        pieces = [(n, p) for n in missing for p in note_pieces(self._sources[n - 1])]
        vectors = await self._embedder.embed([body] + [p for _, p in pieces])
        vector = vectors[0]
        for n in missing:
            rows = [i + 1 for i, (m, _) in enumerate(pieces) if m == n]
            self._note_vectors[n] = vectors[rows]
        similarity = max(float(np.max(self._note_vectors[n] @ vector)) for n in cited)
        if similarity < self._config.min_similarity:
            return Verdict(False, "low_similarity", similarity)
        if self._shown and float(np.max(np.vstack(self._shown) @ vector)) >= (
            self._config.duplicate_similarity
        ):
            return Verdict(False, "duplicate", similarity)
        self._shown.append(vector)
        self._shown_text.add(key)
        return Verdict(True, "", similarity)


WINDOWS = (6, 12)
"""Word windows of a note that sentences are also compared with: a sentence that restates part
of a long note sentence is closer to that part than to the whole."""


def note_pieces(text: str) -> list[str]:
    """The note, its sentences, and overlapping word windows of its sentences."""
    stream = SentenceStream()
    sentences = [p for p in [*stream.feed(text), stream.flush()] if p]
    pieces = [text, *(s for s in sentences if s != text)]
    for sentence in sentences:
        words = sentence.split()
        for size in WINDOWS:
            if len(words) > size:
                step = max(1, size // 2)
                for start in range(0, len(words) - size + step, step):
                    pieces.append(" ".join(words[start : start + size]))
    return list(dict.fromkeys(pieces))


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
