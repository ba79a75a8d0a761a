"""--mode sweep with --rounds: each round's capacities compared within the round, their median and
range, None for a round that found no passing rate; the report's tables. Unit tests on made-up
sweeps, and one real bench."""

from __future__ import annotations

import pytest
from bench_helpers import SHORT

from benchmarks.report import sweep_rounds_table, sweeps_table
from benchmarks.rounds import capacity_ratios
from benchmarks.sweep import SweepResult

# Capacities per round; the floor's drifts 2x between rounds, as it did on the shared machine.
CAPACITY: dict[str, list[float | None]] = {
    "scoreleads": [450.0, 270.0, 250.0],
    "modelinfer": [480.0, None, 400.0],
    "transport-floor": [600.0, 300.0, 500.0],
    "mlserver": [200.0, 100.0, None],
}


def made_sweeps(capacity: dict[str, list[float | None]]) -> list[SweepResult]:
    """The sweeps in the order a bench runs them: round r starts with target r."""
    names = list(capacity)
    rounds = len(next(iter(capacity.values())))
    return [
        SweepResult(
            name,
            {"slo_ms": 10.0},
            best_rps=capacity[name][r],
            failed_rps=None if capacity[name][r] is None else capacity[name][r] * 1.1,
            round=r + 1,
        )
        for r in range(rounds)
        for name in names[r % len(names) :] + names[: r % len(names)]
    ]


def test_capacity_ratios_are_read_within_each_round() -> None:
    ratios = {(r.target, r.against): r for r in capacity_ratios(made_sweeps(CAPACITY))}
    # The floor is compared with no one, MLServer with the floor only, ModelInfer with both.
    assert set(ratios) == {
        ("scoreleads", "transport-floor"), ("modelinfer", "transport-floor"),
        ("mlserver", "transport-floor"), ("scoreleads", "mlserver"),
        ("modelinfer", "mlserver"), ("scoreleads", "modelinfer"),
    }  # fmt: skip
    vs_floor = ratios[("scoreleads", "transport-floor")]
    assert vs_floor.mode == "sweep"
    assert vs_floor.per_round == {
        "capacity_rps": [pytest.approx(0.75), pytest.approx(0.9), pytest.approx(0.5)]
    }
    # Within each round: 0.75, 0.9, 0.5; the medians' ratio (270 / 500 = 0.54) would differ.
    assert vs_floor.summary("capacity_rps") == (
        pytest.approx(0.75), pytest.approx(0.5), pytest.approx(0.9),
    )  # fmt: skip
    as_dict = vs_floor.to_dict()
    assert as_dict["capacity_rps_median"] == pytest.approx(0.75)
    assert as_dict["capacity_rps_range"] == [pytest.approx(0.5), pytest.approx(0.9)]
    assert "rows_per_s_median" not in as_dict  # only the figures that were compared


def test_a_round_without_a_passing_rate_gives_none_not_a_guess() -> None:
    ratios = {(r.target, r.against): r for r in capacity_ratios(made_sweeps(CAPACITY))}
    # ModelInfer found no rate in round 2, MLServer none in round 3.
    vs_mlserver = ratios[("modelinfer", "mlserver")]
    assert vs_mlserver.per_round["capacity_rps"] == [pytest.approx(2.4), None, None]
    assert vs_mlserver.summary("capacity_rps") == (
        pytest.approx(2.4), pytest.approx(2.4), pytest.approx(2.4),
    )  # fmt: skip
    scoreleads = ratios[("scoreleads", "mlserver")].summary("capacity_rps")
    assert scoreleads == (pytest.approx(2.475), pytest.approx(2.25), pytest.approx(2.7))
    nothing = capacity_ratios(made_sweeps({"modelinfer": [None, 300.0], "mlserver": [100.0, None]}))
    assert [r.per_round["capacity_rps"] for r in nothing] == [[None, None]]
    assert nothing[0].to_dict()["capacity_rps_median"] is None
    assert capacity_ratios([]) == []


def test_pairs_do_not_depend_on_the_rotation() -> None:
    sweeps = made_sweeps(CAPACITY)
    assert [s.target for s in sweeps[4:8]] == [
        "modelinfer", "transport-floor", "mlserver", "scoreleads",
    ]  # fmt: skip
    forward = capacity_ratios(sweeps)
    # Round 1 runs the targets in their own order, so the rounds' order gives the same pairs.
    assert [(r.target, r.against) for r in forward] == [
        ("scoreleads", "transport-floor"), ("modelinfer", "transport-floor"),
        ("mlserver", "transport-floor"), ("scoreleads", "mlserver"),
        ("modelinfer", "mlserver"), ("scoreleads", "modelinfer"),
    ]  # fmt: skip
    shuffled = sweeps[:4] + sweeps[8:] + sweeps[4:8]
    assert [r.per_round for r in capacity_ratios(shuffled)] == [r.per_round for r in forward]


def test_report_tables_give_each_round_and_the_medians() -> None:
    sweeps = made_sweeps(CAPACITY)
    assert sweeps[0].target == "scoreleads"
    sweeps[0].failed_rps = None  # every step passed: 450/s is a lower bound
    ratios = [r.to_dict() for r in capacity_ratios(sweeps)]
    table = sweep_rounds_table(sweeps, ratios).splitlines()
    assert (
        "| target | capacity, median | each round | × transport-floor | × mlserver "
        "| × modelinfer |" in table
    )
    assert (
        "| scoreleads | 270/s | ≥450/s, 270/s, 250/s | 0.75 (0.50–0.90) "
        "| 2.48 (2.25–2.70; 1 of 3 rounds n/a) | 0.78 (0.62–0.94; 1 of 3 rounds n/a) |" in table
    )
    assert "| modelinfer | 440/s | 480/s, none, 400/s | 0.80 (0.80–0.80; 1 of 3 rounds n/a) " in (
        "\n".join(table)
    )
    assert "| transport-floor | 500/s | 600/s, 300/s, 500/s | - | - | - |" in table
    # Each round's line compares with that round's floor and MLServer.
    rounds = sweeps_table(sweeps)
    assert "| round | target |" in rounds
    assert "| 2 | scoreleads | 10 | 270/s | 297/s | 0.90 | 2.70 |" in rounds
    assert "| 3 | scoreleads | 10 | 250/s | 275/s | 0.50 | - |" in rounds
    one = sweeps_table([s for s in sweeps if s.round == 1])
    assert "round" not in one and "| scoreleads | 10 | 450/s | none | 0.75 | 2.25 |" in one


@pytest.mark.bench
def test_bench_sweep_rounds(bench) -> None:
    targets = ["modelinfer", "transport-floor"]
    run = bench(
        *SHORT,
        "--targets", ",".join(targets),
        "--mode", "sweep",
        "--rounds", "2",
        "--sweep-start", "50",
        "--sweep-max-steps", "2",
        "--sweep-refine", "0",
        "--sweep-retries", "0",
        "--sweep-step-duration", "1",
        "--slo-ms", "1000",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = run.result()
    sweeps = result["sweeps"]
    # Two rounds of each target's sweep, round 2 starting with the second target.
    assert [(s["round"], s["target"]) for s in sweeps] == [
        (1, "modelinfer"), (1, "transport-floor"), (2, "transport-floor"), (2, "modelinfer"),
    ]  # fmt: skip
    for sweep in sweeps:
        assert [s["offered_rps"] for s in sweep["steps"]] == [50, 100]
        assert sweep["best_rps"] in (None, 50, 100)
    assert result["rounds"]["count"] == 2 and result["rounds"]["ratios"] == []
    [ratio] = result["rounds"]["sweep_ratios"]
    assert (ratio["mode"], ratio["target"], ratio["against"]) == (
        "sweep", "modelinfer", "transport-floor",
    )  # fmt: skip
    best = {(s["round"], s["target"]): s["best_rps"] for s in sweeps}
    expected = [
        None if not best[(r, "modelinfer")] or not best[(r, "transport-floor")]
        else pytest.approx(best[(r, "modelinfer")] / best[(r, "transport-floor")])
        for r in (1, 2)
    ]  # fmt: skip
    assert ratio["per_round"]["capacity_rps"] == expected
    markdown = (run.out / "report.md").read_text()
    assert "## Rate sweep: capacity over rounds" in markdown
    assert "## Rate sweep: each round" in markdown
    assert "| 2 | modelinfer | 1000 |" in markdown
    assert (run.out / "sweep.png").read_bytes().startswith(b"\x89PNG")
