"""Check [n] citation markers as text streams by: keep those that name a note given in the
prompt, remove the rest. A marker may arrive split across chunks, so a possible partial marker
at the end of a chunk is held back until the next one decides it."""

from __future__ import annotations

import re

# "[3]" or "[1, 4]"; the number of digits is bounded so that "[" + digits cannot hold text forever.
_MARKER = re.compile(r"(\s*)\[(\d{1,4}(?:\s*,\s*\d{1,4})*)\]")
_PARTIAL = re.compile(r"\s*\[(?:\d{1,4}(?:\s*,\s*\d{0,4})*)?\s*$")
_TRAILING_SPACE = re.compile(r"\s+$")


class CitationFilter:
    """Feed it the text as it streams; it returns what may be shown.

    ``valid`` are the 1-based indices of the notes given in the prompt. ``cited`` collects the
    valid indices that appear in the text; ``removed`` counts markers that were dropped.
    """

    def __init__(self, valid: range | set[int]) -> None:
        self._valid = set(valid)
        self._pending = ""
        self.cited: set[int] = set()
        self.removed = 0

    def feed(self, chunk: str) -> str:
        self._pending += chunk
        cut = _hold_from(self._pending)
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self._rewrite(ready)

    def flush(self) -> str:
        """The end of the text: a marker left unfinished (e.g. the token limit cut it) is dropped,
        since it cannot be checked; other held-back text is released."""
        ready, self._pending = self._pending, ""
        partial = _PARTIAL.search(ready)
        if partial is not None and "[" in partial.group(0):
            if re.search(r"\d", partial.group(0)):
                self.removed += 1
            ready = ready[: partial.start()]
        return self._rewrite(ready)

    def _rewrite(self, text: str) -> str:
        def replace(m: re.Match[str]) -> str:
            numbers = [int(n) for n in re.findall(r"\d+", m.group(2))]
            kept = [n for n in numbers if n in self._valid]
            self.removed += len(numbers) - len(kept)
            self.cited.update(kept)
            if not kept:
                return ""  # with the space before it, so no "word ." is left behind
            return f"{m.group(1)}[{', '.join(str(n) for n in kept)}]"

        return _MARKER.sub(replace, text)


def _hold_from(text: str) -> int:
    """Where the part of ``text`` that must wait for more text begins: a possible partial marker
    (with the whitespace before it), or trailing whitespace that may precede a removed marker."""
    partial = _PARTIAL.search(text)
    if partial is not None and "[" in partial.group(0):
        return partial.start()
    space = _TRAILING_SPACE.search(text)
    return space.start() if space is not None else len(text)
