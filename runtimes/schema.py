"""The feature schema: named lead features → the model's float32 input tensor, and back to words.

Built once per model version from its ``config.toml`` ``[[features]]`` tables. Encoding is
column-wise: each feature's values are gathered across the leads and checked and converted in
bulk; only when something is wrong does a per-lead pass run, to name the first bad lead in request
order with a precise message. A handful of leads (the common online request) takes a row-wise
pure-Python path instead, since for them numpy's per-call cost, not the data, is the work; it
produces the same matrix and the same errors.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from runtimes.column_labels import ColumnLabeller
from runtimes.errors import InvalidInput, shown
from runtimes.ids import all_valid_ids, id_problem, is_valid_id
from runtimes.label_tables import choice_labels, money_labels, whole_labels
from runtimes.types import FeatureValue, LeadColumn, LeadInput

KINDS = ("number", "category", "boolean")
_NUMBER_TYPES = frozenset({float, int, np.float64, np.float32, np.int64, np.int32})
_CATEGORY_TYPES = frozenset({str, np.str_})
_BOOLEAN_TYPES = frozenset({bool, np.bool_})
# Up to this many leads encode row-wise in plain Python: at one lead that is ~5x faster than the
# column path's dozen numpy calls; the column path wins from about ten.
ROW_WISE_MAX_LEADS = 8
_TYPE_WORDS = {
    "number": "a number",
    "category": "a category name (string)",
    "boolean": "true or false",
}


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One ``[[features]]`` table, checked and with its encoders precomputed."""

    name: str
    kind: str
    label: str
    required: bool
    default: float  # the encoded value used for a missing feature (when not required)
    minimum: float = -math.inf
    maximum: float = math.inf
    categories: tuple[str, ...] = ()
    index: Mapping[Any, int] = field(default_factory=dict)  # category name → code
    on_unknown: str = "error"
    value_format: str = "{:g}"
    template: str = "{label} {value}"
    # A number's label when its value is shown as exactly "1" ("Last touch 1 day ago"); "": none.
    template_one: str = ""
    label_true: str = ""
    label_false: str = ""
    label_missing: str = ""

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> FeatureSpec:
        """Checks one feature table; a ValueError names the feature and the key at fault."""
        name = str(table.get("name", ""))
        if not name:
            raise ValueError("a [[features]] table has no name")
        kind = table.get("type")
        if kind not in KINDS:
            raise ValueError(f"feature {name!r}: type must be one of {KINDS}, got {kind!r}")
        label = str(table.get("label", name.replace("_", " ").capitalize()))
        required = bool(table.get("required", True))
        if not required and "default" not in table:
            raise ValueError(f"feature {name!r}: not required, so it needs a default")
        if "template_one" in table and kind != "number":
            raise ValueError(f"feature {name!r}: template_one is for numbers, not a {kind}")
        common: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "label": label,
            "required": required,
            "label_missing": str(table.get("label_missing", f"{label} unknown")),
        }
        if kind == "number":
            minimum = float(table.get("min", -math.inf))
            maximum = float(table.get("max", math.inf))
            if not minimum <= maximum:
                raise ValueError(f"feature {name!r}: min {minimum} is above max {maximum}")
            value_format = str(table.get("format", "{:g}"))
            if "template_one" in table and value_format == "money":
                # A money value is written "$1", never "1": the template would never be used.
                raise ValueError(
                    f"feature {name!r}: template_one is never used with format = 'money' "
                    "(amounts are written like $1, not 1): remove it"
                )
            # A default outside [min, max] is allowed on purpose: it is a "missing" sentinel that
            # no client value can collide with, so the model learns missingness as its own bin.
            return cls(
                **common,
                default=float(table.get("default", math.nan)),
                minimum=minimum,
                maximum=maximum,
                value_format=value_format,
                template=_template(name, table, "template", label, "{label} {value}"),
                template_one=_template(name, table, "template_one", label, ""),
            )
        if kind == "category":
            categories = tuple(str(c) for c in table.get("categories", ()))
            if not categories or len(set(categories)) != len(categories):
                raise ValueError(f"feature {name!r}: categories must be a non-empty unique list")
            index = {c: i for i, c in enumerate(categories)}
            on_unknown = table.get("on_unknown", "error")
            if on_unknown not in ("error", "default"):
                raise ValueError(f"feature {name!r}: on_unknown must be 'error' or 'default'")
            default = table.get("default")
            if default is not None and default not in index:
                raise ValueError(f"feature {name!r}: default {default!r} is not a category")
            if on_unknown == "default" and default is None:
                raise ValueError(f"feature {name!r}: on_unknown = 'default' needs a default")
            return cls(
                **common,
                default=math.nan if default is None else float(index[default]),
                categories=categories,
                index=index,
                on_unknown=on_unknown,
                template=_template(name, table, "template", label, "{label}: {value}"),
            )
        default = table.get("default", False)
        if not isinstance(default, bool):
            raise ValueError(f"feature {name!r}: a boolean's default must be true or false")
        return cls(
            **common,
            default=float(default),
            label_true=str(table.get("label_true", label)),
            label_false=str(table.get("label_false", f"Not {label[:1].lower()}{label[1:]}")),
        )

    # ---- encoding ----

    def encode_column(self, column: list[FeatureValue]) -> tuple[np.ndarray, int | None]:
        """Encodes one feature across leads: float64 values, and the first bad row (or None)."""
        if self.kind == "number":
            return self._encode_numbers(column)
        if self.kind == "category":
            return self._encode_categories(column)
        return self._encode_booleans(column)

    def _encode_numbers(self, column: list[FeatureValue]) -> tuple[np.ndarray, int | None]:
        types = list(map(type, column))
        if set(types) <= _NUMBER_TYPES:
            values = np.array(column, dtype=np.float64)
            bad = ~np.isfinite(values) | (values < self.minimum) | (values > self.maximum)
            return values, _first(bad)
        present, typed = _type_masks(types, _NUMBER_TYPES)
        values = _with_default(column, typed, self.default).astype(np.float64)
        out_of_range = ~np.isfinite(values) | (values < self.minimum) | (values > self.maximum)
        bad = (present & ~typed) | (typed & out_of_range)
        if self.required:
            bad |= ~present
        return values, _first(bad)

    def _encode_categories(self, column: list[FeatureValue]) -> tuple[np.ndarray, int | None]:
        index = self.index
        # Codes: a category's position, or one of two markers resolved below.
        unknown, not_a_name = -1, -2
        types = list(map(type, column))
        if set(types) <= _CATEGORY_TYPES:
            codes = np.fromiter(map(index.get, column, repeat(unknown)), np.int64, len(column))
            bad = np.zeros(len(column), bool)
        else:
            present, typed = _type_masks(types, _CATEGORY_TYPES)
            # Values of other types may not even be hashable: a name no category has stands in.
            names = _with_default(column, typed, "").tolist()
            codes = np.fromiter(map(index.get, names, repeat(unknown)), np.int64, len(column))
            codes[~typed] = not_a_name
            bad = present & ~typed
            if self.required:
                bad |= ~present
        values = codes.astype(np.float64)
        values[codes == not_a_name] = self.default
        is_unknown = codes == unknown
        if self.on_unknown == "default":
            values[is_unknown] = self.default
        else:
            bad |= is_unknown
        return values, _first(bad)

    def _encode_booleans(self, column: list[FeatureValue]) -> tuple[np.ndarray, int | None]:
        types = list(map(type, column))
        if set(types) <= _BOOLEAN_TYPES:
            return np.array(column, dtype=np.float64), None
        present, typed = _type_masks(types, _BOOLEAN_TYPES)
        values = _with_default(column, typed, self.default).astype(np.float64)
        bad = present & ~typed
        if self.required:
            bad |= ~present
        return values, _first(bad)

    def encode_typed(self, column: LeadColumn) -> np.ndarray | None:
        """``encode_column`` of a typed column, when it is of this feature's kind and every value
        is good: float64 values; None otherwise (``encode_column`` then finds the bad row)."""
        if column.kind != self.kind:
            return None
        missing = column.missing
        if missing is not None and self.required and missing.any():
            return None
        if self.kind == "category":
            if column.codes is not None and column.categories == self.categories:
                values = column.codes.astype(np.float64)  # every value a known category
                if missing is not None:
                    values[missing] = self.default
                return values
            codes = np.fromiter(
                map(self.index.get, column.values, repeat(-1)), np.intp, len(column.values)
            )
            unknown = codes < 0
            values = codes.astype(np.float64)
            if missing is not None:
                unknown &= ~missing
                values[missing] = self.default
            if unknown.any():
                if self.on_unknown != "default":
                    return None
                values[unknown] = self.default
            return values
        values = np.asarray(column.values, dtype=np.float64)
        if self.kind == "number":
            bad = ~np.isfinite(values) | (values < self.minimum) | (values > self.maximum)
            if missing is not None:
                bad &= ~missing
            if bad.any():
                return None
        if missing is not None:
            values = np.where(missing, self.default, values)
        return values

    def scalar_encoder(self) -> Callable[[FeatureValue], float | None]:
        """A function that encodes one value, None if it is bad: the scalar twin of
        ``encode_column`` (for any value both give the same number, and both call the same values
        bad). Made once per schema, specialised to this feature's kind and settings, because the
        row-wise path calls it for every feature of every lead: a closure over locals with no
        branch on the kind costs about a fifth less (the bundled model's 16 values: 1.3 µs
        against 1.6-1.7 µs through the method it replaced)."""
        missing = None if self.required else self.default
        if self.kind == "number":
            low, high, numbers, isfinite = self.minimum, self.maximum, _NUMBER_TYPES, math.isfinite

            def encode_number(value: FeatureValue) -> float | None:
                if value is None:
                    return missing
                if type(value) not in numbers:
                    return None
                number = float(value)  # type: ignore[arg-type]
                return number if low <= number <= high and isfinite(number) else None

            return encode_number
        if self.kind == "category":
            codes = {name: float(code) for name, code in self.index.items()}
            unknown = self.default if self.on_unknown == "default" else None
            names = _CATEGORY_TYPES

            def encode_category(value: FeatureValue) -> float | None:
                if value is None:
                    return missing
                if type(value) not in names:
                    return None
                return codes.get(value, unknown)  # type: ignore[arg-type]

            return encode_category
        flags = _BOOLEAN_TYPES

        def encode_boolean(value: FeatureValue) -> float | None:
            if value is None:
                return missing
            if type(value) not in flags:
                return None
            return 1.0 if value else 0.0

        return encode_boolean

    def problem(self, value: FeatureValue) -> str | None:
        """What is wrong with one value, for the error message; None if it is acceptable."""
        if value is None:
            return "is required but missing" if self.required else None
        if type(value) not in _ALLOWED[self.kind]:
            return f"must be {_TYPE_WORDS[self.kind]}, got {type(value).__name__} {shown(value)}"
        if self.kind == "number":
            number = float(value)  # type: ignore[arg-type]
            if not math.isfinite(number):
                return f"must be a finite number, got {number}"
            if not self.minimum <= number <= self.maximum:
                return f"is {number:g}, outside [{self.minimum:g}, {self.maximum:g}]"
        if self.kind == "category" and value not in self.index and self.on_unknown == "error":
            expected = ", ".join(self.categories)
            return f"has unknown category {shown(value)}; expected one of: {expected}"
        return None

    # ---- reasons ----

    def reason_label(self, value: FeatureValue) -> str:
        """A phrase an advisor can read, for this feature at the value the client sent."""
        if value is None:
            return self.label_missing
        if self.kind == "boolean":
            return self.label_true if value else self.label_false
        if self.kind == "category":
            shown = str(value).replace("_", " ")
            return self.template.format(label=self.label, value=shown)
        if type(value) not in _NUMBER_TYPES:
            return f"{self.label} {value}"
        if self.value_format == "money":
            shown = format_money(float(value))  # type: ignore[arg-type]
        else:
            shown = self.value_format.format(value)
        template = self.template_one if self.template_one and shown == "1" else self.template
        return template.format(label=self.label, value=shown)

    def reason_labels(self, values: Sequence[FeatureValue]) -> np.ndarray:
        """``reason_label`` of every value, as a 1-D array of str (numpy str or object).

        Array-at-a-time: numbers (floats) are formatted in C loops where the format allows it;
        other values are grouped by type and then by value (the bits of a float, so -0.0 keeps
        its own label), and ``reason_label`` runs once per distinct value. Each value gets
        exactly the label ``reason_label`` would give it.
        """
        types = list(map(type, values))
        distinct = dict.fromkeys(types)
        if len(distinct) == 1:
            return self._labels_of_one_type(types[0], values)
        out = np.empty(len(values), dtype=object)
        array = objects(values)
        # Type codes, so that a mask per type is one comparison (numpy's == on type objects
        # would try to compare the types as arrays).
        code_of = {kind: code for code, kind in enumerate(distinct)}
        codes = np.fromiter(map(code_of.__getitem__, types), dtype=np.intp, count=len(types))
        for kind, code in code_of.items():
            same = codes == code
            out[same] = self._labels_of_one_type(kind, array[same].tolist())
        return out

    def column_labels(self, column: LeadColumn, rows: np.ndarray) -> np.ndarray:
        """``reason_labels`` of a typed column's values at ``rows``, with no Python per value
        where the kind allows: flags pick one of two labels, numbers are formatted in C loops,
        known categories look their label up; missing values get ``label_missing``."""
        missing = None if column.missing is None else column.missing[rows]
        if column.kind != self.kind or "\x00" in self.label_missing:
            labels = None  # kinds that disagree only reach here when every value is missing
        elif self.kind == "boolean":
            picked_flags = np.asarray(column.values, dtype=bool)[rows].astype(np.intp)
            labels = choice_labels((self.label_false, self.label_true))[picked_flags]
        elif self.kind == "number":
            labels = self._number_labels(np.asarray(column.values)[rows])
        else:
            picked = list(map(column.values.__getitem__, rows.tolist()))
            codes = np.fromiter(map(self.index.get, picked, repeat(-1)), np.intp, len(picked))
            if missing is not None:
                codes[missing] = 0  # any known code: these are labelled as missing below
            labels = self.category_labels()[codes] if (codes >= 0).all() else None
        if labels is None:
            values = column.as_values()
            return self.reason_labels(list(map(values.__getitem__, rows.tolist())))
        if missing is not None and missing.any():
            return np.where(missing, self.label_missing, labels)
        return labels

    def category_labels(self) -> np.ndarray:
        """Each category's reason label, in category order (an object array of str)."""
        return choice_labels(tuple(map(self.reason_label, self.categories)))

    def _labels_of_one_type(self, kind: type, values: Sequence[FeatureValue]) -> np.ndarray:
        if kind is type(None):
            return np.full(len(values), self.label_missing, dtype=object)
        if self.kind == "boolean" and kind in _BOOLEAN_TYPES:
            flags = np.array(values, dtype=bool).astype(np.intp)
            return choice_labels((self.label_false, self.label_true))[flags]
        if self.kind == "number" and kind in (float, np.float64):
            # Continuous values are mostly distinct: format them all at once instead.
            shown = self._number_labels(np.array(values, dtype=np.float64))
            if shown is not None:
                return shown
        if self.kind == "category" and kind is str:
            # Known categories: a code per value in one C loop, and their labels looked up.
            codes = np.fromiter(map(self.index.get, values, repeat(-1)), np.intp, len(values))
            if (codes >= 0).all():
                return self.category_labels()[codes]
        keys: np.ndarray
        if kind in (float, np.float64, np.float32):
            # float64 holds every float32 and float64 exactly; its bits tell -0.0 from 0.0.
            keys = np.array(values, dtype=np.float64).view(np.int64)
        elif kind in _CATEGORY_TYPES:
            keys = objects(values)  # not a numpy str array, which drops trailing NULs
        elif kind in (int, np.int64, np.int32):
            keys = objects(values)  # Python ints compare exactly, however large
        else:
            return objects([self.reason_label(v) for v in values])
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        labels = objects([self.reason_label(values[i]) for i in first.tolist()])
        return labels[inverse.reshape(-1)]

    def _number_labels(self, values: np.ndarray) -> np.ndarray | None:
        """``reason_label`` of float64 values: looked up in a table of this feature's labels for
        whole numbers and money (``runtimes.label_tables``), else ``_format_numbers``."""
        labels = None
        if self.value_format == "money":
            if len(values) <= _MONEY_ONE_BY_ONE:
                return objects(list(map(self.reason_label, values.tolist())))
            labels = money_labels(self.template, self.label, values)
        elif _printf_twin(self.value_format) == "%.0f":
            labels = whole_labels(
                self.template, self.label, values, self.maximum, self.template_one
            )
        return labels if labels is not None else self._format_numbers(values)

    def _format_numbers(self, values: np.ndarray) -> np.ndarray | None:
        """``reason_label`` of float64 values in C loops, or None when this feature's format has
        no exact printf twin. ``%`` and ``format`` share CPython's float formatting, so
        ``"%.0f" % x == "{:.0f}".format(x)`` for every float, -0.0 and huge values included."""
        parts = self.template.format(label=self.label, value=_MARK).split(_MARK)
        if len(parts) != 2:
            return None
        if self.value_format == "money":
            shown = _format_money_many(values)
        else:
            printf = _printf_twin(self.value_format)
            if printf is None:
                return None
            shown = _format_float(printf, values)
        labels = np.strings.add(np.strings.add(parts[0], shown), parts[1])
        if self.template_one:
            ones = shown == "1"
            if ones.any():
                labels = labels.astype(object)  # a numpy str array would cut a longer label short
                labels[ones] = self.template_one.format(label=self.label, value="1")
        return labels


def _template(name: str, table: Mapping[str, Any], key: str, label: str, default: str) -> str:
    """A reason template from a feature's table, written once at load so that a placeholder
    other than ``{label}`` and ``{value}`` is a config error, not a failure at request time."""
    text = str(table.get(key, default))
    try:
        text.format(label=label, value="1")
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"feature {name!r}: {key} {text!r} is not a template of {{label}} and {{value}} "
            f"({type(error).__name__}: {error})"
        ) from None
    return text


# Up to this many amounts, each is worded by ``format_money``: the table's key takes ~20 numpy
# calls (~35 µs whatever the count), one amount ~1.5 µs.
_MONEY_ONE_BY_ONE = 16
_MARK = "\x00value\x00"
_PRINTF_SAFE = re.compile(r"\{:(\.\d{1,2})?([eEfFgG])\}")


def _printf_twin(value_format: str) -> str | None:
    """``{:.2f}`` → ``%.2f``, for the plain float formats; None for anything else."""
    match = _PRINTF_SAFE.fullmatch(value_format)
    return None if match is None else f"%{match.group(1) or ''}{match.group(2)}"


def _format_float(printf: str, values: np.ndarray) -> np.ndarray:
    """``printf % x`` of every value; ``%.0f`` without a Python call per value."""
    return _format_whole(values) if printf == "%.0f" else np.char.mod(printf, values)


def _format_whole(values: np.ndarray) -> np.ndarray:
    """``"%.0f" % x`` of every value: both round half to even on the exact binary value, as
    ``np.rint`` does; Python keeps the sign of a value that rounds to zero (``-0``)."""
    rounded = np.rint(values)
    if not (np.abs(rounded) < 2.0**62).all():
        return np.char.mod("%.0f", values)
    text = _int_text(rounded.astype(np.int64))
    negative_zero = (rounded == 0) & np.signbit(values)
    if negative_zero.any():
        text = np.where(negative_zero, "-0", text)
    return text


# Whole numbers below this in magnitude are worded by looking them up: numpy's int → str
# conversion calls Python's str() per value (~0.2 µs each).
_TABLE_INTS = 10_000


@functools.cache
def _int_table() -> np.ndarray:
    return np.array([str(i) for i in range(_TABLE_INTS)])


def _int_text(values: np.ndarray) -> np.ndarray:
    """``str(int(v))`` of every int64 value, as a str array."""
    if not len(values) or not -_TABLE_INTS < values.min() <= values.max() < _TABLE_INTS:
        return values.astype(str)
    text = _int_table()[np.abs(values)]
    negative = values < 0
    if negative.any():
        text = np.where(negative, np.strings.add("-", text), text)
    return text


def _format_one_decimal(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """``("%.1f" % x).removesuffix(".0")`` for the ``wanted`` values, in [0, 10]: tenths by
    ``np.rint``, except where ``x * 10`` lies so near a tie that its own rounding could tip it
    (Python there). Unwanted entries hold text to be ignored."""
    tenths = values * 10
    whole, tenth = np.divmod(np.rint(tenths).astype(np.int64), 10)
    text = np.strings.add(
        _int_text(whole), np.where(tenth == 0, "", np.strings.add(".", _int_text(tenth)))
    )
    near_tie = wanted & (np.abs(tenths - np.floor(tenths) - 0.5) < 1e-6)
    if near_tie.any():
        text = text.astype(object)
        for i in np.flatnonzero(near_tie).tolist():
            text[i] = f"{values[i]:.1f}".removesuffix(".0")
        text = text.astype(str)
    return text


def _format_money_many(amounts: np.ndarray) -> np.ndarray:
    """``format_money`` of every value, the same arithmetic done a column at a time."""
    sign = np.where(amounts < 0, "-$", "$")
    amount = np.abs(amounts)
    scaled = amount.copy()
    suffix = np.full(len(amounts), "", dtype="<U1")
    done = np.zeros(len(amounts), dtype=bool)
    for scale, letter in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        here = ~done & (amount >= scale * 0.9995)
        scaled[here] = amount[here] / scale
        suffix[here] = letter
        done |= here
    small = done & (scaled < 10)
    shown = np.where(
        small,
        _format_one_decimal(np.where(small, scaled, 0.0), small),
        _format_whole(np.where(done, scaled, amount)),
    )
    return np.strings.add(np.strings.add(sign, shown), suffix)


_ALLOWED = {"number": _NUMBER_TYPES, "category": _CATEGORY_TYPES, "boolean": _BOOLEAN_TYPES}


class FeatureSchema:
    """Ordered features of one model: ``names`` is the tensor's column order."""

    def __init__(self, specs: Sequence[FeatureSpec]) -> None:
        if not specs:
            raise ValueError("a feature schema needs at least one feature")
        names = [spec.name for spec in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names: {duplicates}")
        self.specs: tuple[FeatureSpec, ...] = tuple(specs)
        self.names: list[str] = names
        self.width: int = len(names)
        self._by_name: dict[str, FeatureSpec] = {spec.name: spec for spec in specs}
        self._known = frozenset(names)
        self._blocks = [
            _Block([i for i, spec in enumerate(specs) if spec.kind == kind], specs)
            for kind in ("number", "boolean")
        ]
        self._categories = [i for i, spec in enumerate(specs) if spec.kind == "category"]
        # Each category feature's categories, for a decoder that reads codes off the wire.
        self.category_lists: dict[str, tuple[str, ...]] = {
            spec.name: spec.categories for spec in specs if spec.kind == "category"
        }
        self._value_encoders = [(spec.name, spec.scalar_encoder()) for spec in specs]
        # Per column, the function that words a reason, e.g. "Retiring within 5 years",
        # "Investable assets $1.2M", "Came via referral" (``FeatureSpec.reason_label``).
        self.labellers: list[Callable[[FeatureValue], str]] = [s.reason_label for s in specs]

    @functools.cached_property
    def column_labeller(self) -> ColumnLabeller:
        """Reason labels of column-wise requests: every feature's label tables in one, made on
        the first such request (a few ms) and kept with the schema."""
        return ColumnLabeller(self.specs)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FeatureSchema:
        """From a parsed model ``config.toml``: its ``[[features]]`` tables, in order."""
        tables = config.get("features")
        if not isinstance(tables, list) or not tables:
            raise ValueError("model config has no [[features]] tables")
        return cls([FeatureSpec.from_table(table) for table in tables])

    def spec(self, name: str) -> FeatureSpec:
        return self._by_name[name]

    def encode(self, leads: Sequence[LeadInput]) -> np.ndarray:
        """float32 [len(leads), width], C-contiguous; InvalidInput names the first bad lead."""
        if 0 < len(leads) <= ROW_WISE_MAX_LEADS:
            return self.encode_rows(leads)
        return self.encode_columns(leads)

    def encode_rows(self, leads: Sequence[LeadInput]) -> np.ndarray:
        """``encode`` lead by lead in plain Python: fastest for a few leads."""
        known = self._known
        encoders = self._value_encoders
        rows = []
        for row, lead in enumerate(leads):
            features = lead.features
            if is_valid_id(lead.lead_id) and features.keys() <= known:
                values = [encode(features.get(name)) for name, encode in encoders]
                if None not in values:
                    rows.append(values)
                    continue
            raise InvalidInput(self._explain(row, lead))
        return np.array(rows, dtype=np.float32).reshape(len(leads), self.width)

    def encode_columns(self, leads: Sequence[LeadInput]) -> np.ndarray:
        """``encode`` feature by feature with numpy: fastest from a few dozen leads."""
        n = len(leads)
        out = np.empty((n, self.width), dtype=np.float32)
        first_bad = n
        known = self._known
        for row, lead in enumerate(leads):
            if not is_valid_id(lead.lead_id) or not lead.features.keys() <= known:
                first_bad = row
                break
        maps = [lead.features for lead in leads]
        columns = [[f.get(name) for f in maps] for name in self.names]
        first_bad = self._encode_ordered(columns, out, first_bad)
        if first_bad < n:
            raise InvalidInput(self._explain(first_bad, leads[first_bad]))
        return out

    def encode_lead_columns(
        self,
        lead_ids: Sequence[str],
        columns: Mapping[str, Sequence[FeatureValue] | LeadColumn],
    ) -> np.ndarray:
        """``encode`` for leads sent column-wise: ``columns`` maps a feature name to one value per
        lead, as a list (None where missing) or a typed ``LeadColumn``; a feature without a
        column is missing for every lead. The same matrix and the same per-lead errors as
        ``encode`` on the equivalent leads.

        Typed columns of the features' own kinds take a path with no Python per value; anything
        else, and any bad value, takes the general path, whose messages name the lead."""
        n = len(lead_ids)
        for name in columns:
            if name not in self._known:
                expected = ", ".join(self.names)
                raise InvalidInput(
                    f"columns: unknown feature {shown(name)}; this model's features: {expected}"
                )
        if all(isinstance(column, LeadColumn) for column in columns.values()):
            encoded = self._encode_typed(lead_ids, columns)  # type: ignore[arg-type]
            if encoded is not None:
                return encoded
        lists: dict[str, Sequence[FeatureValue]] = {
            name: column.as_values() if isinstance(column, LeadColumn) else column
            for name, column in columns.items()
        }
        first_bad = next(
            (row for row, lead_id in enumerate(lead_ids) if not is_valid_id(lead_id)), n
        )
        absent: list[FeatureValue] = [None] * n
        ordered = [list(lists.get(name, absent)) for name in self.names]
        out = np.empty((n, self.width), dtype=np.float32)
        first_bad = self._encode_ordered(ordered, out, first_bad)
        if first_bad < n:
            features: dict[str, FeatureValue] = {
                name: column[first_bad]
                for name, column in lists.items()
                if column[first_bad] is not None
            }
            raise InvalidInput(self._explain(first_bad, LeadInput(lead_ids[first_bad], features)))
        return out

    def _encode_typed(
        self, lead_ids: Sequence[str], columns: Mapping[str, LeadColumn]
    ) -> np.ndarray | None:
        """The matrix of well-typed, valid columns; None at the first thing that is not (the
        general path then finds the lead to name). Filled feature-major, each feature's values
        one contiguous row, and transposed once; the number and flag columns with no missing
        value are checked and written a kind at a time (``_Block.encode_typed``)."""
        if not all_valid_ids(lead_ids):
            return None
        by_feature = np.empty((self.width, len(lead_ids)), dtype=np.float32)
        for block in self._blocks:
            if not block.encode_typed(columns, by_feature):
                return None
        for j in self._categories:
            spec = self.specs[j]
            column = columns.get(spec.name)
            if column is None:
                if spec.required:
                    return None
                by_feature[j] = spec.default
                continue
            values = spec.encode_typed(column)
            if values is None:
                return None
            by_feature[j] = values
        return np.ascontiguousarray(by_feature.T)

    def _encode_ordered(
        self, columns: list[list[FeatureValue]], out: np.ndarray, first_bad: int
    ) -> int:
        """Writes every column of ``out`` from ``columns`` (schema order); returns the first bad
        row, or ``first_bad`` if it comes earlier."""
        for block in self._blocks:
            first_bad = min(first_bad, block.encode(columns, out))
        for column in self._categories:
            values, bad = self.specs[column].encode_column(columns[column])
            if bad is not None and bad < first_bad:
                first_bad = bad
            out[:, column] = values
        return first_bad

    def _explain(self, row: int, lead: LeadInput) -> str:
        """The message for the first problem of one lead, checking in the order a reader would."""
        if not lead.lead_id:
            return f"lead at position {row}: empty lead id"
        id_wrong = id_problem(lead.lead_id)
        if id_wrong is not None:
            return f"lead at position {row}: lead id {id_wrong}"
        who = f"lead {shown(lead.lead_id)}"
        for name in lead.features:
            if name not in self._known:
                return f"{who}: unknown feature {shown(name)}"
        for spec in self.specs:
            problem = spec.problem(lead.features.get(spec.name))
            if problem is not None:
                return f"{who}: feature {spec.name!r} {problem}"
        return f"{who}: invalid features"


class _Block:
    """The number (or boolean) columns of a schema, checked together in one vectorised pass.

    Per-column work costs a few numpy calls each; for a single lead those calls, not the data,
    are the cost, so well-typed columns of one kind are stacked and checked at once. Columns
    with a missing or wrongly typed value fall back to their own spec's encoder.
    """

    def __init__(self, columns: list[int], specs: Sequence[FeatureSpec]) -> None:
        self.columns = columns
        self.specs = [specs[i] for i in columns]
        kind = self.specs[0].kind if self.specs else "boolean"
        self.allowed = _ALLOWED[kind]
        self.checks_range = kind == "number"
        self.minimum = np.array([[s.minimum] for s in self.specs], dtype=np.float64)
        self.maximum = np.array([[s.maximum] for s in self.specs], dtype=np.float64)
        # The range as finite bounds, so that one pair of comparisons also refuses NaN (no
        # comparison holds) and the infinities (beyond the largest float).
        largest = np.finfo(np.float64).max
        self.low = np.maximum(self.minimum, -largest)
        self.high = np.minimum(self.maximum, largest)

    def encode_typed(self, columns: Mapping[str, LeadColumn], by_feature: np.ndarray) -> bool:
        """Writes this block's rows of ``by_feature`` ([features, leads]) from typed columns;
        False at the first column that is not all well-typed and valid. The columns of this
        block's kind with no missing value are stacked and checked in one pass; a column with
        missing values, or of another kind, goes through its spec's ``encode_typed``."""
        whole: list[np.ndarray] = []
        whole_at: list[int] = []  # positions in this block
        for k, spec in enumerate(self.specs):
            column = columns.get(spec.name)
            if column is None:
                if spec.required:
                    return False
                by_feature[self.columns[k]] = spec.default
            elif column.missing is None and column.kind == spec.kind:
                whole.append(column.values)  # type: ignore[arg-type]
                whole_at.append(k)
            else:
                values = spec.encode_typed(column)
                if values is None:
                    return False
                by_feature[self.columns[k]] = values
        if whole:
            values = np.array(whole)
            if self.checks_range:
                within = values >= self.low[whole_at]
                within &= values <= self.high[whole_at]
                if not within.all():
                    return False
            by_feature[[self.columns[k] for k in whole_at]] = values
        return True

    def encode(self, columns: list[list[FeatureValue]], out: np.ndarray) -> int:
        """Writes this block's columns of ``out``; returns the first bad row (len(out) if none)."""
        n = len(out)
        clean = [set(map(type, columns[i])) <= self.allowed for i in self.columns]
        first_bad = n
        if any(clean):
            rows = [k for k, ok in enumerate(clean) if ok]
            targets = [self.columns[k] for k in rows]
            values = np.array([columns[i] for i in targets], dtype=np.float64).reshape(
                len(targets), n
            )
            out[:, targets] = values.T
            if self.checks_range:
                bad = ~np.isfinite(values)
                bad |= values < self.minimum[rows]
                bad |= values > self.maximum[rows]
                if bad.any():
                    first_bad = int(bad.any(axis=0).argmax())
        for k, ok in enumerate(clean):
            if not ok:
                i = self.columns[k]
                values, bad_row = self.specs[k].encode_column(columns[i])
                out[:, i] = values
                if bad_row is not None and bad_row < first_bad:
                    first_bad = bad_row
        return first_bad


def _type_masks(types: list[type], wanted: frozenset[type]) -> tuple[np.ndarray, np.ndarray]:
    """Which values are present (not None) and which are of a ``wanted`` type, from each value's
    type: one small code per distinct type, so no Python code runs per value."""
    kinds = list(dict.fromkeys(types))
    code_of = {kind: code for code, kind in enumerate(kinds)}
    codes = np.fromiter(map(code_of.__getitem__, types), dtype=np.intp, count=len(types))
    present = np.array([kind is not type(None) for kind in kinds])[codes]
    typed = np.array([kind in wanted for kind in kinds])[codes]
    return present, typed


def _with_default(column: Sequence[object], typed: np.ndarray, default: object) -> np.ndarray:
    """The column as an object array, ``default`` wherever the value is not ``typed``."""
    values = objects(column)
    values[~typed] = default
    return values


def objects(items: Sequence[object]) -> np.ndarray:
    """A 1-D object array of ``items`` as they are (``np.array`` would turn strings into a
    fixed-width str array)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def format_money(amount: float) -> str:
    """$1.2M, $350K, $900, $2.5B: short enough for a reason line."""
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if amount >= scale * 0.9995:
            scaled = amount / scale
            text = f"{scaled:.1f}" if scaled < 10 else f"{scaled:.0f}"
            return f"{sign}${text.removesuffix('.0')}{suffix}"
    return f"{sign}${amount:.0f}"


def _first(bad: np.ndarray) -> int | None:
    return int(bad.argmax()) if bad.any() else None
