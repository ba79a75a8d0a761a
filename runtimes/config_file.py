"""The shape of a model's ``config.toml``, checked before anything reads it.

Every table rejects keys it does not know, naming the key and where it is, so a typo
(``max_batchsize``, ``[band]``) is an error at load time instead of a silently used default.
The meaning of the values (ranges, categories, bands order) is checked where they are used:
``FeatureSpec.from_table``, ``BatchingConfig.from_table`` and ``load_config``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Input(_Table):
    name: str = "features"


class _Outputs(_Table):
    probability: str = "probability"
    logit: str = "logit"
    contributions: str = "contributions"


class _Bands(_Table):
    hot: float
    warm: float


class _OnnxRuntime(_Table):
    intra_op_threads: int = 1
    inter_op_threads: int = 1


class _Batching(_Table):
    max_batch_size: int | None = None
    max_queue_delay_us: int | None = None
    max_queue_size: int | None = None
    inline_run_us: int | None = None
    gather_delay_us: int | None = None


class _Feature(_Table):
    name: str
    type: str
    label: str | None = None
    required: bool = True
    default: Any = None
    min: float | None = None
    max: float | None = None
    format: str | None = None
    template: str | None = None
    template_one: str | None = None
    categories: list[str] | None = None
    on_unknown: str | None = None
    label_true: str | None = None
    label_false: str | None = None
    label_missing: str | None = None


class ModelConfigFile(_Table):
    name: str
    platform: str = "onnxruntime_onnx"  # the only one: load_config refuses another
    description: str = ""
    input: _Input = _Input()
    outputs: _Outputs = _Outputs()
    bands: _Bands
    onnxruntime: _OnnxRuntime = _OnnxRuntime()
    batching: _Batching = _Batching()
    features: list[_Feature]
    # Model control's own tables, checked key by key by RoutingPolicy and VersionPolicy.
    routing: dict[str, Any] | None = None
    version_policy: dict[str, Any] | None = None


def check_shape(raw: dict[str, Any], source: str) -> None:
    """Raises ValueError naming ``source``, the key and its table for every key out of place."""
    try:
        ModelConfigFile.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(error, raw) for error in exc.errors()]
        raise ValueError(f"{source}: " + "; ".join(problems)) from None


def _describe(error: Any, raw: dict[str, Any]) -> str:
    where = _where(error["loc"], raw)
    if error["type"] == "extra_forbidden":
        return f"unknown key {error['loc'][-1]!r} in {where}"
    if error["type"] == "missing":
        return f"missing key {error['loc'][-1]!r} in {where}"
    return f"{where}.{error['loc'][-1]}: {error['msg']}"


def _where(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """``[bands]``, ``[[features]] 'age'`` or ``the top level`` for a key's enclosing table."""
    parents = loc[:-1]
    if not parents:
        return "the top level"
    if parents[0] == "features" and len(parents) >= 2 and isinstance(parents[1], int):
        features = raw.get("features") or []
        name = features[parents[1]].get("name") if parents[1] < len(features) else None
        return f"[[features]] {name!r}" if name else f"[[features]] #{parents[1] + 1}"
    return "[" + ".".join(str(p) for p in parents) + "]"


def unknown_top_level_keys(raw: dict[str, Any]) -> list[str]:
    """Top-level keys (tables included) that no model config.toml may hold."""
    return sorted(set(raw) - set(ModelConfigFile.model_fields))
