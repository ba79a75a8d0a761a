"""Notes are untrusted input (e-mails, web forms): before a note reaches the prompt its markup is
removed, it is cut to a bounded length, text addressed to an AI assistant is taken out, and what
is left is escaped so that it cannot close the fence the prompt puts around it."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

MAX_RAW_CHARS = 20_000
"""Only this much of a note is even looked at: the rest of an enormous note is never parsed."""

_TAG = re.compile(r"<\s*(script|style)\b.*?<\s*/\s*\1\s*>|<!--.*?-->|<[^<>]{0,2000}>", re.I | re.S)
_SPACE = re.compile(r"\s+")
# Phrases that address the model rather than describe the client. A sentence holding one is
# removed from the note; the sentence guard still stops whatever slips past this list.
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.!?\n]{0,40}\b(?:instructions?|rules?|prompt|above"
    r"|previous|guidelines)\b"
    r"|\b(?:system prompt|you are now|as an ai\b|language model|assistant[,:]|new instructions?)"
    r"|\b(?:tell|inform|advise|convince|say to)\b[^.!?\n]{0,30}\b(?:the )?(?:advisor|adviser"
    r"|reader|user|model|assistant)\b"
    r"|\b(?:summary|summari[sz]e|briefing)\b[^.!?\n]{0,40}\b(?:must|should|shall)\b"
    r"|<<\s*sys\s*>>|\[/?inst\]|<\|im_start\|>|<start_of_turn>",
    re.I,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
INSTRUCTION_REMOVED = "(text addressed to an assistant removed)"


@dataclass(frozen=True, slots=True)
class CleanNote:
    text: str
    """Plain text: no markup, no instructions, at most ``max_chars`` characters, not escaped."""
    instructions_removed: int
    truncated: bool


def clean_note(raw: str, *, max_chars: int) -> CleanNote:
    text = raw[:MAX_RAW_CHARS]
    text = html.unescape(_TAG.sub(" ", text))
    text = _SPACE.sub(" ", text).strip()
    kept: list[str] = []
    removed = 0
    for sentence in _SENTENCE_END.split(text):
        if _INSTRUCTION.search(sentence):
            removed += 1
            if not kept or kept[-1] != INSTRUCTION_REMOVED:
                kept.append(INSTRUCTION_REMOVED)
        else:
            kept.append(sentence.strip())
    text = " ".join(k for k in kept if k)
    # A note's own "[7]" must not pose as a citation of note 7.
    text = re.sub(r"\[(\d)", r"(\1", text).replace("]", ")")
    truncated = len(raw) > MAX_RAW_CHARS or len(text) > max_chars
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0] + " …"
    return CleanNote(text, removed, truncated)


def fence_text(text: str) -> str:
    """Escaped for the inside of a <note> element: a note cannot write "</note>"."""
    return html.escape(text, quote=True)
