"""The two forms of the local MiniLM side by side, in one process (no gRPC, no store).

``timing``: one query at a time through ``embed_sync`` (what a SearchNotes does on the embedder's
thread), for the notes-search bench's note texts and for their first four words, p50/p99 per
form; then re-indexing throughput (texts per second through ``embed_sync`` over 512 note texts,
as ``leadgw notes reindex`` calls it). Run it under the measurement lock.

``quality``: over the demo corpus, the cosine of each note's vector between the two forms, and
the top-5 overlap of note-text and short queries: each form ranking notes it embedded itself,
and a query of the new form against notes of the old (what mixing would give). No timing.

Run from the repository root::

    python scripts/embedder_ab.py timing|quality [queries]
    python scripts/embedder_ab.py guard tests/retrieval/summary/data/guard_pairs.jsonl
"""

from __future__ import annotations

import sys
import time

import numpy as np

from benchmarks.notes_fill import sample_texts
from benchmarks.notes_search_suite import SHORT_QUERIES
from retrieval.demo_corpus import demo_corpus
from retrieval.embedder import MINILM_DQ_NAME, MINILM_NAME, OnnxEmbedder

FORMS = (MINILM_NAME, MINILM_DQ_NAME)


def _percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"p50 {np.percentile(ms, 50):6.2f} ms  p99 {np.percentile(ms, 99):6.2f} ms"


def timing(n: int) -> None:
    notes = sample_texts(n)
    short = [" ".join(t.split()[:4]) for t in notes]
    embedders = [OnnxEmbedder(name=name) for name in FORMS]
    for label, texts in (("note texts", notes), ("4 words", short)):
        samples: dict[str, list[float]] = {name: [] for name in FORMS}
        for embedder in embedders:
            embedder.embed_sync(texts[:16])  # warm-up
        # Alternating, query by query: a machine whose load shifts weighs on both forms alike.
        for text in texts:
            for embedder in embedders:
                started = time.perf_counter()
                embedder.embed_sync([text])
                samples[embedder.name].append(time.perf_counter() - started)
        for name in FORMS:
            print(
                f"{name:32} {label:10} one at a time, {len(texts)}: {_percentiles(samples[name])}"
            )
    many = sample_texts(512)
    for embedder in embedders:
        embedder.embed_sync(many[:32])
        started = time.perf_counter()
        embedder.embed_sync(many)
        rate = len(many) / (time.perf_counter() - started)
        print(f"{embedder.name:32} re-indexing 512 note texts: {rate:6.1f} texts/s")


def _top5(queries: np.ndarray, notes: np.ndarray) -> list[set[int]]:
    return [set(np.argsort(-(notes @ q))[:5].tolist()) for q in queries]


def quality(n: int) -> None:
    records, _ = demo_corpus()
    texts = [f"{r.title}\n\n{r.text}" if r.title else r.text for r in records]
    old, new = (OnnxEmbedder(name=name) for name in FORMS)
    old_notes, new_notes = old.embed_sync(texts), new.embed_sync(texts)
    cosines = (old_notes * new_notes).sum(axis=1)
    print(
        f"{len(texts)} demo notes: cosine old/new mean {cosines.mean():.4f} min {cosines.min():.4f}"
    )
    query_sets = {
        "note texts": sample_texts(n),
        "first 4 words of note texts": [" ".join(t.split()[:4]) for t in sample_texts(n)],
        "the bench's short queries": list(SHORT_QUERIES),
    }
    for label, queries in query_sets.items():
        old_q, new_q = old.embed_sync(queries), new.embed_sync(queries)
        old_top = _top5(old_q, old_notes)
        same = np.mean(
            [len(a & b) / 5 for a, b in zip(old_top, _top5(new_q, new_notes), strict=True)]
        )
        mixed = np.mean(
            [len(a & b) / 5 for a, b in zip(old_top, _top5(new_q, old_notes), strict=True)]
        )
        print(
            f"{label} ({len(queries)}): top-5 overlap, each form on its own notes {same:.3f}; "
            f"new queries on old notes (mixed) {mixed:.3f}"
        )


def guard(pairs_path: str) -> None:
    """The sentence guard's similarity step on the labelled pairs, per form: the similarity of
    each pair that reaches it (the claim checks passed), by label, against MIN_SIMILARITY; and
    the time to embed a note's pieces per tier (its sentences, which every cited note costs; the
    note itself and its word windows, which only a sentence short of the tiers before costs)."""
    import asyncio
    import json
    from pathlib import Path

    from retrieval.summary.guard import (
        MIN_SIMILARITY,
        GuardConfig,
        NotePieces,
        SentenceGuard,
        note_pieces,
    )

    lines = Path(pairs_path).read_text().splitlines()
    pairs = [json.loads(line) for line in lines if line.strip()]

    async def run(embedder: OnnxEmbedder) -> tuple[dict[str, list[float]], int, int]:
        # A threshold no cosine reaches makes every check compare every piece (both tiers), so
        # each similarity is the full maximum the threshold is chosen against.
        every_piece = SentenceGuard(GuardConfig(min_similarity=1.01), embedder=embedder)
        guard = SentenceGuard(embedder=embedder)
        by_label: dict[str, list[float]] = {}
        windows = reached = 0
        for pair in pairs:
            session = await every_piece.session([pair["note"]], [])
            verdict = await session.check(pair["sentence"])
            if verdict.reason == "low_similarity":
                by_label.setdefault(pair["label"], []).append(verdict.similarity)
                reached += 1
                session = await guard.session([pair["note"]], [])
                await session.check(pair["sentence"])
                windows += session.stats.window_checks
        return by_label, reached, windows

    for name in FORMS:
        embedder = OnnxEmbedder(name=name)
        found, reached, windows = asyncio.run(run(embedder))
        for label, sims in sorted(found.items()):
            s = np.array(sims)
            print(
                f"{name:32} {label:13} reached {len(s):2}: min {s.min():.3f} max {s.max():.3f} "
                f"below {MIN_SIMILARITY}: {(s < MIN_SIMILARITY).sum()}"
            )
        print(f"{name:32} windows needed for {windows} of the {reached} pairs reaching the step")
        notes = list(dict.fromkeys(p["note"] for p in pairs))
        pieces = [note_pieces(n) for n in notes]
        embedder.embed_sync(pieces[0].sentences)
        for depth, tier in enumerate(NotePieces.TIERS):
            texts = [p.tier(depth) for p in pieces]
            started = time.perf_counter()
            for t in texts:
                embedder.embed_sync(t)
            per_note = (time.perf_counter() - started) / len(texts) * 1000
            count = sum(map(len, texts)) / len(texts)
            print(
                f"{name:32} a note's {tier} pieces ({count:.1f} on average):"
                f" {per_note:.1f} ms per note"
            )


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "timing"
    if what == "guard":
        guard(sys.argv[2])
    else:
        count = int(sys.argv[2]) if len(sys.argv) > 2 else 192
        {"timing": timing, "quality": quality}[what](count)
