"""Renders model_card.md from the metrics a training run produced; no figure is typed by hand."""

from __future__ import annotations

from typing import Any


def render(metrics: dict[str, Any], features: list[dict[str, Any]], config_name: str) -> str:
    """Markdown model card for one trained version."""
    test, ceiling, bands = metrics["test"], metrics["ceiling"], metrics["bands_thresholds"]
    boost, platt, onnx = metrics["boosting"], metrics["platt"], metrics["onnx"]
    share = metrics["bands"]
    lines = [
        f"# {metrics['model']} — version {metrics['version']}",
        "",
        "Scores how likely a wealth-management prospect is to convert, with exact per-feature",
        "reasons. Additive model: `logit = base_value + Σ contributions`, "
        "`probability = sigmoid(logit)`,",
        "both computed inside the ONNX graph. Each feature's function is centred (mean 0 over the",
        "training leads), so a contribution reads as *compared with a typical lead*.",
        "",
        "**Trained on synthetic data** from `runtimes/training/synth.py` (a seeded generator",
        "with a known true logit); it demonstrates the serving path and is not for real decisions.",
        "",
        f"## Quality (held-out test split: {test['rows']:,} leads, "
        f"{test['positives']:,} converted)",
        "",
        "| metric | this model | ground-truth logit (ceiling) |",
        "| --- | ---: | ---: |",
        f"| ROC AUC | {test['auc']:.4f} | {ceiling['auc']:.4f} |",
        f"| PR AUC (average precision) | {test['pr_auc']:.4f} | {ceiling['pr_auc']:.4f} |",
        f"| expected calibration error (20 equal-mass bins) | {test['ece']:.4f} | |",
        f"| Brier score | {test['brier']:.5f} | |",
        f"| log loss | {test['log_loss']:.4f} | |",
        f"| mean predicted probability | {test['mean_probability']:.4f} | |",
        f"| observed conversion rate | {test['positive_rate']:.4f} | |",
        "",
        "The ceiling scores the generator's true logit, which also sees income and assets the CRM",
        "does not record, so no model trained on the CRM fields can reach it.",
        "",
        "## Bands",
        "",
        f"Thresholds (in `{config_name}`) are quantiles of the calibrated probability over all "
        f"{metrics['rows']:,} generated prospects: hot ≈ the top 5% of leads, warm ≈ the next "
        "20%.",
        "",
        "| band | probability | share of test leads | conversion rate in test |",
        "| --- | --- | ---: | ---: |",
        f"| hot | ≥ {bands['hot']} | {share['hot']['share']:.1%} | "
        f"{share['hot']['conversion_rate']:.1%} |",
        f"| warm | ≥ {bands['warm']} | {share['warm']['share']:.1%} | "
        f"{share['warm']['conversion_rate']:.1%} |",
        f"| cold | < {bands['warm']} | {share['cold']['share']:.1%} | "
        f"{share['cold']['conversion_rate']:.1%} |",
        "",
        "## Features (tensor column order)",
        "",
        f"Base value (logit of a typical lead): `{metrics['base_value']:.6f}`. Importance is the",
        "mean |contribution| on the test split, in logits.",
        "",
        "| # | feature | type | accepted values | when missing | importance |",
        "| ---: | --- | --- | --- | --- | ---: |",
    ]
    importance = metrics["importance"]
    for column, table in enumerate(features):
        lines.append(
            f"| {column} | `{table['name']}` | {table['type']} | {_accepted(table)} | "
            f"{_missing(table)} | {importance[table['name']]:.3f} |"
        )
    checks = onnx["checks"]
    software = metrics["software"]
    lines += [
        "",
        "## How it was produced",
        "",
        "```",
        metrics["command"],
        "```",
        "",
        f"- {metrics['rows']:,} prospects, seed {metrics['seed']}, "
        f"{metrics['positive_rate']:.2%} converted; splits "
        + ", ".join(f"{name} {rows:,}" for name, rows in metrics["split_rows"].items())
        + ".",
        f"- Cyclic gradient boosting of per-feature piecewise-constant functions on up to "
        f"{boost['max_bins']} quantile bins ({boost['thresholds']} thresholds in all): Newton "
        f"steps on the logistic loss, learning rate {boost['learning_rate']}, L2 {boost['l2']}; "
        f"best validation round {boost['best_round']} of {boost['rounds_run']} "
        f"(patience {boost['patience']}).",
        f"- Platt scaling on the calibration split (scale {platt['scale']:.4f}, shift "
        f"{platt['shift']:.4f}), folded into the tables and base value.",
        f"- ONNX opset {onnx['opset']}, IR version {onnx['ir_version']}, {onnx['bytes']:,} bytes. "
        "Checked on ONNX Runtime: |base + Σ contributions − logit| ≤ "
        f"{checks['reasons_sum_vs_logit']:.1e}, |sigmoid(logit) − probability| ≤ "
        f"{checks['sigmoid_vs_probability']:.1e}, |ONNX − numpy logit| ≤ "
        f"{checks['onnx_vs_numpy_logit']:.1e}.",
        f"- Took {metrics['training_seconds']:.1f} s; Python {software['python']}, numpy "
        f"{software['numpy']}, onnx {software['onnx']}, onnxruntime {software['onnxruntime']}.",
        "",
    ]
    return "\n".join(lines)


def _accepted(table: dict[str, Any]) -> str:
    if table["type"] == "number":
        return f"{_plain(table['min'])} to {_plain(table['max'])}"
    if table["type"] == "category":
        unknown = "error" if table.get("on_unknown", "error") == "error" else "default"
        return ", ".join(f"`{c}`" for c in table["categories"]) + f" (other: {unknown})"
    return "true / false"


def _missing(table: dict[str, Any]) -> str:
    if table.get("required", True):
        return "error (required)"
    default = table["default"]
    if table["type"] == "number" and default < table.get("min", default):
        return f"own bin ({_plain(default)})"
    if table["type"] == "number":
        return f"`{_plain(default)}`"
    return f"`{str(default).lower()}`"


def _plain(number: float) -> str:
    """1e8 as 100,000,000 and 45.0 as 45: easier to read in a table than %g."""
    return f"{int(number):,}" if float(number).is_integer() else f"{number:,}"
