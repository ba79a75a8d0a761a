"""``scripts/batcher_cost.py``, ``llm_stream_cost.py``, ``summary_cpu.py``, ``serve_cpu_ab.py``,
``infer_cost_parts.py``, ``registered_methods_cost.py``, ``metrics_cost.py``, ``auth_cost.py`` and
``cold_calls.py``, ``ort_cold_run.py``, ``servicer_loop.py``
run and report what they measured
(the figures themselves are the bench's business, not a test's)."""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)


def _run(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=100
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_batcher_cost_compares_a_baseline_with_the_current_batcher(tmp_path: Path) -> None:
    baseline = tmp_path / "old_batcher.py"
    baseline.write_text((ROOT / "runtimes" / "batcher.py").read_text())
    out = _run("scripts/batcher_cost.py", "--n", "50", "--reps", "2", "--baseline", str(baseline))
    figures = re.findall(r"^(\w+)\s+submit_with_stats, 1 row: min ([\d.]+) µs", out, re.M)
    assert [name for name, _ in figures] == ["baseline", "current"]
    assert all(float(us) > 0 for _, us in figures)
    assert re.search(r"session.run alone, 1 row: [\d.]+ µs", out)


def test_llm_stream_cost_streams_every_chunk_through_the_gateways_client() -> None:
    # The script itself raises if an answer does not carry exactly --chunks texts.
    out = _run(
        "scripts/llm_stream_cost.py",
        *("--chunks", "5", "--n", "4", "--reps", "2", "--gap-ms", "1", "--concurrency", "2"),
        *("--http-client", "aiohttp,httpx", "--event-loop", "uvloop"),
    )
    found = re.findall(r"\((\w+)\), 5 chunks: event-loop CPU per answer min ([\d.]+) ms", out)
    assert [kind for kind, _ in found] == ["aiohttp", "httpx"], out
    assert all(float(ms) > 0 for _, ms in found), out
    assert out.count("uvloop") == 2, out


def test_summary_cpu_reports_a_real_gateways_cpu_per_summary_by_thread() -> None:
    # Settings reach the gateway: with the httpx transport the summaries still go through, and
    # with two workers they run in the summaries process, whose CPU is reported with its role.
    out = _run(
        "scripts/summary_cpu.py",
        "--summaries",
        "3",
        "--warmup",
        "1",
        "--setting",
        "llm_http_client=httpx",
        "--setting",
        "workers=2",
    )
    threads = re.findall(r"^pid \d+ thread +\d+ \S+ +([\d.]+) ms per summary$", out, re.M)
    assert threads, out
    summaries = re.search(r"^process \d+ summaries process \(nice 19\) +([\d.]+) ms", out, re.M)
    assert summaries and float(summaries.group(1)) > 0, out
    total = re.search(r"^total ([\d.]+) ms per summary; fallbacks: (.*)$", out, re.M)
    assert total and float(total.group(1)) > 0, out
    assert total.group(2) == "none"  # every summary went through the LLM and the guard


def test_registered_methods_cost_measures_both_kinds_of_server() -> None:
    out = _run("scripts/registered_methods_cost.py", "--registered", "3", "--calls", "400",
               "--rounds", "2")  # fmt: skip
    runs = re.findall(r"^round (\d): +(\d+) registered: server CPU +([\d.]+) µs/call", out, re.M)
    assert sorted((r, kind) for r, kind, _ in runs) == [
        ("1", "0"),
        ("1", "3"),
        ("2", "0"),
        ("2", "3"),
    ]
    medians = re.findall(r"^ +(\d+) registered: median server CPU ([\d.]+) µs/call", out, re.M)
    assert sorted(kind for kind, _ in medians) == ["0", "3"]
    assert all(float(cpu) > 0 for _, _, cpu in runs)


def test_metrics_cost_reports_each_way_of_recording() -> None:
    out = _run("scripts/metrics_cost.py", "--n", "200", "--reps", "2")
    figures = dict(re.findall(r"^  (.+?) +([\d.]+) µs$", out, re.M))
    assert set(figures) == {"local histograms", "the SDK's histograms", "no-op (no reader)"}
    assert all(float(us) > 0 for us in figures.values())


def test_auth_cost_reports_each_key_count() -> None:
    out = _run("scripts/auth_cost.py", "--keys", "2,50", "--n", "100", "--reps", "2")
    figures = re.findall(r"^ +(\d+) keys: +([\d.]+) µs a call$", out, re.M)
    assert [count for count, _ in figures] == ["2", "50"]
    assert all(float(us) > 0 for _, us in figures)
    audit = re.search(r"^audit line \(allowed, JSON\): +([\d.]+) µs a call$", out, re.M)
    assert audit and float(audit.group(1)) > 0, out


def test_serve_cpu_ab_gives_each_tree_its_own_settings(tmp_path: Path) -> None:
    """Tree B with a Prometheus endpoint on a port the script picks (metrics_port=0): the
    server starts with it (a bad value would stop it before its ready line)."""
    out = _run("scripts/serve_cpu_ab.py", str(ROOT), str(ROOT), "--request", "infer-1",
               "--calls", "20", "--warmup", "5", "--rounds", "1",
               "--setting", "log_level=WARNING", "--setting-b", "metrics_port=0")  # fmt: skip
    medians = dict(re.findall(r"^([AB]) median: .*\((.*)\)$", out, re.M))
    assert medians["A"] == f"{ROOT}, log_level=WARNING"
    assert medians["B"] == f"{ROOT}, log_level=WARNING metrics_port=0"


def test_serve_cpu_ab_settings_reach_the_server() -> None:
    """A value the server refuses stops tree B's server before its ready line."""
    out = subprocess.run(
        [sys.executable, "scripts/serve_cpu_ab.py", str(ROOT), str(ROOT), "--request", "infer-1",
         "--calls", "5", "--warmup", "1", "--rounds", "1", "--blocks", "1",
         "--setting-b", "rate_requests_per_s=-1"],
        cwd=ROOT, capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert out.returncode != 0
    assert re.search(r"^round 1 A: server CPU", out.stdout, re.M)
    assert not re.search(r"^round 1 B", out.stdout, re.M)
    assert "before its ready line" in out.stderr


def test_serve_cpu_ab_sends_the_api_key_a_keys_file_needs(tmp_path: Path) -> None:
    from gateway.auth import hash_key

    keys = tmp_path / "keys.toml"
    keys.write_text(
        f'[[keys]]\nname = "ab"\ntenant = "acme"\nscopes = ["score"]\n'
        f'sha256 = "{hash_key("lgw_ab_test_key")}"\n'
    )
    common = [sys.executable, "scripts/serve_cpu_ab.py", str(ROOT), str(ROOT), "--request",
              "infer-1", "--calls", "5", "--warmup", "1", "--rounds", "1",
              "--setting", f"keys_file={keys}"]  # fmt: skip
    with_key = subprocess.run(
        [*common, "--api-key", "lgw_ab_test_key"], cwd=ROOT, capture_output=True, text=True,
        timeout=100,
    )  # fmt: skip
    assert with_key.returncode == 0, with_key.stderr
    assert re.search(r"^B median: server CPU +[\d.]+ µs/call", with_key.stdout, re.M)
    without = subprocess.run(common, cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert without.returncode != 0
    assert "UNAUTHENTICATED" in without.stderr


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--setting-a", "nope=1", "setting 'nope=1'"), ("--cut-b", "nope", "--cut-b: unknown")],
)
def test_serve_cpu_ab_refuses_an_unknown_setting_or_cut(
    flag: str, value: str, message: str
) -> None:
    out = subprocess.run(
        [sys.executable, "scripts/serve_cpu_ab.py", str(ROOT), str(ROOT), flag, value],
        cwd=ROOT, capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert out.returncode == 2
    assert message in out.stderr


def test_serve_cpu_ab_alternates_two_trees_and_reports_each() -> None:
    out = _run("scripts/serve_cpu_ab.py", str(ROOT), str(ROOT), "--request", "leads-1",
               "--calls", "40", "--warmup", "5", "--rounds", "2")  # fmt: skip
    rounds = re.findall(
        r"^round (\d) ([AB]): server CPU +([\d.]+) µs/call +p50 +([\d.]+) µs", out, re.M
    )
    assert [(r, tree) for r, tree, _, _ in rounds] == [
        ("1", "A"),
        ("1", "B"),
        ("2", "B"),
        ("2", "A"),
    ]
    assert all(float(p50) > 0 for *_, p50 in rounds)
    assert len(re.findall(r"^[AB] median: server CPU", out, re.M)) == 2
    assert re.search(r"^B used less CPU than A in [0-2] of 2 rounds \(leads-1\)$", out, re.M)


def test_serve_cpu_ab_blocks_share_the_calls_out_in_turn() -> None:
    block_plan = runpy.run_path(str(ROOT / "scripts" / "serve_cpu_ab.py"))["block_plan"]
    assert block_plan(["A", "B"], 10, 3) == [
        ("A", 4), ("B", 4), ("B", 3), ("A", 3), ("A", 3), ("B", 3),
    ]  # fmt: skip
    assert block_plan(["B", "A"], 2, 4) == [
        ("B", 1), ("A", 1), ("A", 1), ("B", 1), ("B", 0), ("A", 0), ("A", 0), ("B", 0),
    ]  # fmt: skip


def test_serve_cpu_ab_interleaved_rounds_report_each_side_and_the_difference() -> None:
    """``--blocks``: both servers run at once; every round still reports each side, and the
    paired difference comes with its interval."""
    out = _run("scripts/serve_cpu_ab.py", str(ROOT), str(ROOT), "--request", "infer-1",
               "--calls", "30", "--warmup", "5", "--rounds", "2", "--blocks", "3",
               "--setting-b", "metrics_port=0")  # fmt: skip
    rounds = re.findall(r"^round (\d) ([AB]): server CPU +([\d.]+) µs/call", out, re.M)
    assert [(r, side) for r, side, _ in rounds] == [("1", "A"), ("1", "B"), ("2", "B"), ("2", "A")]
    assert all(float(cpu) > 0 for *_, cpu in rounds)
    cpu = {(r, side): float(us) for r, side, us in rounds}
    differences = [cpu[(r, "B")] - cpu[(r, "A")] for r in ("1", "2")]
    found = re.search(
        r"^B - A server CPU: median ([+-][\d.]+) µs/call, mean ([+-][\d.]+) "
        r"\(90% CI ([+-][\d.]+) to ([+-][\d.]+)\) over 2 paired rounds$", out, re.M,
    )  # fmt: skip
    assert found, out
    median, mean, low, high = map(float, found.groups())
    assert abs(mean - sum(differences) / 2) < 0.2 and abs(median - mean) < 0.2
    assert low < mean < high


def test_infer_cost_parts_compares_the_gateway_with_the_floor_and_times_its_stages() -> None:
    out = _run("scripts/infer_cost_parts.py", "--variants", "floor,gateway,parts", "--paths",
               "--rows", "2", "--calls", "30", "--repeats", "2", "--rounds", "1")  # fmt: skip
    medians = dict(re.findall(r"^  (floor|gateway|parts) +([\d.]+) µs/call", out, re.M))
    assert sorted(medians) == ["floor", "gateway", "parts"]
    assert all(float(us) > 0 for us in medians.values())
    # Every call of each gateway repeat ran its model somewhere, and a run time was learned.
    paths = re.findall(
        r"model on the loop (\d+), through the executor (\d+); learned run time for 2 rows (\d+)",
        out,
    )
    assert len(paths) == 2 and all(int(a) + int(b) == 30 for a, b, _ in paths), out
    stages = dict(re.findall(r"^  (decode|encode|servicer, whole) +([\d.]+)$", out, re.M))
    assert sorted(stages) == ["decode", "encode", "servicer, whole"]
    assert float(stages["servicer, whole"]) > float(stages["decode"]) > 0


def test_cold_calls_times_the_finite_check_both_ways_in_a_live_gateway() -> None:
    out = _run("scripts/cold_calls.py", "--blocks", "4", "--calls", "20")
    found = re.search(
        r"^  finite \(ModelInfer\) +A +([\d.]+) \(([\d.]+)-([\d.]+)\) +B +([\d.]+) .* B-A +([-+][\d.]+)$",
        out,
        re.M,
    )
    assert found, out
    a, low, high, b, difference = (float(x) for x in found.groups())
    assert a > 0 and b > 0 and low <= a <= high
    assert difference == pytest.approx(b - a, abs=0.11)


def test_cold_calls_times_a_score_leads_calls_stages() -> None:
    out = _run("scripts/cold_calls.py", "--score-stages", "--calls", "30")
    stages = dict(
        (name.strip(), float(us)) for name, us in re.findall(r"^ +(\S.*?) +([\d.]+)$", out, re.M)
    )
    assert list(stages) == [
        "servicer, whole",
        "lead from protobuf",
        "encoding it",
        "batcher with the run",
        "the model's run",
        "the scores",
        "answer's protobuf",
    ], out
    assert all(us > 0 for us in stages.values()), out
    assert stages["the model's run"] <= stages["batcher with the run"]
    assert stages["batcher with the run"] + stages["the scores"] <= stages["servicer, whole"]


@pytest.mark.parametrize("request_kind", ["leads-1", "infer-1"])
def test_serve_cpu_ab_cuts_stages_out_of_one_side(tmp_path: Path, request_kind: str) -> None:
    """With a keys file and no API key, an uncut server refuses every call (the test above):
    with the wrapper chain cut out, authentication is gone and both sides answer. ModelInfer
    answers its wire bytes, which only request decoding's serializer passes through: the cut
    keeps it."""
    from gateway.auth import hash_key

    keys = tmp_path / "keys.toml"
    keys.write_text(
        f'[[keys]]\nname = "cut"\ntenant = "acme"\nscopes = ["score"]\n'
        f'sha256 = "{hash_key("lgw_cut_test_key")}"\n'
    )
    out = _run("scripts/serve_cpu_ab.py", str(ROOT), str(ROOT), "--request", request_kind,
               "--calls", "20", "--warmup", "5", "--rounds", "1", "--setting",
               f"keys_file={keys}", "--cut-a", "chain", "--cut-b", "chain,servicer")  # fmt: skip
    medians = dict(re.findall(r"^([AB]) median: .*\((.*)\)$", out, re.M))
    assert medians["A"] == f"{ROOT}, keys_file={keys} cut=chain"
    assert medians["B"] == f"{ROOT}, keys_file={keys} cut=chain,servicer"


def _two_leads_scored_with_cuts(
    cuts: str, data_dir: Path, env: dict[str, str] | None = None
) -> list[Any]:
    """Two different leads, one ScoreLeads call each, through ``cut_stages_serve.py --cut``
    (with ``env`` added to the server's environment)."""
    import random

    import grpc

    from benchmarks.leads import load_schema, random_rows, score_leads_request
    from gateway.settings import BUNDLED_MODELS
    from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc

    server = subprocess.Popen(
        [sys.executable, "scripts/cut_stages_serve.py", "--cut", cuts, "--port", "0",
         "--workers", "1", "--data-dir", str(data_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    try:
        assert server.stdout is not None
        address = next(
            m.group(1) for line in server.stdout if (m := re.search(r"listening on (\S+) ", line))
        )
        schema = load_schema(BUNDLED_MODELS, "lead_scorer")
        rows = random_rows(schema, 2, random.Random(1))
        with grpc.insecure_channel(address) as channel:
            stub = lead_service_pb2_grpc.LeadServiceStub(channel)
            return [
                stub.ScoreLeads(score_leads_request(schema, [row], "lead_scorer", i), timeout=30)
                for i, row in enumerate(rows)
            ]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_servicer_cut_out_replays_its_first_answer(tmp_path: Path) -> None:
    """``cut_stages_serve.py --cut servicer``: ScoreLeads answers a second lead with the first
    lead's scores (the real servicer would score lead-1)."""
    answers = _two_leads_scored_with_cuts("servicer,telemetry", tmp_path)
    assert [a.scores[0].lead_id for a in answers] == ["lead-0", "lead-0"]
    assert answers[1] == answers[0]


def test_servicer_stages_cut_out_replay_what_they_gave_first(tmp_path: Path) -> None:
    """Each cut inside the servicer replays its own stage and nothing else: ``decode`` scores the
    first lead again (its id included); ``model`` answers the second lead by its own id with the
    first lead's probability; ``scores`` repeats the first answer; ``batcher`` (the session run
    on the loop) scores each lead as the uncut server does."""
    real = _two_leads_scored_with_cuts("telemetry", tmp_path / "real")
    assert real[0].scores[0].probability != real[1].scores[0].probability

    decode = _two_leads_scored_with_cuts("decode", tmp_path / "decode")
    assert [a.scores[0].lead_id for a in decode] == ["lead-0", "lead-0"]
    assert decode[1] == real[0]

    model = _two_leads_scored_with_cuts("model", tmp_path / "model")
    assert [a.scores[0].lead_id for a in model] == ["lead-0", "lead-1"]
    assert model[1].scores[0].probability == real[0].scores[0].probability

    scores = _two_leads_scored_with_cuts("scores", tmp_path / "scores")
    assert scores[1] == real[0]

    assert _two_leads_scored_with_cuts("batcher", tmp_path / "batcher") == real


def _spans_exported_with_cuts(cuts: str, tmp_path: Path) -> int:
    """Spans a discard collector received from a gateway with tracing at 100% and ``cuts`` cut
    out, after two ScoreLeads calls and the gateway's shutdown (which flushes its spans)."""
    counts = tmp_path / "counts.json"
    collector = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.discard_collector", "--counts", str(counts)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert collector.stdout is not None
        address = re.search(r"listening on (\S+)", collector.stdout.readline())
        assert address is not None
        env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://{address.group(1)}",
            "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true",
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_METRICS_EXPORTER": "none",
        }
        answers = _two_leads_scored_with_cuts(cuts, tmp_path / "data", env)
        assert [a.scores[0].lead_id for a in answers] == ["lead-0", "lead-1"]
    finally:
        collector.terminate()
        collector.wait(timeout=30)
    return int(json.loads(counts.read_text())["spans"])


def test_span_export_cut_out_sends_no_span(tmp_path: Path) -> None:
    """With tracing at 100%, the gateway's exporter sends each call's span to the collector; with
    ``span-export`` cut it sends none (the calls are answered as before)."""
    assert _spans_exported_with_cuts("", tmp_path / "uncut") >= 2
    assert _spans_exported_with_cuts("span-export", tmp_path / "cut") == 0


def test_ort_cold_run_times_the_model_after_each_kind_of_work() -> None:
    out = _run("scripts/ort_cold_run.py", "--runs", "30")
    cases = dict(re.findall(r"^  (\S.*?) +([\d.]+)$", out, re.M))
    assert list(cases) == [
        "back to back",
        "python",
        "thread ping-pong",
        "data 2 MB",
        "data 32 MB",
        "unix socket round trip",
        "tcp loopback round trip",
        "sleep 200 µs",
        "back to back, numpy, not onnxruntime",
        "after a grpc call: run",
        "after a grpc call: run, one output",
        "after a grpc call: run, all outputs",
        "after a grpc call: run_with_ort_values",
        "after a grpc call: run, no memory pattern",
        "after a grpc call: run, no CPU arena",
        "after a grpc call: run, graph not optimised",
        "after a grpc call: numpy, not onnxruntime",
        "on the event loop, after a turn: run",
        "on the event loop, after 200 µs asleep: run",
    ], out
    assert all(float(us) > 0 for us in cases.values())


def test_serve_cpu_ab_sends_b_its_own_request() -> None:
    """A ModelInfer's row, B a ScoreLeads lead: each server answers its own method (a payload sent
    to the other's method would fail the call and the script), and the report names both."""
    out = _run("scripts/serve_cpu_ab.py", str(ROOT), str(ROOT), "--request", "infer-1",
               "--request-b", "leads-1", "--calls", "20", "--warmup", "5", "--rounds", "2")  # fmt: skip
    medians = dict(re.findall(r"^([AB]) median: .*\((.*)\)$", out, re.M))
    assert medians == {"A": f"{ROOT}, request=infer-1", "B": f"{ROOT}, request=leads-1"}
    assert re.search(
        r"^B used less CPU than A in [0-2] of 2 rounds \(infer-1 against leads-1\)$", out, re.M
    )


@pytest.mark.parametrize("request_kind", ["leads-1", "infer-1"])
def test_servicer_loop_times_each_servicer_on_its_answers(request_kind: str) -> None:
    out = _run(
        "scripts/servicer_loop.py", "--request", request_kind, "--calls", "50", "--blocks", "2"
    )
    figure = re.fullmatch(rf"{request_kind}: ([\d.]+) µs a call, best of 2 blocks \(.+\)\n", out)
    assert figure is not None, out
    assert float(figure.group(1)) > 0


def test_servicer_loop_refuses_answers_that_are_not_whole() -> None:
    from leadgw_client.pb.inference import grpc_service_pb2
    from leadgw_client.pb.leadgw.v1 import lead_service_pb2

    script = runpy.run_path(str(ROOT / "scripts" / "servicer_loop.py"))
    no_reasons = lead_service_pb2.ScoreLeadsResponse(scores=[lead_service_pb2.LeadScore()])
    with pytest.raises(SystemExit, match="expected 1 with 3 reasons"):
        script["_check"]("leads-1", [no_reasons.SerializeToString()])
    one_output = grpc_service_pb2.ModelInferResponse(
        outputs=[grpc_service_pb2.ModelInferResponse.InferOutputTensor(name="probability")]
    )
    with pytest.raises(SystemExit, match=r"outputs \['probability'\]"):
        script["_check"]("infer-1", [one_output.SerializeToString()])


def test_servicer_loop_refuses_a_tree_without_leadgw(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "scripts/servicer_loop.py", "--tree", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "holds no leadgw sources" in out.stderr
