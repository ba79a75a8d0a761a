"""A model's ``config.toml``: what the repository needs to load and serve one model version."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimes.config_file import check_shape

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
    return config
