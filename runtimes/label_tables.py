"""Reason labels looked up instead of formatted: a feature's labels for whole numbers and money
amounts made once, as Python strings, and picked by an integer key per value.

A 1,000-lead column-wise answer carries 3,000 reason labels. Formatting them in numpy str arrays
(``FeatureSpec._format_numbers``) costs a dozen array passes per feature even for a handful of
values, and turning the result into Python strings costs another pass. Most labels, though, come
from few distinct texts: "Age 52", "Investable assets $1.2M". Each table here maps a value to a
small integer key with the very arithmetic ``_format_numbers`` uses, so a table's label is the
one that path (and ``FeatureSpec.reason_label``) would write; a value outside a table's range
(negative whole numbers, money in the thousands of billions, a tenth too near a tie to round in
numpy) sends the whole column back to that path. Tables are made on first use and shared by every
feature with the same template, label and format.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# Whole numbers 0 .. WHOLE_TABLE - 1 are looked up (ages, counts, days).
WHOLE_TABLE = 10_000
# Money: the number shown before the suffix ($999K, $1.2M): whole 0 .. 1000, tenths 0 .. 100.
_MONEY_WHOLE = 1001
_MONEY_TENTHS = 101
_SUFFIXES = ("", "K", "M", "B")


def label_parts(template: str, label: str) -> tuple[str, str] | None:
    """The text before and after ``{value}`` in a feature's reason template, or None when the
    template does not hold exactly one ``{value}``."""
    mark = "\x00value\x00"
    parts = template.format(label=label, value=mark).split(mark)
    return (parts[0], parts[1]) if len(parts) == 2 else None


def whole_labels(
    template: str,
    label: str,
    values: np.ndarray,
    maximum: float = math.inf,
    template_one: str = "",
) -> np.ndarray | None:
    """The label of every float64 value for the format ``{:.0f}``, as an object array of str; None
    when a value is not in [0, WHOLE_TABLE) once rounded, or is -0.0 (shown as "-0"). The table
    stops at the feature's ``maximum`` (rounded), as no valid value lies beyond it; a value shown
    as 1 takes ``template_one`` if there is one."""
    size = whole_table_size(maximum)
    table = whole_table(template, label, size, template_one)
    if table is None or not len(values):
        return None
    keys, found = whole_keys(values, size)
    return table[keys] if found.all() else None


def whole_table_size(maximum: float) -> int:
    """Entries of a whole-number table for a feature whose values stop at ``maximum``."""
    return WHOLE_TABLE if not maximum < WHOLE_TABLE else max(1, int(np.rint(maximum)) + 1)


def whole_keys(values: np.ndarray, size: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each float64 value's position in a whole-number table of ``size`` entries (one size, or
    one per value), and whether the table holds its label (0 where it does not)."""
    rounded = np.rint(values)
    # "%.0f" rounds half to even on the exact binary value, as np.rint does; NaN fails both tests.
    found = (rounded < size) & ~np.signbit(values)
    return np.where(found, rounded, 0).astype(np.intp), found


def money_labels(template: str, label: str, amounts: np.ndarray) -> np.ndarray | None:
    """The label of every float64 amount for the format ``money`` (``format_money``), as an
    object array of str; None when an amount is beyond the table or a tenth is too near a tie."""
    table = money_table(template, label)
    if table is None or not len(amounts):
        return None
    keys, found = money_keys(amounts)
    return table[keys] if found.all() else None


def money_keys(amounts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each float64 amount's position in a money table, and whether the table holds its label
    (0 where it does not: beyond the table, not finite, or a tenth too near a tie to round in
    numpy as ``format_money`` would)."""
    negative = amounts < 0
    amount = np.abs(amounts)
    # format_money's first scale with amount >= scale * 0.9995, largest first: as the thresholds
    # grow with the scale, the suffix's position is the count of thresholds passed.
    suffix = sum(amount >= threshold for threshold in _THRESHOLDS)
    scaled = amount / _DIVISORS[suffix]  # the same division format_money makes (none without)
    small = (suffix > 0) & (scaled < 10)
    tenths = scaled * 10
    # "%.1f" of a value this near a tie may round either way; left to Python. An infinite
    # amount makes inf - inf here (NaN, no tie), which is no error: it fails ``found`` below.
    with np.errstate(invalid="ignore"):
        tie = small & (np.abs(tenths - np.floor(tenths) - 0.5) < 1e-6)
    shown = np.rint(np.where(small, tenths, scaled))
    found = (shown < _MONEY_WHOLE) & ~tie  # NaN and infinities fail here too
    number = np.where(found, shown, 0).astype(np.intp)
    start = _STARTS[small * 8 + negative * 4 + suffix]
    return np.where(found, start + number, 0), found


# Thresholds and divisors by suffix position (none, K, M, B), as format_money computes them.
_THRESHOLDS = tuple(scale * 0.9995 for scale in (1e3, 1e6, 1e9))
_DIVISORS = np.array([1.0, 1e3, 1e6, 1e9])
# Where each part of a money table starts, by small * 8 + negative * 4 + suffix: whole numbers
# by sign and suffix, then tenths (only with a suffix: K, M, B) by sign and suffix.
_STARTS = np.array(
    [
        (negative * len(_SUFFIXES) + suffix) * _MONEY_WHOLE
        for negative in (0, 1)
        for suffix in range(4)
    ]
    + [
        2 * len(_SUFFIXES) * _MONEY_WHOLE + (negative * 3 + suffix - 1) * _MONEY_TENTHS
        for negative in (0, 1)
        for suffix in range(4)
    ],
    dtype=np.intp,
)


def choice_labels(labels: tuple[str, ...]) -> np.ndarray:
    """``labels`` as an object array, made once: flags' and categories' labels by code."""
    return _choices(labels)


@functools.lru_cache(maxsize=256)
def _choices(labels: tuple[str, ...]) -> np.ndarray:
    out = np.empty(len(labels), dtype=object)
    out[:] = labels
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=256)
def whole_table(template: str, label: str, size: int, template_one: str = "") -> np.ndarray | None:
    """The labels of whole numbers 0 .. size - 1 (None when the template does not hold exactly
    one ``{value}``), 1's from ``template_one`` if there is one."""
    parts = label_parts(template, label)
    if parts is None:
        return None
    before, after = parts
    texts = [f"{before}{i}{after}" for i in range(size)]
    if template_one and size > 1:
        texts[1] = template_one.format(label=label, value="1")
    return _choices(tuple(texts))


@functools.lru_cache(maxsize=256)
def money_table(template: str, label: str) -> np.ndarray | None:
    """Every label ``money_labels`` can look up: first whole numbers by sign and suffix, then
    tenths (1.2 → key 12; 1.0 is shown "1") by sign and suffix K, M, B."""
    parts = label_parts(template, label)
    if parts is None:
        return None
    before, after = parts
    texts = []
    for sign in ("$", "-$"):
        for suffix in _SUFFIXES:
            texts += [f"{before}{sign}{n}{suffix}{after}" for n in range(_MONEY_WHOLE)]
    for sign in ("$", "-$"):
        for suffix in _SUFFIXES[1:]:
            for n in range(_MONEY_TENTHS):
                whole, tenth = divmod(n, 10)
                shown = f"{whole}.{tenth}" if tenth else f"{whole}"
                texts.append(f"{before}{sign}{shown}{suffix}{after}")
    return _choices(tuple(texts))
