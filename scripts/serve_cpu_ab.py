"""A worker's CPU per call, one source tree against another: ``leadgw serve`` (one process,
its defaults) from each tree, one request at a time from a blocking gRPC client.

The bench's two workers and load-generator processes share a 2-core machine with the server, so
a change worth a few percent of a request's CPU drowns in their noise (docs/perf). Here the
client is one thread making one call at a time, and each server's CPU is read from ``/proc``
over its calls. A round starts a fresh server from each tree, both at once, and makes each
side's calls in ``--blocks`` blocks taken in turn (A B, B A, ...), so that what the machine does
meanwhile falls on both sides alike (``--blocks 1``: A's server, then B's). Rounds alternate
which side goes first; the report gives each tree's median, how many rounds each won, and the
mean paired difference with its 90% interval. Run from the repository root::

    python scripts/serve_cpu_ab.py TREE_A TREE_B [--request columns-1000] [--calls 1500]
        [--rounds 6] [--blocks 10]

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

``--request-b R`` has B's server answer another request than A's (usually from the same tree),
to weigh what one request costs over another; for example what ScoreLeads' named features and
reasons cost a one-lead call over ModelInfer's one row::

    python scripts/serve_cpu_ab.py . . --request infer-1 --request-b leads-1

``--api-key KEY`` sends ``authorization: Bearer KEY`` with every call, for servers given a keys
file (``--setting keys_file=keys.toml``; ``leadgw keys create`` makes both). ``--traceparent
HEADER`` sends a caller's W3C trace context with every call (with tracing on through the
``OTEL_*`` environment, which both servers inherit).
"""

from __future__ import annotations

import argparse
import contextlib
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
from benchmarks.tracing_suite import t90  # noqa: E402
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


def process_cpu_ns(pid: int) -> int:
    """CPU time of a process's live threads in ns (``/proc/PID/task/*/schedstat``): finer than
    ``/proc/PID/stat``'s clock ticks, which a short block of calls needs."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # the thread ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


class _Side:
    """One side's fresh ``leadgw serve`` (one worker), from ``tree`` with ``settings`` in its
    environment and the stages in ``cut`` cut out (``scripts/cut_stages_serve.py``), and a
    blocking client of it."""

    def __init__(
        self,
        tree: Path,
        method: str,
        settings: dict[str, str] | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
        cut: str = "",
    ) -> None:
        self._data = tempfile.TemporaryDirectory(prefix="leadgw-cpu-ab-")
        env = dict(os.environ, PYTHONPATH=str(tree))
        env.update({f"LEADGW_{name.upper()}": value for name, value in (settings or {}).items()})
        serve = (
            [str(ROOT / "scripts" / "cut_stages_serve.py"), "--cut", cut]
            if cut
            else ["-m", "gateway", "serve"]
        )
        command = [
            sys.executable, *serve, "--port", "0", "--workers", "1", "--data-dir", self._data.name,
        ]  # fmt: skip
        self.server = subprocess.Popen(
            command, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        try:
            self._channel = grpc.insecure_channel(_ready_address(self.server))
        except BaseException:
            self.close()
            raise
        self._rpc: Callable[..., bytes] = self._channel.unary_unary(method)
        self._metadata = metadata
        self.cpu_ns = 0
        self.latencies: list[float] = []

    def warm(self, payload: bytes, calls: int) -> None:
        for _ in range(calls):
            self._rpc(payload, timeout=30, metadata=self._metadata)

    def timed(self, payload: bytes, calls: int) -> None:
        """``calls`` calls, one at a time; their latencies and the server's CPU over them added
        to this side's."""
        rpc, metadata, latencies = self._rpc, self._metadata, self.latencies
        before = process_cpu_ns(self.server.pid)
        for _ in range(calls):
            started = time.perf_counter()
            rpc(payload, timeout=30, metadata=metadata)
            latencies.append(time.perf_counter() - started)
        self.cpu_ns += process_cpu_ns(self.server.pid) - before

    def result(self) -> tuple[float, float]:
        """(server CPU µs per timed call, p50 µs)."""
        return self.cpu_ns / len(self.latencies) / 1e3, statistics.median(self.latencies) * 1e6

    def close(self) -> None:
        if getattr(self, "_channel", None) is not None:
            self._channel.close()
        self.server.terminate()
        self.server.wait(timeout=30)
        self._data.cleanup()


def one_round(
    tree: Path,
    method: str,
    payload: bytes,
    calls: int,
    warmup: int,
    settings: dict[str, str] | None = None,
    metadata: tuple[tuple[str, str], ...] = (),
    cut: str = "",
) -> tuple[float, float]:
    """(server CPU µs per call, p50 µs) of ``calls`` calls to a fresh server from ``tree``,
    given ``settings`` (setting name → value) in its environment, with the stages in ``cut``
    cut out (``scripts/cut_stages_serve.py``)."""
    side = _Side(tree, method, settings, metadata, cut)
    try:
        side.warm(payload, warmup)
        time.sleep(0.2)
        side.timed(payload, calls)
        return side.result()
    finally:
        side.close()


def block_plan(names: list[str], calls: int, blocks: int) -> list[tuple[str, int]]:
    """(side, calls) in the order they are made: ``calls`` per side in ``blocks`` blocks as
    equal as can be, the sides' order reversed every block (A B, B A, ...)."""
    plan = []
    for block in range(blocks):
        size = calls // blocks + (1 if block < calls % blocks else 0)
        plan.extend((name, size) for name in (names if block % 2 == 0 else names[::-1]))
    return plan


def interleaved_round(
    sides: dict[str, tuple[Path, dict[str, str], str]],
    requests_by_side: dict[str, tuple[str, bytes]],
    calls: int,
    warmup: int,
    blocks: int,
    metadata: tuple[tuple[str, str], ...] = (),
) -> dict[str, tuple[float, float]]:
    """Both sides' servers at once (``sides``: name → tree, settings, cut), each sent its own
    request (``requests_by_side``: name → method, payload), their ``calls`` calls each made in
    ``blocks`` blocks taken in turn (A B, B A, ...), so that what the machine does meanwhile
    falls on both alike: (server CPU µs per call, p50 µs) by name."""
    started: dict[str, _Side] = {}
    try:
        for name, (tree, settings, cut) in sides.items():
            started[name] = _Side(tree, requests_by_side[name][0], settings, metadata, cut)
        for name, side in started.items():
            side.warm(requests_by_side[name][1], warmup)
        time.sleep(0.2)
        for name, size in block_plan(list(started), calls, blocks):
            started[name].timed(requests_by_side[name][1], size)
        return {name: side.result() for name, side in started.items()}
    finally:
        for side in started.values():
            side.close()


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


def _print_round(index: int, name: str, result: tuple[float, float]) -> None:
    cpu, p50 = result
    print(f"round {index + 1} {name}: server CPU {cpu:9.1f} µs/call  p50 {p50:9.1f} µs", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs=2, type=Path, help="two source trees: A and B")
    parser.add_argument("--request", choices=sorted(requests()), default="columns-1000")
    parser.add_argument(
        "--request-b", choices=sorted(requests()),
        help="B's request, if not --request's (to compare two requests on one tree)",
    )  # fmt: skip
    parser.add_argument("--calls", type=int, default=1500, help="timed calls per round")
    parser.add_argument("--warmup", type=int, default=300, help="untimed calls first")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per tree, alternating")
    parser.add_argument(
        "--blocks", type=int, default=10,
        help="N > 1: a round runs both servers at once, its calls made in N blocks per side "
        "taken in turn, so that the machine's drift falls on both sides alike; 1: A's server, "
        "then B's (paired differences ~3.6 times as spread on the reference host)",
    )  # fmt: skip
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
    parser.add_argument(
        "--traceparent", metavar="HEADER",
        help="a W3C traceparent sent with every call (a caller that traces its own calls), "
        "e.g. 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )  # fmt: skip
    args = parser.parse_args()
    metadata: tuple[tuple[str, str], ...] = ()
    if args.api_key is not None:
        metadata += (("authorization", f"Bearer {args.api_key}"),)
    if args.traceparent is not None:
        metadata += (("traceparent", args.traceparent),)
    if args.blocks < 1 or args.calls < 1:
        parser.error("--blocks and --calls: at least 1")
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
    request_names = {"A": args.request, "B": args.request_b or args.request}
    requests_by_side = {name: requests()[request] for name, request in request_names.items()}
    names = ("A", "B")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    trees = dict(zip(names, args.trees, strict=True))
    sides = {name: (trees[name], settings[name], cuts[name]) for name in names}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        if args.blocks > 1:
            round_results = interleaved_round(
                {name: sides[name] for name in order}, requests_by_side, args.calls,
                args.warmup, args.blocks, metadata,
            )  # fmt: skip
        else:
            round_results = {}
            for name in order:
                tree, given, cut = sides[name]
                method, payload = requests_by_side[name]
                round_results[name] = one_round(
                    tree, method, payload, args.calls, args.warmup, given, metadata, cut
                )
                _print_round(r, name, round_results[name])
        for name in order:
            results[name].append(round_results[name])
            if args.blocks > 1:
                _print_round(r, name, round_results[name])
    for name, tree in zip(names, args.trees, strict=True):
        cpu = statistics.median(c for c, _ in results[name])
        p50 = statistics.median(p for _, p in results[name])
        given = " ".join(f"{k}={v}" for k, v in settings[name].items())
        if cuts[name]:
            given = f"{given} cut={cuts[name]}".strip()
        if args.request_b:
            given = f"{given} request={request_names[name]}".strip()
        print(f"{name} median: server CPU {cpu:9.1f} µs/call  p50 {p50:9.1f} µs  ({tree}"
              f"{', ' + given if given else ''})")  # fmt: skip
    pairs = list(zip(results["A"], results["B"], strict=True))
    wins = sum(b[0] < a[0] for a, b in pairs)
    compared = args.request if not args.request_b else f"{args.request} against {args.request_b}"
    print(f"B used less CPU than A in {wins} of {args.rounds} rounds ({compared})")
    differences = [b[0] - a[0] for a, b in pairs]
    if len(differences) > 1:
        mean = statistics.fmean(differences)
        half = t90(len(differences) - 1) * statistics.stdev(differences) / len(differences) ** 0.5
        print(
            f"B - A server CPU: median {statistics.median(differences):+.1f} µs/call, mean "
            f"{mean:+.1f} (90% CI {mean - half:+.1f} to {mean + half:+.1f}) over {len(pairs)} "
            "paired rounds"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
