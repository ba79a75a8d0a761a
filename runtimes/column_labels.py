"""Reason labels of a column-wise request, the whole request's picks at once.

A 1,000-lead answer picks 3,000 (lead, feature) reasons. Labelling them a feature at a time
(``FeatureSpec.column_labels``) costs a dozen numpy calls per feature whatever its share of the
picks: with 16 features that fixed cost was most of the labels' time (~150 of ~215 µs,
docs/perf/2026-11-29-pass4.md). Here every feature's labels live in one table, each from an
offset, and each pick becomes an integer key into it: the whole numbers, money amounts and flags
of all features in one pass per kind, categories by their codes, missing values by their
feature's key; then one ``take`` gives every label. A key is the lookup ``runtimes.label_tables``
does for one feature, so each label is the one ``FeatureSpec.reason_label`` would write.
Whatever has no key (a format with no table, a value beyond its table, a column of another
kind, a category the model does not know) is labelled by its feature's own path, and only that
feature's picks.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np

from runtimes.label_tables import money_keys, money_table, whole_keys, whole_table, whole_table_size
from runtimes.types import FeatureValue, LabelTable, LeadColumn, PickedLabels

if TYPE_CHECKING:
    from runtimes.schema import FeatureSpec

# How a feature's picks get their keys.
_OWN_PATH, _FLAG, _WHOLE, _MONEY, _CODE, _ABSENT = range(6)
_COLUMN_KIND = {_FLAG: "boolean", _WHOLE: "number", _MONEY: "number", _CODE: "category"}

Column = Sequence[FeatureValue] | LeadColumn | None
_NO_PICKS = np.empty(0, dtype=np.intp)


class ColumnLabeller:
    """Made once per feature schema (``FeatureSchema.column_labeller``); ``labels`` per request.

    The table holds, per feature from its offset: its missing label, then its value labels in
    key order (false, true; whole numbers from 0; its money table; categories by code)."""

    def __init__(self, specs: Sequence[FeatureSpec]) -> None:
        self._specs = specs
        width = len(specs)
        self._how = np.full(width, _OWN_PATH, dtype=np.intp)
        self._offset = np.zeros(width, dtype=np.intp)  # the missing label's key
        self._size = np.zeros(width, dtype=np.intp)  # a whole-number table's entries
        parts: list[np.ndarray] = []
        start = 0
        for j, spec in enumerate(specs):
            how, labels, size = _plan(spec)
            if labels is None:
                continue
            part = np.empty(1 + len(labels), dtype=object)
            part[0] = spec.label_missing
            part[1:] = labels
            parts.append(part)
            self._how[j], self._offset[j], self._size[j] = how, start, size
            start += len(part)
        self._table = LabelTable(np.concatenate(parts) if parts else np.empty(0, dtype=object))

    def labels(self, columns: Sequence[Column], top: np.ndarray) -> list[str]:
        """The label of every pick in ``top`` ([leads, k] feature positions), lead-major;
        ``columns[j]``: feature j's values across the leads (None: missing for every lead)."""
        return self.picked(columns, top).tolist()

    def picked(self, columns: Sequence[Column], top: np.ndarray) -> PickedLabels:
        """``labels`` as keys into the table, not yet a str each."""
        picks = top.reshape(-1)
        if not len(picks):
            return PickedLabels(self._table, _NO_PICKS, _NO_PICKS, [])
        leads, k = top.shape
        # This request's ways: a column not of its feature's kind goes its feature's own way.
        how = self._how.copy()
        # Flags, whole numbers and amounts of every feature in one matrix, read with one gather.
        values = np.zeros((len(columns), leads))
        marked = False  # does any column mark missing values?
        for j, column in enumerate(columns):
            if column is None:
                if how[j] != _OWN_PATH:
                    how[j] = _ABSENT
            elif not isinstance(column, LeadColumn) or column.kind != _COLUMN_KIND.get(how[j]):
                how[j] = _OWN_PATH
            else:
                marked |= column.missing is not None
                if how[j] != _CODE:
                    values[j] = column.values
        picked_how = how[picks]
        lead = np.repeat(np.arange(leads, dtype=np.intp), k)
        cells = picks * leads + lead
        picked = values.reshape(-1)[cells]
        # Flags are whole numbers with a table of two; a feature on its own path has no table.
        sizes = np.where(how == _OWN_PATH, 0, self._size)
        key, found = whole_keys(picked, sizes[picks])
        money = np.flatnonzero(picked_how == _MONEY)
        if len(money):
            key[money], found[money] = money_keys(picked[money])
        self._codes(columns, how, picks, lead, key, found)
        keys = self._offset[picks] + 1 + key
        blank = picked_how == _ABSENT
        if marked:
            blank |= self._missing(columns, how, leads).reshape(-1)[cells]
        keys[blank] = self._offset[picks[blank]]
        own = ~(found | blank)  # no key: their feature's own path labels them (every pick of it)
        if not own.any():
            return PickedLabels(self._table, keys, _NO_PICKS, [])
        own_at: list[np.ndarray] = []
        own_labels: list[str] = []
        for j in np.unique(picks[own]).tolist():
            positions = np.flatnonzero(picks == j)
            labels = _own_labels(self._specs[j], columns[j], positions // k)
            own_at.append(positions)
            own_labels += np.broadcast_to(labels, positions.shape).tolist()  # one for all: None
        return PickedLabels(self._table, keys, np.concatenate(own_at), own_labels)

    def _codes(
        self,
        columns: Sequence[Column],
        how: np.ndarray,
        picks: np.ndarray,
        lead: np.ndarray,
        key: np.ndarray,
        found: np.ndarray,
    ) -> None:
        """Categories' keys, a feature at a time (a code is a dict lookup per value); a category
        the model does not know is not found."""
        for j in np.flatnonzero(how == _CODE).tolist():
            at = np.flatnonzero(picks == j)
            if not len(at):
                continue
            column = columns[j]
            assert isinstance(column, LeadColumn)
            spec = self._specs[j]
            if column.codes is not None and column.categories == spec.categories:
                key[at] = column.codes[lead[at]]  # every value a known category
                found[at] = True
                continue
            chosen = list(map(column.values.__getitem__, lead[at].tolist()))
            codes = np.fromiter(map(spec.index.get, chosen, repeat(-1)), np.intp, len(at))
            key[at] = codes
            found[at] = codes >= 0

    def _missing(self, columns: Sequence[Column], how: np.ndarray, leads: int) -> np.ndarray:
        """[features, leads]: the leads each keyed column marks as having no value."""
        missing = np.zeros((len(columns), leads), dtype=bool)
        for j, column in enumerate(columns):
            if how[j] not in (_OWN_PATH, _ABSENT) and column.missing is not None:  # type: ignore[union-attr]
                missing[j] = column.missing  # type: ignore[union-attr]
        return missing


def _plan(spec: FeatureSpec) -> tuple[int, Sequence[str] | np.ndarray | None, int]:
    """How a feature's picks get keys, its value labels in key order, a whole table's size."""
    if spec.kind == "boolean":
        return _FLAG, (spec.label_false, spec.label_true), 2
    if spec.kind == "category":
        return _CODE, spec.category_labels(), 0
    if spec.value_format == "money":
        return _MONEY, money_table(spec.template, spec.label), 0
    if spec.value_format == "{:.0f}":
        size = whole_table_size(spec.maximum)
        return _WHOLE, whole_table(spec.template, spec.label, size, spec.template_one), size
    return _OWN_PATH, None, 0


def _own_labels(spec: FeatureSpec, column: Column, rows: np.ndarray) -> np.ndarray:
    """A feature's labels by its own path (``FeatureSpec.column_labels`` / ``reason_labels``)."""
    if column is None:
        return np.array([spec.reason_label(None)], dtype=object)
    if isinstance(column, LeadColumn):
        return spec.column_labels(column, rows)
    return spec.reason_labels(list(map(column.__getitem__, rows.tolist())))
