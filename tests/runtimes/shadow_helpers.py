"""Two real versions of the bundled model for the shadow tests, and leads to feed them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from gateway.settings import BUNDLED_MODELS
from runtimes.repository import ModelRepository
from runtimes.served_model import ServedModel
from tests.gateway.leads_helpers import sample_leads

MODEL = "lead_scorer"


def load_versions(folder: Path) -> tuple[ServedModel, ServedModel]:
    """Version 1 as bundled; version 2 the same graph with other band thresholds (so band
    agreement is not trivially total), both loaded as the repository loads them."""
    root = folder / MODEL
    shutil.copytree(BUNDLED_MODELS / MODEL, root)
    shutil.copytree(root / "1", root / "2")
    config = (root / "config.toml").read_text()
    (root / "2" / "config.toml").write_text(
        config.replace("hot = 0.102", "hot = 0.05").replace("warm = 0.0233", "warm = 0.03")
    )
    live = ModelRepository._load_version(MODEL, "1", root / "1")
    candidate = ModelRepository._load_version(MODEL, "2", root / "2")
    return live, candidate


def features_of(live: ServedModel, rows: int, seed: int) -> np.ndarray:
    """Synthetic leads encoded by the live version's schema."""
    return live.schema.encode(sample_leads(rows, seed=seed))
