"""A model's ``config.toml``: what the repository needs to load and serve one model version."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimes.batching_config import BatchingConfig
from runtimes.config_file import check_shape, unknown_top_level_keys
from runtimes.errors import shown
from runtimes.routing import RoutingPolicy
from runtimes.version_policy import VersionPolicy

CONFIG_FILE = "config.toml"

PLATFORM = "onnxruntime_onnx"
"""The one ``platform`` served: Triton's name for an ONNX model run by ONNX Runtime (its backend,
``onnxruntime``, is what ModelConfig answers as ``backend``)."""


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
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    """The ``[batching]`` table, checked; its defaults where the file leaves a key out."""
    raw: dict[str, Any] = field(default_factory=dict)
    """The whole parsed file, for the feature schema."""

    @property
    def output_names(self) -> tuple[str, str, str]:
        return (self.probability_output, self.logit_output, self.contributions_output)


def find_config(model_dir: Path, version_dir: Path) -> Path:
    """A version's own config.toml replaces the model's, so a new version may change its schema."""
    for candidate in (version_dir / CONFIG_FILE, model_dir / CONFIG_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no {CONFIG_FILE} in {version_dir} or {model_dir}")


def load_version_config(model_dir: Path, version_dir: Path) -> ModelConfig:
    """The config a version loads with (``find_config``), checked as ``load_config`` checks it;
    its ``name`` must be the model's folder name, which is what names the model (as in
    Triton): a name that differs would be shown nowhere and believed to take effect."""
    path = find_config(model_dir, version_dir)
    config = load_config(path, version_file=path.parent == version_dir)
    if config.name != model_dir.name:
        raise ValueError(
            f"{path}: name {config.name!r} is not the model's folder name {model_dir.name!r}; "
            "the folder names the model, so name must match it"
        )
    return config


def load_config(path: Path, *, version_file: bool = False) -> ModelConfig:
    """Parses and checks a config file; a ValueError names the file and the key at fault.
    ``version_file``: ``path`` is a version folder's own config.toml, which may not hold the
    control tables (only the model's own file is read for them)."""
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    if version_file:
        _refuse_control_tables(raw, path)
    check_shape(raw, str(path))
    try:
        outputs = raw.get("outputs", {})
        bands = raw["bands"]
        ort = raw.get("onnxruntime", {})
        config = ModelConfig(
            name=str(raw["name"]),
            platform=str(raw.get("platform", PLATFORM)),
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
            batching=_batching(raw.get("batching", {}), path),
            raw=raw,
        )
    except KeyError as exc:
        raise ValueError(f"{path}: missing key {exc.args[0]!r}") from exc
    if config.platform != PLATFORM:
        # Reported as the model's platform by ModelMetadata and ModelConfig; any other value
        # would be loaded and run by ONNX Runtime all the same, and answered as if it were.
        raise ValueError(
            f"{path}: platform must be {PLATFORM!r} (leadgw serves ONNX Runtime models only), "
            f"got {shown(config.platform)}"
        )
    if not 0.0 <= config.bands.warm <= config.bands.hot <= 1.0:
        raise ValueError(f"{path}: bands need 0 <= warm <= hot <= 1")
    if not raw.get("features"):
        raise ValueError(f"{path}: no [[features]] tables")
    return config


def _batching(table: dict[str, Any], path: Path) -> BatchingConfig:
    try:
        # Checked here, with the rest of the file, so that a bad value fails this version only;
        # the batcher built from it later must not meet it first.
        return BatchingConfig.from_table(table)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# Tables of a model's own config.toml that steer rollout; they never change how a version loads.
CONTROL_TABLES = ("routing", "version_policy")


def _refuse_control_tables(raw: dict[str, Any], path: Path) -> None:
    """A version's own config.toml holding a control table: refused, as it would be ignored
    (``read_model_controls`` reads the model's file only) while its writer believes it
    applies."""
    misplaced = [name for name in CONTROL_TABLES if name in raw]
    if misplaced:
        tables = " and ".join(f"[{name}]" for name in misplaced)
        is_, it = ("is", "it") if len(misplaced) == 1 else ("are", "them")
        raise ValueError(
            f"{path}: {tables} {is_} read only from the model's own config.toml "
            f"({path.parent.parent / CONFIG_FILE}); in a version's config.toml {it} would be "
            f"ignored: move {it} there"
        )


def read_model_controls(model_dir: Path) -> tuple[VersionPolicy, RoutingPolicy]:
    """The version policy and routing policy in ``<model>/config.toml`` (defaults without one)."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return VersionPolicy(), RoutingPolicy()
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    # A version with a config.toml of its own never reads the model's load tables, so when
    # every version has one, a misspelt table here (``[version_polcy]``) is checked nowhere else.
    unknown = unknown_top_level_keys(raw)
    if unknown:
        raise ValueError(
            f"{path}: " + "; ".join(f"unknown key {key!r} in the top level" for key in unknown)
        )
    return (
        VersionPolicy.from_table(raw.get("version_policy"), str(path)),
        RoutingPolicy.from_table(raw.get("routing", {}), str(path)),
    )


def files_fingerprint(version_dir: Path, model_file: str) -> str:
    """Changes when what a version loads changes: its graph file or the text of its config (the
    model's control tables aside, so that a routing change reloads nothing; in a version's own
    file they count, so that adding one there reloads the version, which refuses it)."""
    parts = []
    graph = version_dir / model_file
    if graph.is_file():
        stat = graph.stat()
        parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
    own, model = version_dir / CONFIG_FILE, version_dir.parent / CONFIG_FILE
    if own.is_file():
        parts.append(own.read_text())
    elif model.is_file():
        parts.append(strip_tables(model.read_text(), CONTROL_TABLES))
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
