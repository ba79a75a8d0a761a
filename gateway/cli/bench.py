"""``leadgw bench``: measure leadgw, its floors and its peers under the same load, in one report.

The suite itself lives in ``benchmarks/``; this module only parses the command line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
from pathlib import Path

from rich.console import Console

from benchmarks.loadgen import LoadShape
from benchmarks.mlserver_peer import DEFAULT_VENV
from benchmarks.progress import NoProgress, RichProgress
from benchmarks.suite import (
    DEFAULT_TARGETS,
    MODES,
    TARGETS,
    BenchConfig,
    BenchError,
    leadgw_serve_command,
    run_bench,
)
from benchmarks.sweep import SweepPlan
from benchmarks.tracing_suite import parse_levels
from gateway.settings import BUNDLED_MODELS, Settings

DESCRIPTION = """\
Benchmark leadgw against its floors and peers with the same load, in one report.

Targets: scoreleads (leadgw LeadService.ScoreLeads), scoreleads-columns (the same leads sent
column-wise in ScoreLeadsRequest.columns), modelinfer (leadgw OIP ModelInfer),
onnx-floor (ONNX Runtime in-process on the same model and batch: the compute floor),
transport-floor (a bare grpc.aio OIP server answering leadgw's response without work: the
transport floor), mlserver (MLServer from benchmarks/.venv-mlserver with the same model), and
any OIP gRPC endpoint with --oip. Modes: closed (N requests in flight), open (fixed or Poisson
arrivals, latency from each request's intended send time), sweep (open-loop steps up to the
highest rate whose p99 meets --slo-ms).

GenAI targets (not in the default set): embed (texts/s through the ONNX embedder), search (notes
search p50/p99 in-process on Qdrant Edge at each --search-notes size, bulk-loaded with random
vectors), notes-search (SearchNotes through a gateway over gRPC at each --search-notes size, the
store's own query time apart, bulk-load and restart times), summary (a gateway with
--summary-notes notes and a loopback LLM stand-in: the gateway's time before the first token,
and ScoreLeads p99 open-loop at --rate with and without --summary-concurrency summaries
streaming). --tracing off,0.01,1.0 runs the leadgw targets
closed-loop once per sampling level instead, each on its own gateway exporting OTLP/gRPC to a
discard collector, and reports their throughput against tracing off.

Serving targets (not in the default set): tenant-flood (one tenant's ScoreLeads p99 open-loop at
--rate, alone and while another tenant floods past its rate limit, closed-loop and open-loop),
shadow (ScoreLeads p99
open-loop with shadow scoring of a second model version off and on).

Writes result.json, report.md and PNG plots to --out. Exit codes: 0 done, 2 bad input or a
target that failed its preflight, 3 the generator could not send the asked open-loop rate.
"""


DEFAULT_HOLD_MS: float = Settings.model_fields["rate_refusal_hold_ms"].default


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _grpc_experiments(text: str) -> str:
    """A GRPC_EXPERIMENTS list, checked as the gateway's ``grpc_experiments`` is."""
    from gateway.grpc_experiments import check

    try:
        return check(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
    return value


def _flood_forms(text: str) -> tuple[str, ...]:
    forms = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [form for form in forms if form not in ("closed", "open")]
    if not forms or unknown:
        raise argparse.ArgumentTypeError(f"expected closed, open or both, not {text!r}")
    return forms


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _gateway_setting(text: str) -> tuple[str, str]:
    """NAME=VALUE, NAME a field of the gateway's settings (what LEADGW_NAME would set)."""
    from gateway.settings import Settings

    name, sep, value = text.partition("=")
    name = name.strip().lower()
    if not sep or name not in Settings.model_fields:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with NAME one of leadgw's settings (e.g. "
            f"guard_embed_priority=idle), not {text!r}"
        )
    return name, value.strip()


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(_positive_int(part.replace("_", "")) for part in _csv(text))


def _levels(text: str) -> tuple[str, ...]:
    try:
        return parse_levels(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of ``leadgw bench``, with its default in the help."""
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    d = "(default: %(default)s)"
    what = parser.add_argument_group("what to measure")
    what.add_argument(
        "--targets",
        type=_csv,
        default=DEFAULT_TARGETS,
        help=f"comma-separated, from {', '.join(TARGETS)} (default: {','.join(DEFAULT_TARGETS)})",
    )
    what.add_argument(
        "--oip",
        action="append",
        default=[],
        metavar="[NAME=]HOST:PORT/MODEL",
        help="also drive this Open Inference Protocol gRPC endpoint (Triton, KServe, MLServer, "
        "...); repeatable",
    )
    what.add_argument(
        "--mode",
        type=_csv,
        default=("closed",),
        help=f"comma-separated, from {', '.join(MODES)} (default: closed)",
    )
    what.add_argument("--model", default="lead_scorer", help=f"model name {d}")
    what.add_argument(
        "--model-repository", type=Path, default=BUNDLED_MODELS, help=f"model repository {d}"
    )
    what.add_argument(
        "--features",
        type=_positive_int,
        help="tensor columns, when the model's config.toml is not at hand (default: from it)",
    )
    what.add_argument(
        "--leadgw-workers",
        type=_positive_int,
        metavar="N",
        help="gateways the bench starts run `leadgw serve --workers N` "
        "(default: leadgw's own, one per usable core)",
    )
    what.add_argument(
        "--leadgw-address",
        metavar="HOST:PORT",
        help="bench a running gateway instead of starting one (server CPU is then not measured)",
    )

    load = parser.add_argument_group("load")
    load.add_argument("--batch", type=_positive_int, default=1, help=f"leads per request {d}")
    load.add_argument(
        "--concurrency", type=_positive_int, default=8, help=f"closed loop: requests in flight {d}"
    )
    load.add_argument(
        "--rate", type=_positive_float, default=200.0, help=f"open loop: requests per second {d}"
    )
    load.add_argument(
        "--arrival", choices=("poisson", "fixed"), default="poisson", help=f"open loop {d}"
    )
    load.add_argument(
        "--duration", type=_positive_float, default=10.0, help=f"measured seconds per run {d}"
    )
    load.add_argument(
        "--warmup", type=_non_negative_float, default=2.0, help=f"unmeasured seconds first {d}"
    )
    load.add_argument(
        "--rounds",
        type=_positive_int,
        default=1,
        help="run every target's load (or sweep) this many times, interleaved (round r "
        "starts with target r); the runs table pools each target's rounds and a table gives "
        "each target's rows/s, p50, p99 and server CPU per request over the transport floor's, "
        "MLServer's and ModelInfer's in the same round, as the median and range over the "
        "rounds; a sweep gives each round's capacity and its ratios the same way; for ratios "
        f"on a shared machine, 3 or more {d}",
    )
    load.add_argument(
        "--processes", type=_positive_int, default=2, help=f"load-generator processes {d}"
    )
    load.add_argument(
        "--channels", type=_positive_int, default=2, help=f"gRPC channels per process {d}"
    )
    load.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=2000,
        help=f"open loop: requests in flight per process before sends wait {d}",
    )
    load.add_argument(
        "--timeout", type=_positive_float, default=5.0, help=f"per-request deadline, seconds {d}"
    )
    load.add_argument(
        "--connect-timeout",
        type=_positive_float,
        default=5.0,
        help=f"seconds to connect and answer the preflight {d}",
    )
    load.add_argument("--seed", type=int, default=1, help=f"random seed for leads, arrivals {d}")

    sweep = parser.add_argument_group("rate sweep (--mode sweep)")
    sweep.add_argument("--slo-ms", type=_positive_float, default=10.0, help=f"p99 SLO {d}")
    sweep.add_argument(
        "--sweep-start", type=_positive_float, default=100.0, help=f"first rate, req/s {d}"
    )
    sweep.add_argument(
        "--sweep-factor", type=float, default=2.0, help=f"rate multiplier per step {d}"
    )
    sweep.add_argument(
        "--sweep-max-steps", type=_positive_int, default=8, help=f"steps before bisection {d}"
    )
    sweep.add_argument(
        "--sweep-refine",
        type=int,
        default=8,
        help=f"most bisection steps after the first failure (fewer once within resolution) {d}",
    )
    sweep.add_argument(
        "--sweep-resolution",
        type=_positive_float,
        default=0.10,
        help=f"bisect until the first failing rate is within this fraction of the best {d}",
    )
    sweep.add_argument(
        "--sweep-retries",
        type=int,
        default=1,
        help="times a step spoiled by a transient (the first step, a failure below a passed "
        f"rate, a failure by errors) is measured again {d}",
    )
    sweep.add_argument(
        "--sweep-step-duration",
        type=_positive_float,
        default=5.0,
        help=f"measured seconds per sweep step {d}",
    )

    peers = parser.add_argument_group("servers and peers")
    peers.add_argument(
        "--mlserver-venv",
        type=Path,
        default=DEFAULT_VENV,
        help="MLServer's own environment, made by benchmarks/mlserver/setup.sh "
        "(default: benchmarks/.venv-mlserver)",
    )
    peers.add_argument(
        "--mlserver-parallel-workers",
        type=int,
        default=0,
        help=f"MLServer parallel_workers; 0 runs inference in its server process {d}",
    )
    peers.add_argument(
        "--server-ready-timeout",
        type=_positive_float,
        default=60.0,
        help=f"seconds to wait for a started server to be ready {d}",
    )
    peers.add_argument(
        "--floor-stall-every",
        type=int,
        default=0,
        help=f"transport floor: freeze the server every N requests (to test the harness) {d}",
    )
    peers.add_argument(
        "--floor-stall-ms", type=_positive_float, default=200.0, help=f"length of a freeze {d}"
    )
    peers.add_argument(
        "--floor-grpc-experiments",
        type=_grpc_experiments,
        metavar="LIST",
        help="transport floor: run it with GRPC_EXPERIMENTS=LIST, e.g. the gateway's own "
        "grpc_experiments (-event_engine_client,-event_engine_listener), to weigh the gateway "
        "against a floor with the same gRPC configuration (default: grpc's defaults)",
    )

    quality = parser.add_argument_group("summary-quality (the summary guard on the evaluation set)")
    quality.add_argument(
        "--quality-llm",
        action="append",
        default=[],
        metavar="NAME=URL/MODEL",
        help="also measure this OpenAI-compatible endpoint besides the loopback fake, e.g. "
        "smollm2=http://127.0.0.1:8080/v1/smollm2-135m-instruct; repeatable",
    )
    quality.add_argument(
        "--quality-styles",
        type=_styles,
        default=("whole", "per_note"),
        metavar="STYLE,STYLE",
        help="summary styles to measure each --quality-llm in (whole, per_note; default: both; "
        "the loopback fake runs whole only)",
    )
    genai = parser.add_argument_group("GenAI targets and tracing (embed, search, summary)")
    genai.add_argument(
        "--search-notes",
        type=_sizes,
        default=(10_000, 100_000),
        metavar="N,N",
        help="search, notes-search: store sizes in notes (default: 10000,100000; 100,000 take "
        "minutes to load and index)",
    )
    genai.add_argument(
        "--search-embedder",
        choices=("all-MiniLM-L6-v2-onnx-int8-dq", "all-MiniLM-L6-v2-onnx-int8"),
        default="all-MiniLM-L6-v2-onnx-int8-dq",
        help="notes-search: the local embedder the gateway runs (LEADGW_EMBEDDINGS_LOCAL; "
        "default: the gateway's default, integer GEMMs), for A/B runs against the float form",
    )
    genai.add_argument(
        "--summary-notes", type=_positive_int, default=10_000, help=f"summary: notes in store {d}"
    )
    genai.add_argument(
        "--summary-concurrency",
        type=_positive_int,
        default=8,
        help=f"summary: summaries kept streaming during the second ScoreLeads run {d}",
    )
    genai.add_argument(
        "--llm-first-token-ms",
        type=_non_negative_float,
        default=50.0,
        help=f"summary: the LLM stand-in's wait before its first text {d}",
    )
    genai.add_argument(
        "--summary-stream-s",
        type=_positive_float,
        default=4.0,
        help=f"summary: how long each background summary streams {d}",
    )
    genai.add_argument(
        "--summary-rounds",
        type=_positive_int,
        default=1,
        help="summary: repeat ScoreLeads alone, held and churn this many times, interleaved, and "
        f"compare p99s of the pooled latencies (evens out a machine's drift) {d}",
    )
    genai.add_argument(
        "--summary-setting",
        type=_gateway_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="summary: also give the gateway the bench starts this setting (LEADGW_NAME=VALUE; "
        "the bench otherwise drops LEADGW_* from its environment), for A/B runs, e.g. "
        "guard_embed_priority=idle or stall_probe=on; repeatable",
    )
    genai.add_argument(
        "--tracing",
        type=_levels,
        default=(),
        metavar="off,0.01,1.0",
        help="run the leadgw targets closed-loop once per level ('off' or a sampling ratio; "
        "'off' is added if missing) and report throughput against tracing off",
    )
    genai.add_argument(
        "--tracing-rounds",
        type=_positive_int,
        default=1,
        help=f"repeat the sequence of --tracing levels, averaging each level {d}",
    )

    serving = parser.add_argument_group("serving targets (notes-search, tenant-flood, shadow)")
    serving.add_argument(
        "--flood-concurrency",
        type=_positive_int,
        default=8,
        help=f"tenant-flood: calls the flooding tenant keeps in flight (closed loop) {d}",
    )
    serving.add_argument(
        "--flood-limit",
        type=_positive_float,
        default=100.0,
        help=f"tenant-flood: the flooding tenant's rate limit, calls/s {d}",
    )
    serving.add_argument(
        "--flood-rounds",
        type=_positive_int,
        default=3,
        help=f"tenant-flood: rounds of the steady tenant alone, then flooded {d}",
    )
    serving.add_argument(
        "--flood-rate",
        type=_positive_float,
        default=None,
        help="tenant-flood: the open-loop flood's rate, calls/s (default: ten times --flood-limit)",
    )
    serving.add_argument(
        "--flood-forms",
        type=_flood_forms,
        default=("closed", "open"),
        help="tenant-flood: the forms of flood measured in each round, comma-separated: closed "
        "(--flood-concurrency in flight: the flood speeds up as refusals get cheaper), open "
        "(--flood-rate calls/s whatever the answers) (default: closed,open)",
    )
    serving.add_argument(
        "--flood-floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tenant-flood: run the same rounds, interleaved, against the floor too: a bare "
        "grpc.aio server on uvloop with the gateway's process count that answers B's ScoreLeads "
        "with canned bytes and refuses every one of A's calls at once (RESOURCE_EXHAUSTED, the "
        "gateway's trailers); the report gives B's ratio at the floor and the gateway's ratio as "
        "a multiple of it (default: on)",
    )
    serving.add_argument(
        "--flood-max-streams",
        type=_positive_int,
        default=None,
        metavar="N",
        help="tenant-flood: the gateway's max_concurrent_streams (calls one connection may have "
        "in flight; the floor keeps gRPC's default) (default: the gateway's, no cap)",
    )
    serving.add_argument(
        "--flood-hold-ms",
        type=_non_negative_float,
        default=DEFAULT_HOLD_MS,
        metavar="MS",
        help="tenant-flood: how long the gateway holds each rate-limit refusal before sending it "
        f"(its rate_refusal_hold_ms; 0: at once, as the floor does) (default: {DEFAULT_HOLD_MS:g}, "
        "the gateway's)",
    )
    serving.add_argument(
        "--shadow-source",
        choices=("train", "copy"),
        default="train",
        help="shadow: the candidate version is trained with seed 7 (`leadgw train`) or a copy "
        f"of the live version {d}",
    )
    serving.add_argument(
        "--shadow-half-capacity",
        action="store_true",
        help="shadow: measure ScoreLeads capacity (closed loop, --concurrency) first and run at "
        "half of it instead of --rate",
    )
    serving.add_argument(
        "--shadow-rounds",
        type=_positive_int,
        default=3,
        help=f"shadow: rounds of shadow off, then on {d}",
    )
    serving.add_argument(
        "--shadow-rate",
        type=float,
        action="append",
        dest="shadow_rates",
        metavar="SHARE",
        help="shadow: the share of leads the shadow compares, in [0, 1] (default: 1; 0: the "
        "shadow on, comparing nothing, a control); repeat it to run the shadow at each rate in "
        "every round, e.g. --shadow-rate 1 --shadow-rate 0.1",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--out", type=Path, help="report folder (default: bench-results/<UTC timestamp>)"
    )
    output.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    output.add_argument("--no-progress", action="store_true", help="no live progress display")


def config_from(args: argparse.Namespace, command: str) -> BenchConfig:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    shape = LoadShape(
        mode="closed",
        concurrency=args.concurrency,
        rate=args.rate,
        arrival=args.arrival,
        warmup_s=args.warmup,
        duration_s=args.duration,
        processes=args.processes,
        channels=args.channels,
        max_in_flight=args.max_in_flight,
        connect_timeout_s=args.connect_timeout,
        drain_s=args.timeout + 1.0,
        seed=args.seed,
    )
    sweep = SweepPlan(
        slo_ms=args.slo_ms,
        start_rate=args.sweep_start,
        factor=args.sweep_factor,
        max_steps=args.sweep_max_steps,
        refine=args.sweep_refine,
        step_duration_s=args.sweep_step_duration,
        resolution=args.sweep_resolution,
        retries=args.sweep_retries,
    )
    return BenchConfig(
        targets=tuple(args.targets),
        oip=tuple(args.oip),
        modes=tuple(args.mode),
        shape=shape,
        sweep=sweep,
        model=args.model,
        model_repository=args.model_repository,
        batch=args.batch,
        features=args.features,
        timeout_s=args.timeout,
        leadgw_address=args.leadgw_address,
        leadgw_command=leadgw_serve_command(args.leadgw_workers),
        server_ready_timeout_s=args.server_ready_timeout,
        mlserver_venv=args.mlserver_venv,
        mlserver_parallel_workers=args.mlserver_parallel_workers,
        floor_stall_every=args.floor_stall_every,
        floor_stall_ms=args.floor_stall_ms,
        floor_grpc_experiments=args.floor_grpc_experiments,
        out=args.out or Path("bench-results") / stamp,
        plots=not args.no_plots,
        command=command,
        rounds=args.rounds,
        search_notes=args.search_notes,
        search_embedder=args.search_embedder,
        summary_notes=args.summary_notes,
        summary_concurrency=args.summary_concurrency,
        llm_first_token_ms=args.llm_first_token_ms,
        summary_stream_s=args.summary_stream_s,
        summary_rounds=args.summary_rounds,
        summary_settings=tuple(args.summary_setting),
        tracing=args.tracing,
        tracing_rounds=args.tracing_rounds,
        flood_concurrency=args.flood_concurrency,
        flood_limit=args.flood_limit,
        flood_rounds=args.flood_rounds,
        flood_rate=args.flood_rate,
        flood_forms=args.flood_forms,
        flood_floor=args.flood_floor,
        flood_max_streams=args.flood_max_streams,
        flood_hold_ms=args.flood_hold_ms,
        shadow_source=args.shadow_source,
        shadow_half_capacity=args.shadow_half_capacity,
        shadow_rounds=args.shadow_rounds,
        shadow_rates=tuple(args.shadow_rates or (1.0,)),
    )


def run(args: argparse.Namespace) -> int:
    """Run the bench; one line on stderr and a non-zero code when it cannot."""
    console = Console(stderr=True)
    command = "leadgw bench " + shlex.join(sys.argv[2:] if _via_cli() else sys.argv[1:])
    if "summary-quality" in args.targets:
        code = _summary_quality(args)
        args.targets = [t for t in args.targets if t != "summary-quality"]
        if code or not args.targets:
            return code
    try:
        if args.sweep_factor <= 1:
            raise BenchError("--sweep-factor must be greater than 1")
        config = config_from(args, command)
        if args.no_progress or not console.is_terminal:
            outcome = run_bench(config, NoProgress(console))
        else:
            with RichProgress(console) as progress:
                outcome = run_bench(config, progress)
    except BenchError as exc:
        print(f"leadgw bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leadgw bench: interrupted", file=sys.stderr)
        return 130
    print(outcome.markdown_path.read_text())
    print(f"report: {outcome.markdown_path}  results: {outcome.json_path}", file=sys.stderr)
    if outcome.message:
        print(f"leadgw bench: error: {outcome.message}", file=sys.stderr)
    return outcome.exit_code


def _styles(text: str) -> tuple[str, ...]:
    styles = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in styles if s not in ("whole", "per_note")]
    if bad or not styles:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole and/or per_note")
    return styles


def _summary_quality(args: argparse.Namespace) -> int:
    """The summary guard on the evaluation set, per model: a table on stdout and its JSON and
    Markdown under --out."""
    import asyncio
    import json

    from benchmarks.summary_quality import QualityLLM, markdown, run_quality

    try:
        llms = [QualityLLM.parse(text) for text in args.quality_llm]
    except ValueError as exc:
        print(f"leadgw bench: error: {exc}", file=sys.stderr)
        return 2
    rows = asyncio.run(run_quality(llms, styles=args.quality_styles))
    out = args.out or Path("bench-results") / dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows)
    (out / "summary-quality.md").write_text(table)
    (out / "summary-quality.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table)
    print(f"report: {out / 'summary-quality.md'}", file=sys.stderr)
    return 0


def _via_cli() -> bool:
    return len(sys.argv) > 1 and sys.argv[1] == "bench"
