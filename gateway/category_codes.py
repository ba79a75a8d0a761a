"""A category column's codes, read from its wire bytes without a str per value.

A 1,000-lead column-wise request carries each category feature as 1,000 strings. Read through
protobuf, each becomes a new str (~96 µs for the column), and each is then hashed to find its
category's position (~90 µs to encode, more to label): about 190 µs of a ~2.6 ms request for one
feature with six categories (docs/perf/2026-11-30-category-codes.md). Here the column's wire
bytes are matched against the feature's categories as they would be written, a whole column per
numpy call; the strs handed on are the categories' own, shared.

A ``CategoryColumn`` on the wire is, per value, the tag byte ``0x0A``, the value's length as a
varint, then its UTF-8 bytes. When every category is shorter than 128 bytes (a one-byte length)
and none holds a ``0x0A`` byte or is 10 bytes long (a length byte of ``0x0A``), a column whose
values are all categories has a ``0x0A`` exactly where each value starts. So the positions of
``0x0A`` are taken as the starts, one per lead; each value is told by its length byte and one
byte of its text (at an offset chosen per length to tell that length's categories apart), a
single table lookup; and the guess is accepted only if the categories so found, written out, are
the column's bytes exactly: then they are protobuf's own (deterministic) reading of it. Anything
else (an unknown value, a missing lead's placeholder, categories this cannot tell apart) gives
None, and the caller reads the column the ordinary way.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from runtimes.schema import objects

_TAG = 0x0A  # field 1, length-delimited: CategoryColumn.values


class CategoryForms:
    """A feature's categories as they are written on the wire, made once per category list
    (``forms_of``)."""

    def __init__(self, categories: Sequence[str]) -> None:
        self.categories = tuple(categories)
        self.strs = objects(self.categories)
        encoded = [c.encode() for c in self.categories]
        self.forms = objects([bytes([_TAG, len(e)]) + e for e in encoded])
        offsets = _telling_offsets(encoded)
        self.usable = offsets is not None
        # Per length, the offset of the byte that tells that length's categories apart.
        self.offset = np.zeros(256, dtype=np.intp)
        # (length << 8 | the telling byte) → the category's position; -1: none.
        self.by_key = np.full(256 << 8, -1, dtype=np.intp)
        if offsets is not None:
            for length, offset in offsets.items():
                self.offset[length] = offset
            for i, e in enumerate(encoded):
                self.by_key[len(e) << 8 | e[offsets[len(e)]]] = i

    def codes(self, wire: bytes, count: int) -> np.ndarray | None:
        """Each of the ``count`` values' position in the categories (intp), from a
        ``CategoryColumn``'s wire bytes; None unless every value is one of the categories."""
        if not self.usable or count == 0:
            return None
        data = np.frombuffer(wire, dtype=np.uint8)
        starts = np.flatnonzero(data == _TAG)
        if len(starts) != count or starts[-1] + 1 >= len(data):
            return None
        lengths = data[starts + 1].astype(np.intp)
        telling = np.minimum(starts + 2 + self.offset[lengths], len(data) - 1)
        key = lengths << 8
        key |= data[telling]
        codes = self.by_key[key]
        if (codes < 0).any() or b"".join(self.forms[codes].tolist()) != wire:
            return None
        return codes

    def values(self, codes: np.ndarray) -> list[str]:
        """The values of ``codes``, the categories' own strs."""
        return self.strs[codes].tolist()  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=256)
def forms_of(categories: tuple[str, ...]) -> CategoryForms:
    """One ``CategoryForms`` per category list, kept across requests."""
    return CategoryForms(categories)


def _telling_offsets(encoded: Sequence[bytes]) -> dict[int, int] | None:
    """Per length, the first offset at which the categories of that length differ byte for
    byte; None if some length has none, or if a category is too long for a one-byte length, is
    10 bytes long, or holds ``0x0A``."""
    if not encoded or any(len(e) >= 128 or len(e) == _TAG or _TAG in e for e in encoded):
        return None
    by_length: dict[int, list[bytes]] = {}
    for e in encoded:
        by_length.setdefault(len(e), []).append(e)
    offsets: dict[int, int] = {}
    for length, group in by_length.items():
        telling = (o for o in range(length) if len({e[o] for e in group}) == len(group))
        offset = next(telling, None if len(group) > 1 else 0)
        if offset is None:
            return None
        offsets[length] = offset
    return offsets
