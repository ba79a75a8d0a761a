"""A worker's CPU per call, one source tree against another: ``leadgw serve`` (one process,
its defaults) from each tree in turn, one request at a time from a blocking gRPC client.

The bench's two workers and load-generator processes share a 2-core machine with the server, so
a change worth a few percent of a request's CPU drowns in their noise (docs/perf). Here one
server process runs at a time, the client is one thread, and the server's CPU is read from
``/proc`` over the calls: rounds alternate the trees (A B, B A, ...) and the report gives each
tree's median, and how many rounds each won. Run from the repository root::

    python scripts/serve_cpu_ab.py TREE_A TREE_B [--request columns-1000] [--calls 1500]
        [--rounds 6]

A tree is a directory holding leadgw's sources (``git archive <commit> | tar -x -C DIR``,
with ``leadgw_client/pb`` copied in: it is generated, not committed). Requests: ``columns-1000``
(column-wise ScoreLeads of 1,000 leads), ``leads-1`` (ScoreLeads of one lead), ``infer-1`` and
``infer-1000`` (ModelInfer); the bench's synthetic leads, seed 1.

``--setting NAME=VALUE`` gives both servers a setting (as ``LEADGW_NAME=VALUE``); ``--setting-a``
and ``--setting-b`` give it to one only, so that one tree can be compared with itself under two
configurations. For example, what a Prometheus endpoint costs a call::

    python scripts/serve_cpu_ab.py . . --request leads-1 --setting-b metrics_port=0

``--cut-a STAGES`` and ``--cut-b STAGES`` run that side's server with stages of a call cut out
(``scripts/cut_stages_serve.py``: ``servicer``, ``chain``, ``telemetry``, ``rate-limits``), to
weigh a stage by what the whole server's CPU per call loses without it; for example what the
telemetry wrapper costs a ScoreLeads call::

    python scripts/serve_cpu_ab.py . . --request leads-1 --cut-b telemetry

``--api-key KEY`` sends ``authorization: Bearer KEY`` with every call, for servers given a keys
file (``--setting keys_file=keys.toml``; ``leadgw keys create`` makes both).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.leads import (  # noqa: E402
    as_matrix,
    load_schema,
    model_infer_request,
    random_rows,
    score_columns_request,
    score_leads_request,
)
from gateway.settings import BUNDLED_MODELS  # noqa: E402
from scripts.cut_stages_serve import CUTS  # noqa: E402

SCORE = "/leadgw.v1.LeadService/ScoreLeads"
INFER = "/inference.GRPCInferenceService/ModelInfer"
READY = re.compile(r"listening on (\S+) ")


def requests() -> dict[str, tuple[str, bytes]]:
    schema = load_schema(BUNDLED_MODELS, "lead_scorer")

    def rows(n: int) -> list[dict[str, object]]:
        return random_rows(schema, n, random.Random(1))

    model = "lead_scorer"
    return {
        "columns-1000": (
            SCORE,
            score_columns_request(schema, rows(1000), model).SerializeToString(),
        ),
        "leads-1": (SCORE, score_leads_request(schema, rows(1), model).SerializeToString()),
        "infer-1": (
            INFER,
            model_infer_request(as_matrix(schema, rows(1)), model).SerializeToString(),
        ),
        "infer-1000": (
            INFER,
            model_infer_request(as_matrix(schema, rows(1000)), model).SerializeToString(),
        ),
    }


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(
    tree: Path,
    method: str,
    payload: bytes,
    calls: int,
    warmup: int,
    settings: dict[str, str] | None = None,
    api_key: str | None = None,
    cut: str = "",
) -> tuple[float, float]:
    """(server CPU µs per call, p50 µs) of ``calls`` calls to a fresh server from ``tree``,
    given ``settings`` (setting name → value) in its environment, with the stages in ``cut``
    cut out (``scripts/cut_stages_serve.py``)."""
    with tempfile.TemporaryDirectory(prefix="leadgw-cpu-ab-") as data:
        env = dict(os.environ, PYTHONPATH=str(tree))
        env.update({f"LEADGW_{name.upper()}": value for name, value in (settings or {}).items()})
        serve = (
            [str(ROOT / "scripts" / "cut_stages_serve.py"), "--cut", cut]
            if cut
            else ["-m", "gateway", "serve"]
        )
        command = [sys.executable, *serve, "--port", "0", "--workers", "1", "--data-dir", data]
        server = subprocess.Popen(
            command, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        try:
            address = _ready_address(server)
            with grpc.insecure_channel(address) as channel:
                rpc: Callable[..., bytes] = channel.unary_unary(method)
                metadata = () if api_key is None else (("authorization", f"Bearer {api_key}"),)

                def call(request: bytes) -> bytes:
                    return rpc(request, timeout=30, metadata=metadata)

                for _ in range(warmup):
                    call(payload)
                time.sleep(0.2)
                before = process_cpu_s(server.pid)
                latencies = []
                for _ in range(calls):
                    started = time.perf_counter()
                    call(payload)
                    latencies.append(time.perf_counter() - started)
                cpu = process_cpu_s(server.pid) - before
        finally:
            server.terminate()
            server.wait(timeout=30)
    return cpu / calls * 1e6, statistics.median(latencies) * 1e6


def _settings(parser: argparse.ArgumentParser, given: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` strings → {name: value}, names checked against leadgw's settings."""
    from gateway.settings import Settings

    settings = {}
    for item in given:
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in Settings.model_fields:
            parser.error(f"setting {item!r}: expected NAME=VALUE with NAME a leadgw setting")
        settings[name] = value
    return settings


def _ready_address(server: subprocess.Popen[str]) -> str:
    assert server.stdout is not None
    for line in server.stdout:
        found = READY.search(line)
        if found:
            return found.group(1)
    raise RuntimeError(f"the server exited ({server.wait()}) before its ready line")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs=2, type=Path, help="two source trees: A and B")
    parser.add_argument("--request", choices=sorted(requests()), default="columns-1000")
    parser.add_argument("--calls", type=int, default=1500, help="timed calls per round")
    parser.add_argument("--warmup", type=int, default=300, help="untimed calls first")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per tree, alternating")
    for flag, whom in (("--setting", "both servers"), ("--setting-a", "A"), ("--setting-b", "B")):
        parser.add_argument(
            flag, action="append", default=[], metavar="NAME=VALUE",
            help=f"a leadgw setting for {whom} (LEADGW_NAME=VALUE); repeatable",
        )  # fmt: skip
    for flag, whom in (("--cut-a", "A"), ("--cut-b", "B")):
        parser.add_argument(
            flag, default="", metavar="STAGES",
            help=f"stages cut out of {whom}'s server, comma-separated, from "
            f"{', '.join(CUTS)} (scripts/cut_stages_serve.py)",
        )  # fmt: skip
    parser.add_argument("--api-key", help="sent as 'authorization: Bearer KEY' with every call")
    args = parser.parse_args()
    cuts = {"A": args.cut_a, "B": args.cut_b}
    for side, given in cuts.items():
        unknown = {s.strip() for s in given.split(",") if s.strip()} - set(CUTS)
        if unknown:
            parser.error(f"--cut-{side.lower()}: unknown {sorted(unknown)}; from {', '.join(CUTS)}")
    settings = {
        name: _settings(parser, [*args.setting, *own])
        for name, own in (("A", args.setting_a), ("B", args.setting_b))
    }
    for tree in args.trees:
        if not (tree / "gateway" / "__main__.py").is_file():
            parser.error(f"{tree} holds no leadgw sources (gateway/__main__.py)")
    method, payload = requests()[args.request]
    names = ("A", "B")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            tree = args.trees[names.index(name)]
            cpu, p50 = one_round(
                tree, method, payload, args.calls, args.warmup, settings[name], args.api_key,
                cuts[name],
            )  # fmt: skip
            results[name].append((cpu, p50))
            print(
                f"round {r + 1} {name}: server CPU {cpu:9.1f} µs/call  p50 {p50:9.1f} µs",
                flush=True,
            )
    for name, tree in zip(names, args.trees, strict=True):
        cpu = statistics.median(c for c, _ in results[name])
        p50 = statistics.median(p for _, p in results[name])
        given = " ".join(f"{k}={v}" for k, v in settings[name].items())
        if cuts[name]:
            given = f"{given} cut={cuts[name]}".strip()
        print(f"{name} median: server CPU {cpu:9.1f} µs/call  p50 {p50:9.1f} µs  ({tree}"
              f"{', ' + given if given else ''})")  # fmt: skip
    wins = sum(b[0] < a[0] for a, b in zip(results["A"], results["B"], strict=True))
    print(f"B used less CPU than A in {wins} of {args.rounds} rounds ({args.request})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
