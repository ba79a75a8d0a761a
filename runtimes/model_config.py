"""A model's ``config.toml``: what the repository needs to load and serve one model version."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimes.batching_config import BatchingConfig
from runtimes.config_file import check_shape
from runtimes.routing import RoutingPolicy
from runtimes.version_policy import VersionPolicy

CONFIG_FILE = "config.toml"


@dataclass(frozen=True, slots=True)
class Bands:
    """Probability thresholds: >= hot is hot, >= warm is warm, else cold."""

    hot: float
    warm: float


@dataclass(frozen=True, slots=True)
class OrtSettings:
    intra_op_threads: int = 1
    inter_op_threads: int = 1


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    platform: str
    description: str
    input_name: str
    probability_output: str
    logit_output: str
    contributions_output: str
    bands: Bands
    onnxruntime: OrtSettings
    batching: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    """The whole parsed file, for the feature schema and the batching config."""

    @property
    def output_names(self) -> tuple[str, str, str]:
        return (self.probability_output, self.logit_output, self.contributions_output)


def find_config(model_dir: Path, version_dir: Path) -> Path:
    """A version's own config.toml replaces the model's, so a new version may change its schema."""
    for candidate in (version_dir / CONFIG_FILE, model_dir / CONFIG_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no {CONFIG_FILE} in {version_dir} or {model_dir}")


def load_config(path: Path) -> ModelConfig:
    """Parses and checks a config file; a ValueError names the file and the key at fault."""
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    check_shape(raw, str(path))
    try:
        outputs = raw.get("outputs", {})
        bands = raw["bands"]
        ort = raw.get("onnxruntime", {})
        config = ModelConfig(
            name=str(raw["name"]),
            platform=str(raw.get("platform", "onnxruntime_onnx")),
            description=str(raw.get("description", "")),
            input_name=str(raw.get("input", {}).get("name", "features")),
            probability_output=str(outputs.get("probability", "probability")),
            logit_output=str(outputs.get("logit", "logit")),
            contributions_output=str(outputs.get("contributions", "contributions")),
            bands=Bands(hot=float(bands["hot"]), warm=float(bands["warm"])),
            onnxruntime=OrtSettings(
                intra_op_threads=int(ort.get("intra_op_threads", 1)),
                inter_op_threads=int(ort.get("inter_op_threads", 1)),
            ),
            batching=dict(raw.get("batching", {})),
            raw=raw,
        )
    except KeyError as exc:
        raise ValueError(f"{path}: missing key {exc.args[0]!r}") from exc
    if not 0.0 <= config.bands.warm <= config.bands.hot <= 1.0:
        raise ValueError(f"{path}: bands need 0 <= warm <= hot <= 1")
    if not raw.get("features"):
        raise ValueError(f"{path}: no [[features]] tables")
    try:
        # Checked here, with the rest of the file, so that a bad value fails this version only;
        # the batcher built from it later must not meet it first.
        BatchingConfig.from_table(config.batching)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return config


# Tables of a model's own config.toml that steer rollout; they never change how a version loads.
CONTROL_TABLES = ("routing", "version_policy")


def read_model_controls(model_dir: Path) -> tuple[VersionPolicy, RoutingPolicy]:
    """The version policy and routing policy in ``<model>/config.toml`` (defaults without one)."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return VersionPolicy(), RoutingPolicy()
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    return (
        VersionPolicy.from_table(raw.get("version_policy"), str(path)),
        RoutingPolicy.from_table(raw.get("routing", {}), str(path)),
    )


def files_fingerprint(version_dir: Path, model_file: str) -> str:
    """Changes when what a version loads changes: its graph file or the text of its config (the
    control tables aside, so that a routing change reloads nothing)."""
    parts = []
    graph = version_dir / model_file
    if graph.is_file():
        stat = graph.stat()
        parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
    for config in (version_dir / CONFIG_FILE, version_dir.parent / CONFIG_FILE):
        if config.is_file():
            parts.append(strip_tables(config.read_text(), CONTROL_TABLES))
            break
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def feature_signature(config: ModelConfig) -> list[tuple[Any, ...]]:
    """What of the feature schema shapes the input tensor: two versions with the same signature
    read a lead the same way, so one may shadow or canary the other."""
    keys = ("name", "type", "categories", "min", "max", "default", "required", "on_unknown")
    return [tuple(str(table.get(k)) for k in keys) for table in config.raw.get("features", [])]


def strip_tables(text: str, names: tuple[str, ...]) -> str:
    """TOML text without the tables ``names`` (and their sub-tables); other lines kept as is."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        header = line.strip()
        if header.startswith("["):
            name = header.strip("[]").strip()
            skipping = any(name == n or name.startswith(n + ".") for n in names)
        if not skipping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept) + "\n"


def replace_routing_table(text: str, routing: RoutingPolicy) -> str:
    """``config.toml`` text with its ``[routing]`` tables replaced by ``routing``'s."""
    return strip_tables(text, ("routing",)) + "\n" + routing.to_toml()
