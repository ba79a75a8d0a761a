"""Short real runs of the serving targets (notes-search, tenant-flood, shadow): every report
field is there, the counts add up and the runs did what they say. No timing figure is asserted."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.bench

QUICK = (
    "--duration", "1", "--warmup", "0.5", "--no-progress", "--no-plots", "--processes", "1",
    "--leadgw-workers", "1",
)  # fmt: skip
PERCENTILES = {"count", "p50", "p90", "p99", "p999", "max", "mean"}


def test_notes_search(bench) -> None:
    run = bench(*QUICK, "--targets", "notes-search", "--search-notes", "300,600", timeout=300)
    assert run.returncode == 0, run.stderr
    result = run.result()
    figures = result["genai"]["notes_search"]
    assert [s["notes"] for s in figures["sizes"]] == [300, 600]
    labels = [r["target"] for r in result["runs"]]
    assert labels == [
        f"searchnotes {scope}{extra} @ {n} notes"
        for n in (300, 600)
        for extra in ("", " short")
        for scope in ("tenant", "lead")
    ]
    runs = {r["target"]: r for r in result["runs"]}
    for size in figures["sizes"]:
        assert size["load_s"] > 0
        # The load's time, split: writes, then the one index build at the end.
        assert size["load_write_s"] > 0 and size["load_index_s"] >= 0  # 0.0: nothing to index
        assert size["load_write_s"] + size["load_index_s"] == pytest.approx(
            size["load_s"], abs=0.02
        )
        # Restarted on the filled store: ready first, then its first search found notes.
        assert 0 < size["restart_ready_s"] <= size["restart_first_search_s"]
        assert size["first_search_hits"] == 5
        assert [(s["queries"], s["scope"]) for s in size["scopes"]] == [
            ("note", "tenant"), ("note", "lead"), ("short", "tenant"), ("short", "lead")
        ]  # fmt: skip
        for scope in size["scopes"]:
            gateway_run = runs[scope["run"]]
            # One request in flight, over gRPC, every one answered.
            assert gateway_run["mode"] == "closed" and gateway_run["shape"]["concurrency"] == 1
            assert gateway_run["errors"] == {} and gateway_run["ok"] == gateway_run["sent"] > 0
            assert scope["end_to_end_ms"] == gateway_run["latency_ms"]
            assert set(scope["store_ms"]) == PERCENTILES
            assert scope["store_ms"]["count"] >= 5 and scope["store_errors"] == 0
            # The engine's own time and the whole call for the same queries: the call adds the
            # hop to the store's thread, so it is never the faster of the two.
            call = scope["store_call_ms"]
            assert call["count"] == scope["store_ms"]["count"]
            assert (
                call["p50"] >= scope["store_ms"]["p50"] and call["max"] >= scope["store_ms"]["max"]
            )
    assert set(result["server_exit_codes"].values()) == {0}
    assert len(result["server_exit_codes"]) == 4  # a gateway and its restart per size
    markdown = (run.out / "report.md").read_text()
    assert "## SearchNotes through the gateway (Qdrant Edge)" in markdown
    assert "| 600 | lead | note |" in markdown and "| 600 | lead | short |" in markdown
    assert figures["embedder"] == "all-MiniLM-L6-v2-onnx-int8-dq"
    assert "The gateway's embedder: `all-MiniLM-L6-v2-onnx-int8-dq`." in markdown


def test_notes_search_with_the_float_embedder(bench) -> None:
    """The A/B run: the store is recorded as the float form's and the gateway runs it (were they
    different, the gateway would spend its start re-embedding the store, or refuse)."""
    args = ("--search-notes", "300", "--search-embedder", "all-MiniLM-L6-v2-onnx-int8")
    run = bench(*QUICK, "--targets", "notes-search", *args, timeout=300)
    assert run.returncode == 0, run.stderr
    result = run.result()
    assert result["genai"]["notes_search"]["embedder"] == "all-MiniLM-L6-v2-onnx-int8"
    assert all(r["errors"] == {} and r["ok"] > 0 for r in result["runs"])
    markdown = (run.out / "report.md").read_text()
    assert "The gateway's embedder: `all-MiniLM-L6-v2-onnx-int8`." in markdown


def test_tenant_flood(bench) -> None:
    run = bench(
        *QUICK,
        "--targets", "tenant-flood",
        "--rate", "30",
        "--flood-concurrency", "3",
        "--flood-limit", "10",
        "--flood-rate", "60",
        "--flood-rounds", "2",
        timeout=300,
    )  # fmt: skip
    # 3: the generator fell behind its open-loop schedule on this shared machine; the report is
    # still complete, and what is checked here is its content.
    assert run.returncode in (0, 3), run.stderr
    result = run.result()
    flood = result["genai"]["tenant_flood"]
    assert (flood["rate"], flood["flood_limit"], flood["flood_concurrency"]) == (30, 10, 3)
    assert flood["flood_rate"] == 60
    assert flood["steady_limit"] == 150  # five times what tenant B is sent
    labels = [r["target"] for r in result["runs"]]
    steady = (
        "scoreleads tenant-b alone",
        "scoreleads tenant-b, tenant-a flooding (3 in flight)",
        "scoreleads tenant-b, tenant-a flooding (60/s open loop)",
    )
    # The floor's rounds are interleaved with the gateway's, against a server of their own.
    assert labels == [
        f"{peer}{label} #{n}" for n in (1, 2) for peer in ("", "floor: ") for label in steady
    ]
    gateway_labels = [label for label in labels if not label.startswith("floor: ")]
    assert flood["alone_runs"] == gateway_labels[0::3]
    closed, open_loop = flood["forms"]
    assert (closed["form"], open_loop["form"]) == ("closed", "open")
    assert closed["flooded_runs"] == gateway_labels[1::3]
    assert open_loop["flooded_runs"] == gateway_labels[2::3]
    for r in result["runs"]:
        assert r["mode"] == "open" and r["offered_rps"] == 30
        assert r["ok"] > 0 and r["ok"] + sum(r["errors"].values()) == r["sent"]
    # The limit holds tenant A back and never touches tenant B.
    assert flood["steady_resource_exhausted"] == 0
    floor = flood["floor"]
    assert floor["workers"] == 1  # the gateway's: --leadgw-workers 1
    assert floor["alone_runs"] == [f"floor: {label}" for label in gateway_labels[0::3]]
    for form, at_floor in zip((closed, open_loop), floor["forms"], strict=True):
        a = form["flood"]
        assert a["ok"] > 0 and a["codes"].get("RESOURCE_EXHAUSTED", 0) > 0
        assert form["flood_resource_exhausted"] == a["codes"]["RESOURCE_EXHAUSTED"]
        assert a["sent"] == a["ok"] + sum(a["codes"].values())
        assert set(a["codes"]) == {"RESOURCE_EXHAUSTED"}
        assert a["cpu_s"] > 0 and form["flood_client_cores"] > 0
        assert form["p99_ratio"] == pytest.approx(form["p99_flooded_ms"] / flood["p99_alone_ms"])
        assert form["met"] == (form["p99_ratio"] <= 1.25)
        assert len(form["round_ratios"]) == 2
        # The floor refuses every one of A's calls, and serves B's (its runs are all ok above).
        assert at_floor["form"] == form["form"]
        assert at_floor["flood"]["ok"] == 0
        assert at_floor["flood"]["codes"] == {"RESOURCE_EXHAUSTED": at_floor["flood"]["sent"]}
        assert at_floor["p99_ratio"] == pytest.approx(
            at_floor["p99_flooded_ms"] / floor["p99_alone_ms"]
        )
        assert form["floor_ratio"] == at_floor["p99_ratio"]
        assert form["over_floor"] == pytest.approx(form["p99_ratio"] / at_floor["p99_ratio"])
    # Open loop: A's rate is the one asked for, not what the answers allow.
    assert open_loop["flood_sent_per_s"] == pytest.approx(60, rel=0.2)
    assert floor["forms"][1]["flood_sent_per_s"] == pytest.approx(60, rel=0.2)
    assert flood["met"] == (closed["met"] and open_loop["met"])
    # The gateway holds each refusal 50 ms (its default, which the bench passes on): each of
    # A's 3 calls in flight is refused at most 20 times a second, over the flood's whole life.
    assert flood["hold_ms"] == 50
    held = closed["flood"]
    assert held["codes"]["RESOURCE_EXHAUSTED"] <= held["seconds"] * 3 / 0.050 * 1.05
    assert result["server_exit_codes"]["leadgw-flood"] == 0
    assert result["server_exit_codes"]["flood-floor"] == 0
    markdown = (run.out / "report.md").read_text()
    assert "## One tenant flooding another" in markdown
    assert "| 60/s open loop |" in markdown and "| 3 in flight |" in markdown
    assert "| flood at the floor |" in markdown and "| × floor |" in markdown


def test_tenant_flood_without_floor(bench) -> None:
    run = bench(
        *QUICK,
        "--targets", "tenant-flood",
        "--rate", "30",
        "--flood-limit", "10",
        "--flood-forms", "closed",
        "--flood-rounds", "1",
        "--no-flood-floor",
        "--flood-max-streams", "16",
        "--flood-hold-ms", "0",
        timeout=300,
    )  # fmt: skip
    assert run.returncode in (0, 3), run.stderr
    result = run.result()
    flood = result["genai"]["tenant_flood"]
    assert flood["floor"] is None and "flood-floor" not in result["server_exit_codes"]
    assert [r["target"] for r in result["runs"]] == [
        "scoreleads tenant-b alone",
        "scoreleads tenant-b, tenant-a flooding (8 in flight)",
    ]
    assert flood["forms"][0]["floor_ratio"] is None
    assert flood["max_streams"] == 16
    assert flood["hold_ms"] == 0
    markdown = (run.out / "report.md").read_text()
    assert "max_concurrent_streams: 16; each refusal held 0 ms before it is sent" in markdown


def test_shadow(bench) -> None:
    run = bench(
        *QUICK,
        "--targets", "shadow",
        "--shadow-source", "copy",
        "--shadow-half-capacity",
        "--concurrency", "2",
        "--shadow-rounds", "2",
        "--shadow-rate", "1",
        "--shadow-rate", "0",
        timeout=300,
    )  # fmt: skip
    # 3: the generator fell behind its open-loop schedule on this shared machine; the report is
    # still complete, and what is checked here is its content.
    assert run.returncode in (0, 3), run.stderr
    result = run.result()
    shadow = result["genai"]["shadow"]
    assert (shadow["model"], shadow["live_version"], shadow["candidate_version"]) == (
        "lead_scorer", "1", "2",
    )  # fmt: skip
    assert shadow["candidate_source"] == "copy" and shadow["rounds"] == 2
    capacity, *measured = result["runs"]
    assert capacity["target"] == "scoreleads capacity, shadow off, c=2"
    assert capacity["mode"] == "closed" and shadow["capacity_rps"] == capacity["ok_rps"] > 0
    assert shadow["rate"] == round(capacity["ok_rps"] / 2, 1)
    assert [r["target"] for r in measured] == [  # the order turns each round
        *(f"scoreleads shadow {state} #1" for state in ("off", "on", "on 0")),
        *(f"scoreleads shadow {state} #2" for state in ("on", "on 0", "off")),
    ]
    for r in measured:
        assert r["mode"] == "open" and r["offered_rps"] == shadow["rate"]
        assert r["ok"] > 0 and r["ok"] + sum(r["errors"].values()) == r["sent"]
    # The gateway's own metrics show the candidate scoring copies only while the shadow was on.
    assert [(d["run"], d["shadow"]) for d in shadow["runs"]] == [
        (r["target"], r["target"].startswith("scoreleads shadow on")) for r in measured
    ]
    for d in shadow["runs"]:
        if d["shadow"] and d["shadow_rate"] == 1.0:
            assert d["shadow_leads"] + d["shadow_dropped"] > 0
        else:
            assert d["shadow_leads"] == 0 and d["shadow_dropped"] == 0
    assert shadow["p99_ratio"] == pytest.approx(shadow["p99_on_ms"] / shadow["p99_off_ms"])
    assert shadow["met"] == (shadow["p99_ratio"] <= 1.10)
    assert len(shadow["round_ratios"]) == 2
    assert [b["shadow_rate"] for b in shadow["by_rate"]] == [1.0, 0.0]
    assert shadow["by_rate"][0]["p99_ratio"] == shadow["p99_ratio"]
    for b in shadow["by_rate"]:
        assert b["met"] == (b["p99_ratio"] <= 1.10) and len(b["round_ratios"]) == 2
    # Rate 0: the shadow is on (switched by the same RPC) and compares no lead.
    for d in shadow["runs"]:
        if d["shadow_rate"] == 0.0:
            assert d["shadow"] and d["shadow_leads"] == 0 and d["shadow_dropped"] == 0
    assert result["server_exit_codes"]["leadgw-shadow"] == 0
    markdown = (run.out / "report.md").read_text()
    assert "## Shadow scoring" in markdown and "| scoreleads shadow on #2 | on |" in markdown
    assert "| scoreleads shadow on 0 #2 | on, rate 0 |" in markdown
