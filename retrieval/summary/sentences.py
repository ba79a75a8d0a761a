"""Cut streamed text into sentences, so that each can be checked before it is shown.

A sentence ends at ``.``, ``!`` or ``?`` (with any closing quotes and the citation markers that
follow it) before whitespace, or at a line break. The cut is made only once the next sentence
has begun, so that a "[3]" arriving after the full stop still belongs to the sentence before it;
a sentence whose citation comes before its full stop ("… [3].") is complete at once.
Decimals ("4.98") and common abbreviations ("e.g.") do not end a sentence.
"""

from __future__ import annotations

import re

_END = re.compile(
    r"[.!?]+[\"'”’)]*"  # the full stop and any closing quotes
    r"(?:\s*\[\d{1,4}(?:\s*,\s*\d{1,4})*\])*"  # citation markers written after it
    r"\s+(?=[^\s\[])"  # whitespace, then the next sentence's first character (not a marker)
    r"|\n\s*(?=\S)"  # or a line break before more text
)
_CITED_END = re.compile(r"\[\d{1,4}(?:\s*,\s*\d{1,4})*\]\s*[.!?]+[\"'”’)]*\s*$")
_ABBREVIATIONS = frozenset(
    {"e.g", "i.e", "mr", "mrs", "ms", "dr", "etc", "vs", "approx", "no", "st", "jr", "sr", "inc"}
)
_LEAD_IN = re.compile(r"^\s*(?:[-*•]+|\d{1,2}[.)])\s+")


class SentenceStream:
    """Feed text as it streams; get back the sentences it completes."""

    def __init__(self) -> None:
        self._buffer = ""

    @property
    def pending(self) -> str:
        return self._buffer

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        sentences: list[str] = []
        start = 0
        for match in _END.finditer(self._buffer):
            candidate = self._buffer[start : match.end()]
            if _ends_in_abbreviation(self._buffer[start : match.start() + 1]):
                continue
            sentences.append(candidate)
            start = match.end()
        self._buffer = self._buffer[start:]
        if _CITED_END.search(self._buffer):
            # "… [2]." is complete as it stands: showing it now, not when the next sentence
            # begins, keeps the first sentence as early as the model writes it.
            sentences.append(self._buffer)
            self._buffer = ""
        return [s for s in (clean_sentence(c) for c in sentences) if s]

    def flush(self) -> str:
        """The text after the last complete sentence (the caller decides whether it counts)."""
        rest, self._buffer = self._buffer, ""
        return clean_sentence(rest)


def clean_sentence(text: str) -> str:
    """Without bullet or list lead-ins and surrounding whitespace; "" when nothing is left that
    says anything (no letter)."""
    text = _LEAD_IN.sub("", text.strip())
    return text if re.search(r"[^\W\d_]", text) else ""


def _ends_in_abbreviation(text: str) -> bool:
    """``text`` ends with the full stop that may end the sentence."""
    if not text.endswith("."):
        return False
    word = re.split(r"\s", text[:-1].rstrip())[-1].lower().lstrip("(\"'")
    return word in _ABBREVIATIONS or bool(re.fullmatch(r"[a-z]", word))
