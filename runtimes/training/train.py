"""The training pipeline: prospects → bins → boosting → Platt calibration folded in → metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from runtimes.schema import FeatureSchema
from runtimes.training import boosting, metrics, synth
from runtimes.training.additive import AdditiveModel, quantile_cuts
from runtimes.training.calibration import fit_platt
from runtimes.training.features import feature_tables

# Shares of rows: boosting fit / early stopping / calibration / held-out test.
SPLITS = {"train": 0.7, "valid": 0.1, "calibration": 0.1, "test": 0.1}


class Reporter(Protocol):
    """Where the pipeline says what it is doing; the CLI prints it, tests may ignore it."""

    def stage(self, text: str) -> None: ...

    def round(self, number: int, train_loss: float, valid_loss: float) -> None: ...


class SilentReporter:
    def stage(self, text: str) -> None:
        del text

    def round(self, number: int, train_loss: float, valid_loss: float) -> None:
        del number, train_loss, valid_loss


@dataclass(frozen=True)
class TrainOptions:
    rows: int = 200_000
    seed: int = 20240601
    max_bins: int = 32
    boosting: boosting.BoostingParams = field(default_factory=boosting.BoostingParams)
    hot_share: float = 0.05  # top 5% of leads are hot
    warm_share: float = 0.20  # the next 20% are warm


@dataclass
class TrainResult:
    model: AdditiveModel
    feature_tables: list[dict[str, Any]]
    bands: dict[str, float]
    metrics: dict[str, Any]
    test_features: np.ndarray = field(repr=False)


def train(options: TrainOptions, reporter: Reporter | None = None) -> TrainResult:
    """Runs the whole pipeline in memory; nothing is written."""
    say = reporter or SilentReporter()
    started = time.perf_counter()
    tables = feature_tables()
    schema = FeatureSchema.from_config({"features": tables})

    say.stage(f"generating {options.rows:,} synthetic prospects (seed {options.seed})")
    prospects = synth.generate(options.rows, options.seed)
    say.stage("encoding them with the serving feature schema")
    x = prospects.matrix(schema)
    y = prospects.labels
    parts = _split(len(y), options.seed)
    if min(int(y[rows].sum()) for rows in parts.values()) < 5:
        raise ValueError(f"{options.rows} rows leave too few converted leads in a split")

    say.stage(f"binning {schema.width} features (up to {options.max_bins} bins each)")
    train_rows = parts["train"]
    cuts = [
        quantile_cuts(x[train_rows, f], options.max_bins, floor=_sentinel_floor(spec))
        for f, spec in enumerate(schema.specs)
    ]
    unfitted = AdditiveModel(schema.names, cuts, [np.zeros(len(c) + 1) for c in cuts], 0.0)
    bins = unfitted.bins(x)

    say.stage("boosting per-feature functions (cyclic, early stopping on validation loss)")
    fitted = boosting.fit(
        schema.names,
        cuts,
        (bins[train_rows], y[train_rows]),
        (bins[parts["valid"]], y[parts["valid"]]),
        options.boosting,
        progress=say.round,
    )

    say.stage("calibrating (Platt scaling, folded into the tables) and centring")
    calibration_rows = parts["calibration"]
    scale, shift = fit_platt(fitted.model.logit(x[calibration_rows]), y[calibration_rows])
    model = fitted.model.affine(scale, shift).centred(bins[train_rows])

    say.stage("measuring on the held-out test split")
    probability = model.probability(x)
    bands = _bands(probability, options.hot_share, options.warm_share)
    test = parts["test"]
    report = _metrics(model, x[test], y[test], prospects.true_logit[test], bands)
    report.update(
        rows=options.rows,
        seed=options.seed,
        positive_rate=float(y.mean()),
        split_rows={name: len(rows) for name, rows in parts.items()},
        boosting={
            "learning_rate": options.boosting.learning_rate,
            "l2": options.boosting.l2,
            "patience": options.boosting.patience,
            "rounds_run": fitted.rounds,
            "best_round": fitted.best_round,
            "valid_log_loss": fitted.valid_loss,
            "max_bins": options.max_bins,
            "thresholds": int(sum(len(c) for c in cuts)),
        },
        platt={"scale": scale, "shift": shift},
        training_seconds=time.perf_counter() - started,
    )
    return TrainResult(model, tables, bands, report, x[test])


def _split(rows: int, seed: int) -> dict[str, np.ndarray]:
    order = np.random.default_rng([seed, 1]).permutation(rows)
    edges = np.cumsum([int(share * rows) for share in SPLITS.values()])[:-1]
    return dict(zip(SPLITS, np.split(order, edges), strict=True))


def _sentinel_floor(spec: Any) -> float | None:
    """For numbers whose missing default sits below the valid range: the range's floor."""
    if spec.kind == "number" and spec.default < spec.minimum:
        return float(spec.minimum)
    return None


def _bands(probability: np.ndarray, hot_share: float, warm_share: float) -> dict[str, float]:
    """Thresholds putting about hot_share of leads in hot and warm_share more in warm."""
    hot = float(np.quantile(probability, 1 - hot_share))
    warm = float(np.quantile(probability, 1 - hot_share - warm_share))
    return {"hot": float(f"{hot:.3g}"), "warm": float(f"{warm:.3g}")}


def _metrics(
    model: AdditiveModel,
    x: np.ndarray,
    y: np.ndarray,
    true_logit: np.ndarray,
    bands: dict[str, float],
) -> dict[str, Any]:
    logit = model.logit(x)
    probability = 1.0 / (1.0 + np.exp(-logit))
    contributions = model.contributions(x)
    hot = probability >= bands["hot"]
    warm = ~hot & (probability >= bands["warm"])
    cold = ~hot & ~warm
    importance = np.abs(contributions).mean(axis=0)
    return {
        "test": {
            "rows": len(y),
            "positives": int(y.sum()),
            "auc": metrics.roc_auc(y, probability),
            "pr_auc": metrics.average_precision(y, probability),
            "ece": metrics.expected_calibration_error(y, probability),
            "brier": metrics.brier(y, probability),
            "log_loss": boosting.log_loss(y.astype(float), logit),
            "mean_probability": float(probability.mean()),
            "positive_rate": float(y.mean()),
        },
        "ceiling": {
            "auc": metrics.roc_auc(y, true_logit),
            "pr_auc": metrics.average_precision(y, true_logit),
        },
        "bands": {
            name: {
                "share": float(mask.mean()),
                "conversion_rate": float(y[mask].mean()) if mask.any() else 0.0,
            }
            for name, mask in (("hot", hot), ("warm", warm), ("cold", cold))
        },
        "importance": {
            name: float(value)
            for name, value in sorted(
                zip(model.names, importance, strict=True), key=lambda item: -item[1]
            )
        },
        "base_value": model.base_value,
    }
