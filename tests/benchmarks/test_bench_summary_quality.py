"""``leadgw bench --targets summary-quality``: the evaluation set through the real summary
pipeline and guard, with the loopback fake LLM (real HTTP) writing good and planted bad
sentences."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.summary_quality import EVAL_SET, QualityLLM, _copied


def test_the_evaluation_set_carries_injections_and_near_duplicates():
    leads = json.loads(EVAL_SET.read_text())["leads"]
    assert len(leads) >= 6
    assert sum(bool(lead["injections"]) for lead in leads) >= 3
    assert all(lead["expected_facts"] and lead["falsehoods"] for lead in leads)
    texts = [n["text"][:40] for lead in leads for n in lead["notes"]]
    assert len(texts) != len(set(texts))  # a pair of near-duplicate notes


def test_quality_llm_option_is_parsed_or_refused():
    parsed = QualityLLM.parse("smol=http://127.0.0.1:8080/v1/smollm2-135m-instruct")
    assert parsed == QualityLLM("smol", "http://127.0.0.1:8080/v1", "smollm2-135m-instruct")
    with pytest.raises(ValueError, match="NAME=URL/MODEL"):
        QualityLLM.parse("no-model-here")


def test_copied_means_most_words_are_one_run_of_the_note():
    note = "Priya Nair, self-employed designer, income varies a lot. Asked about a SIPP."
    assert _copied("Priya Nair, self-employed designer, income varies a lot [3].", note)
    assert not _copied("Priya, a designer, has an income that varies [3].", note)


def test_an_unknown_summary_style_is_refused_before_anything_runs():
    done = subprocess.run(
        [
            *(sys.executable, "-m", "gateway", "bench", "--targets", "summary-quality"),
            *("--quality-styles", "whole,sentences"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "expected whole and/or per_note" in done.stderr


def test_cli_reports_the_fake_row_with_every_planted_falsehood_dropped(tmp_path: Path):
    out = tmp_path / "q"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "bench",
            "--targets",
            "summary-quality",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads((out / "summary-quality.json").read_text())
    assert row["model"] == "loopback fake" and row["leads"] == 6
    assert row["falsehoods_shown"] == 0 and row["injections_followed"] == 0
    assert row["faithfulness"] == 1.0 and row["real_summaries"] == 6
    assert sum(row["dropped_by_reason"].values()) == 9  # the nine planted bad sentences
    assert row["fact_coverage"] >= 0.8
    assert row["style"] == "whole"
    # Every sentence shown passed the similarity step; windows are a subset of those checks.
    assert row["similarity_checks"] >= row["sentences_shown"] > 0
    assert 0 <= row["window_checks"] <= row["similarity_checks"]
    assert f"compared for {row['window_checks']} of the {row['similarity_checks']}" in done.stdout
    assert "| loopback fake | whole | 6 | 6 | 1.0 |" in done.stdout
