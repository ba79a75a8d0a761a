#!/usr/bin/env bash
# Run every issue-15 capacity target's bench, one after another, into one folder.
#
#   scripts/capacity_targets.sh [OUT]          # OUT defaults to bench-results/capacity-<UTC time>
#   LEADGW_BENCH_LOCK=/path/to/lock scripts/capacity_targets.sh
#
# Each run gets its own report folder (OUT/<name>/report.md and result.json); OUT/runs.txt
# records, per run, the command, the commit, the UTC start and end and the load average at
# each, so every figure in a docs/perf report can be traced to its run. With LEADGW_BENCH_LOCK
# set, each run holds that file's lock (flock), so engineers sharing a machine measure one at
# a time. Expect about 30 minutes on a 2-core machine, a third of it the sweep.
#
# The closed- and open-loop runs (o800, c1, c8, c64, b1000, o25) and the sweep each run their
# targets ROUNDS times (default 3), interleaved (`leadgw bench --rounds`): each report then gives
# every ratio to the floor, MLServer and ModelInfer as the median and range over rounds read
# within each round, which a shared machine's drift moves far less than one run's ratio.
#
# The sweep's plan: from 300/s, x1.5 per step (300, 450, 675, 1,012, ... at most 8 steps, 5,126/s) until
# p99 passes 10 ms, then bisection to within 10%; each step is 2 s of warm-up and 4 s measured,
# about 7 s with the generators' start, and a failed step that may be a transient is measured
# again. That is 6-10 steps per target, about 3.5 minutes per round for its four targets: about
# 10 minutes (and that long holding the lock) with ROUNDS=3 (2026-11-29: 89 steps in 10 min 20 s).
# Six steps (up to 2,278/s) left the floor's capacity unknown on a quiet host (pass 6, where it
# passed every step): hence the seventh; seven (up to 3,417/s) left it unknown on the faster Zen 5
# host of pass 9: hence the eighth. A step past a target's knee costs one failed step, so the
# eighth is only ever run by a target that passed 3,417/s.
#
# MLServer is set up first if its environment is missing (benchmarks/mlserver/setup.sh).
#
#   ROUNDS=5 scripts/capacity_targets.sh       # more rounds per run
#   REPEATS=3 scripts/capacity_targets.sh      # o800 and c1 three times each (o800-2, c1-2, ...)
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-bench-results/capacity-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
bench=(.venv/bin/leadgw bench --no-progress --no-plots --warmup 2)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

# Several targets are ratios to MLServer, which the bench skips (with only a warning) when its
# environment is missing, as on a fresh checkout: set it up before the first run (about a
# minute once, a no-op after), so that a pass never lacks it and never installs it while
# measuring.
if ! benchmarks/mlserver/setup.sh >&2; then
    echo "capacity_targets: MLServer could not be set up (benchmarks/mlserver/setup.sh);" \
        "its targets need it" >&2
    exit 1
fi

run() {
    local name=$1
    shift
    local cmd=("${bench[@]}" "$@" --out "$out/$name")
    if [[ -n ${LEADGW_BENCH_LOCK:-} ]]; then
        cmd=(flock "$LEADGW_BENCH_LOCK" "${cmd[@]}")
    fi
    {
        echo "## $name"
        echo "command: leadgw bench $* (commit $commit)"
        echo "start: $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    } >>"$out/runs.txt"
    echo "== $name: leadgw bench $*" >&2
    "${cmd[@]}" >"$out/$name.log" 2>&1 || echo "exit: $?" >>"$out/runs.txt"
    echo "end: $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/runs.txt"
}

floor=scoreleads,modelinfer,transport-floor
repeats=${REPEATS:-1}
rounds=(--rounds "${ROUNDS:-3}")
for ((i = 1; i <= repeats; i++)); do
    suffix=$([[ $i -gt 1 ]] && echo "-$i" || true)
    run "o800$suffix" --targets "$floor" --mode open --rate 800 --duration 10 "${rounds[@]}"
    run "c1$suffix" --targets "$floor",mlserver --mode closed --concurrency 1 --duration 10 \
        "${rounds[@]}"
done
run c8 --targets "$floor" --mode closed --concurrency 8 --duration 10 "${rounds[@]}"
run c64 --targets "$floor",mlserver --mode closed --concurrency 64 --duration 10 "${rounds[@]}"
run b1000 --targets scoreleads-columns,modelinfer --batch 1000 --mode closed --concurrency 1 \
    --duration 10 "${rounds[@]}"
# About 3.5 minutes per round (see the header).
run sweep --targets "$floor",mlserver --mode sweep --sweep-start 300 --sweep-factor 1.5 \
    --sweep-max-steps 8 --sweep-step-duration 4 --slo-ms 10 "${rounds[@]}"
# 25% of the floor's capacity as this run's sweep found it: the median over the rounds that
# found a passing rate (result.json's sweeps hold every round's sweep).
floor_rps=$(.venv/bin/python - "$out/sweep/result.json" <<'PY'
import json, statistics, sys
sweeps = json.load(open(sys.argv[1])).get("sweeps", [])
best = [s["best_rps"] for s in sweeps if s["target"] == "transport-floor" and s["best_rps"]]
print(statistics.median(best) if best else "")
PY
) || floor_rps=""
if [[ -n $floor_rps ]]; then
    rate=$(.venv/bin/python -c "print(round($floor_rps * 0.25))")
    run o25 --targets "$floor" --mode open --rate "$rate" --duration 10 "${rounds[@]}"
else
    echo "o25: skipped, the sweep found no passing rate for the floor" | tee -a "$out/runs.txt" >&2
fi
run tracing --targets scoreleads,modelinfer --tracing off,0.01,1.0 --tracing-rounds 3 --duration 8 --channels 8
echo "done: $out" >&2
