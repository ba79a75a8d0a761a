"""The deterministic summary shown when the LLM cannot write one: the score's reasons and the
lead's most recent notes, cited with the same numbers the prompt used."""

from __future__ import annotations

from collections.abc import Sequence

from retrieval.summary.prompt import describe_score
from retrieval.summary.sanitize import clean_note
from retrieval.types import NoteRecord
from runtimes.types import LeadScore

FALLBACK_HEADER = "Automatic summary (the AI summary is unavailable)."
PARTIAL_NOTICE = (
    "\n\n[The AI summary above was interrupted ({reason}). "
    "What follows is the automatic summary from the notes.]\n\n"
)
GUARD_NOTICE = (
    "\n\n[{dropped} of the AI summary's {total} sentences did not match their notes and were "
    "not shown. What follows is the automatic summary from the notes.]\n\n"
)
SNIPPET_CHARS = 160


def fallback_summary(
    score: LeadScore, sources: Sequence[NoteRecord], *, recent: int = 3, header: bool = True
) -> str:
    """Plain text; every [n] refers to ``sources[n - 1]``. Without ``header`` (after a partial
    AI summary, whose facts block already showed the score) the score lines are left out too."""
    lines = [FALLBACK_HEADER, *describe_score(score)] if header else []
    numbered = [(n, note) for n, note in enumerate(sources, start=1) if note.lead_id]
    numbered.sort(key=lambda item: item[1].created_at, reverse=True)
    if numbered:
        lines.append("Most recent notes:")
        for n, note in numbered[:recent]:
            lines.append(f"- {note.created_at:%Y-%m-%d} {note.kind}: {_snippet(note.text)} [{n}]")
    else:
        lines.append("No notes are recorded for this lead yet.")
    return "\n".join(lines)


def _snippet(text: str) -> str:
    """The note's start, cut at a word, cleaned as for the prompt (no markup, no text addressed
    to an assistant); citation-like brackets are neutralised so that a note's own "[7]" cannot
    pose as a citation."""
    return clean_note(text, max_chars=SNIPPET_CHARS).text
