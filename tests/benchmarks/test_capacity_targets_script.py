"""``scripts/capacity_targets.sh``: which runs it makes, in which order, and what it records.

The script is run as written, from a copy of the repository's layout in a scratch folder whose
``.venv/bin/leadgw`` is a stand-in that records its arguments (and writes the sweep's
``result.json``, which the script reads for the 25% rate); the real benches are covered by the
bench tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "capacity_targets.sh"

STAND_IN = """#!{python}
import json, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--out") + 1])
out.mkdir(parents=True)
with open(Path(__file__).parent / "calls.txt", "a") as calls:
    calls.write(" ".join(args) + "\\n")
if "sweep" in args:
    # One sweep per target and round, as the bench writes them; round 3 found no rate.
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 1
    floor = [1240.0, 640.0, None, 2000.0, 3000.0]
    sweeps = [
        {{"target": target, "round": r + 1, "best_rps": best}}
        for r in range(rounds)
        for target, best in (("scoreleads", 10.0), ("transport-floor", floor[r]))
    ]
    (out / "result.json").write_text(json.dumps({{"sweeps": sweeps}}))
"""


# A stand-in for MLServer's set-up: records whether any bench had run before it.
MLSERVER_SETUP = """#!/usr/bin/env bash
here="$(cd "$(dirname "${{BASH_SOURCE[0]}}")/../.." && pwd)"
if [[ -e "$here/.venv/bin/calls.txt" ]]; then echo after > "$here/setup.txt"
else echo before > "$here/setup.txt"; fi
exit {status}
"""


def run_script(
    tmp_path: Path, mlserver_setup_status: int = 0, **env: str
) -> tuple[list[list[str]], str]:
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / SCRIPT.name)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "leadgw").write_text(STAND_IN.format(python=sys.executable))
    (bin_dir / "leadgw").chmod(0o755)
    os.symlink(sys.executable, bin_dir / "python")
    setup = tmp_path / "benchmarks" / "mlserver" / "setup.sh"
    setup.parent.mkdir(parents=True)
    setup.write_text(MLSERVER_SETUP.format(status=mlserver_setup_status))
    setup.chmod(0o755)
    out = tmp_path / "out"
    subprocess.run(
        ["bash", str(tmp_path / "scripts" / SCRIPT.name), str(out)],
        check=True,
        capture_output=True,
        env={**os.environ, **env},
        timeout=120,
    )
    calls = [line.split() for line in (bin_dir / "calls.txt").read_text().splitlines()]
    return calls, (out / "runs.txt").read_text()


def out_name(call: list[str]) -> str:
    return Path(call[call.index("--out") + 1]).name


def test_one_pass_runs_every_target_once_and_the_25_percent_rate_from_the_sweep(
    tmp_path: Path,
) -> None:
    calls, runs = run_script(tmp_path)
    names = [out_name(call) for call in calls]
    assert names == ["o800", "c1", "c8", "c64", "b1000", "sweep", "o25", "tracing"]
    o25 = calls[names.index("o25")]
    # 25% of the floor's median over the rounds that found a rate: 1,240/s and 640/s.
    assert o25[o25.index("--rate") + 1] == "235"
    assert all(call[0] == "bench" and "--no-progress" in call for call in calls)
    assert runs.count("command: leadgw bench") == 8 and "exit:" not in runs


def test_the_sweep_can_reach_past_the_floors_capacity_on_a_fast_host(tmp_path: Path) -> None:
    """On the Zen 5 host of pass 9 the floor passed every step up to 3,417/s (seven steps), which
    left its capacity, and every ratio to it, unknown: the plan's last step must reach 5,000/s."""
    calls, _ = run_script(tmp_path)
    sweep = next(call for call in calls if out_name(call) == "sweep")

    def arg(name: str) -> float:
        return float(sweep[sweep.index(name) + 1])

    last_step = arg("--sweep-start") * arg("--sweep-factor") ** (arg("--sweep-max-steps") - 1)
    assert last_step >= 5_000


def test_repeats_interleave_the_close_targets(tmp_path: Path) -> None:
    calls, runs = run_script(tmp_path, REPEATS="3")
    names = [out_name(call) for call in calls]
    assert names[:6] == ["o800", "c1", "o800-2", "c1-2", "o800-3", "c1-3"]
    assert names[6:] == ["c8", "c64", "b1000", "sweep", "o25", "tracing"]
    assert (
        calls[0][: calls[0].index("--out")] == calls[2][: calls[2].index("--out")]
    )  # same command
    assert "## o800-3" in runs and "## c1-3" in runs


def test_closed_open_and_sweep_runs_take_rounds(tmp_path: Path) -> None:
    """Every closed/open run and the sweep get --rounds (3 unless ROUNDS says); tracing does not
    (it has its own repeats). The 25% rate is from the floor's median over the sweep's rounds."""
    for env, expected in (({}, "3"), ({"ROUNDS": "5"}, "5")):
        folder = tmp_path / (env.get("ROUNDS") or "default")
        folder.mkdir()
        calls, _ = run_script(folder, **env)
        rounds = {
            out_name(call): call[call.index("--rounds") + 1] if "--rounds" in call else None
            for call in calls
        }
        assert rounds == {
            "o800": expected, "c1": expected, "c8": expected, "c64": expected,
            "b1000": expected, "sweep": expected, "o25": expected, "tracing": None,
        }  # fmt: skip
        o25 = next(call for call in calls if out_name(call) == "o25")
        # ROUNDS=5: the median of 1,240, 640, 2,000 and 3,000/s is 1,620/s.
        assert o25[o25.index("--rate") + 1] == {"3": "235", "5": "405"}[expected]


def test_mlserver_is_set_up_before_the_first_run(tmp_path: Path) -> None:
    calls, _ = run_script(tmp_path)
    assert (tmp_path / "setup.txt").read_text() == "before\n"
    assert len(calls) == 8


def test_a_pass_stops_before_measuring_when_mlserver_cannot_be_set_up(tmp_path: Path) -> None:
    try:
        run_script(tmp_path, mlserver_setup_status=1)
    except subprocess.CalledProcessError as failed:
        assert "MLServer could not be set up" in failed.stderr.decode()
    else:
        raise AssertionError("the pass went on without MLServer")
    assert not (tmp_path / ".venv" / "bin" / "calls.txt").exists()  # no bench ran
