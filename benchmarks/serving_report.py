"""Markdown sections of the report for notes-search, tenant-flood and shadow.

Like ``genai_report``, they read plain dicts (as written to result.json).
"""

from __future__ import annotations

from typing import Any


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _verdict(met: bool | None) -> str:
    return "-" if met is None else "met" if met else "**not met**"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _hold(hold_ms: float | None) -> str:
    return "for the gateway's default time" if hold_ms is None else f"{hold_ms:g} ms"


def notes_search_section(n: dict[str, Any]) -> list[str]:
    parts = [
        "## SearchNotes through the gateway (Qdrant Edge)",
        "",
        "Random unit vectors with note texts bulk-loaded into the gateway's store class and "
        "indexed; then SearchNotes over gRPC, one request in flight, query embedding included "
        f"(end to end); the store alone: {n['store_timing']}, same queries (hybrid, tenant "
        f"filter, top 5). Targets: end to end p99 ≤ {n['end_to_end_p99_target_ms']:g} ms, store "
        f"p99 ≤ {n['store_p99_target_ms']:g} ms, a restarted gateway serving within "
        f"{n['restart_target_s']:g} s. Queries: `note` = whole note texts, `short` = a few "
        f"words. The gateway's embedder: `{n.get('embedder', 'all-MiniLM-L6-v2-onnx-int8')}`.",
        "",
        "| notes | scope | queries | requests | e2e p50 ms | e2e p99 ms | e2e max ms "
        "| store p50 ms | store p99 ms | store call p50 ms | store call p99 ms | store errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in n["sizes"]:
        for s in size["scopes"]:
            e2e, store = s["end_to_end_ms"], s["store_ms"]
            call = s.get("store_call_ms") or {"p50": None, "p99": None}  # older results: none
            parts.append(
                f"| {size['notes']:,} | {s['scope']} | {s.get('queries', 'note')} "
                f"| {e2e['count']} | {_ms(e2e['p50'])} "
                f"| {_ms(e2e['p99'])} | {_ms(e2e['max'])} | {_ms(store['p50'])} "
                f"| {_ms(store['p99'])} | {_ms(call['p50'])} | {_ms(call['p99'])} "
                f"| {s['store_errors']} |"
            )
    parts += [
        "",
        "| notes | bulk load + index s | of which writes s | of which index build s "
        "| restart: ready s | restart: first SearchNotes s | its hits |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in n["sizes"]:
        parts.append(
            f"| {size['notes']:,} | {size['load_s']:.1f} | {size.get('load_write_s', 0):.1f} "
            f"| {size.get('load_index_s', 0):.1f} | {size['restart_ready_s']:.1f} "
            f"| {size['restart_first_search_s']:.1f} | {size['first_search_hits']} |"
        )
    parts.append("")
    return parts


def flood_section(f: dict[str, Any]) -> list[str]:
    parts = [
        "## One tenant flooding another",
        "",
        f"Tenant B (`tenant-b`) open-loop at {f['rate']:g}/s (its limit "
        f"{f['steady_limit']:g}/s), alone and while tenant A (`tenant-a`, limit "
        f"{f['flood_limit']:g}/s) floods ScoreLeads from a process of its own, "
        f"{f['rounds']} interleaved round(s); p99s of each kind pooled over the rounds. "
        "Closed loop: A keeps calls in flight, so it sends as fast as its refusals come back "
        "(the cheaper a refusal, the bigger the flood; what a misbehaving client does). Open "
        "loop: A sends at a fixed rate whatever the answers (the same flood for any gateway; "
        "what a refusal costs). The flood process runs on this machine: its CPU is taken from "
        "the gateway and tenant B. "
        f"Target: the flood raises tenant B's p99 by at most {f['target_ratio'] - 1:.0%}.",
        "",
        f"B p99 alone: {_ms(f['p99_alone_ms'])} ms, gateway CPU "
        f"{f['gateway_cores_alone']:.2f} cores; the gateway's max_concurrent_streams: "
        f"{f.get('max_streams') or 'none (no cap)'}; each refusal held "
        f"{_hold(f.get('hold_ms'))} before it is sent (the floor refuses at once).",
        "",
        "| flood | B p99 flooded ms | ratio | verdict | rounds' ratios | A sent/s | A served/s "
        "| A RESOURCE_EXHAUSTED | A other errors | A client CPU | gateway CPU | floor ratio "
        "| × floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for form in f["forms"]:
        parts.append(
            _flood_row(form, _verdict(form["met"]))
            + f" {_ratio(form.get('floor_ratio'))} | {_ratio(form.get('over_floor'))} |"
        )
    parts += [
        "",
        f"B refused by a limit: {f['steady_resource_exhausted']} (expected 0). CPU in cores "
        "(CPU seconds per second); gateway CPU over B's measured windows, mean of the rounds; "
        "A's client CPU over its whole flood. Floor ratio: B's ratio in the same form against "
        "the floor (below); × floor: the gateway's ratio over the floor's.",
        "",
    ]
    floor = f.get("floor")
    if floor:
        parts += [
            f"The floor: {floor['workers']} bare grpc.aio process(es) on uvloop on one port, "
            "answering B's ScoreLeads with the gateway's response bytes and refusing every one "
            "of A's calls at once (the gateway serves A's limit's worth). B p99 alone at the "
            f"floor: {_ms(floor['p99_alone_ms'])} ms, floor CPU {floor['cores_alone']:.2f} cores.",
            "",
            "| flood at the floor | B p99 flooded ms | ratio | verdict | rounds' ratios "
            "| A sent/s | A served/s | A RESOURCE_EXHAUSTED | A other errors | A client CPU "
            "| floor CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        parts += [_flood_row(form, _verdict(form["met"])) for form in floor["forms"]]
        parts.append("")
    return parts


def _flood_row(form: dict[str, Any], verdict: str) -> str:
    flood = form["flood"]
    others = {k: v for k, v in flood["codes"].items() if k != "RESOURCE_EXHAUSTED"}
    if flood.get("skipped"):
        others["not sent (in flight cap)"] = flood["skipped"]
    return (
        f"| {form['description']} | {_ms(form['p99_flooded_ms'])} "
        f"| {_ratio(form['p99_ratio'])} | {verdict} "
        f"| {', '.join(f'{r:.2f}' for r in form['round_ratios']) or '-'} "
        f"| {form['flood_sent_per_s']:,.0f} | {form['flood_ok_per_s']:,.0f} "
        f"| {form['flood_resource_exhausted']:,} "
        f"| {', '.join(f'{k} {v}' for k, v in others.items()) or 'none'} "
        f"| {form['flood_client_cores']:.2f} | {form['gateway_cores']:.2f} |"
    )


def shadow_section(s: dict[str, Any]) -> list[str]:
    source = "trained with seed 7" if s["candidate_source"] == "train" else "a copy of the live one"
    at = (
        f"{s['rate']:g}/s, half the {s['capacity_rps']:,.0f} req/s measured closed-loop"
        if s["capacity_rps"]
        else f"{s['rate']:g}/s"
    )
    parts = [
        "## Shadow scoring",
        "",
        f"{s['model']} version {s['live_version']} live, version {s['candidate_version']} "
        f"({source}) shadowed or not, switched by the control RPC between runs on one gateway; "
        f"ScoreLeads open-loop at {at}, {s['rounds']} interleaved round(s), p99s pooled. "
        f"Target: shadow on within {s['target_ratio'] - 1:.0%} of off.",
        "",
        "| shadow rate | p99 off ms | p99 on ms | ratio | verdict | rounds' ratios |",
        "|---|---|---|---|---|---|",
    ]
    by_rate = s.get("by_rate") or [{**s, "shadow_rate": s.get("shadow_rate", 1.0)}]
    for b in by_rate:
        parts.append(
            f"| {b['shadow_rate']:g} | {_ms(s['p99_off_ms'])} | {_ms(b['p99_on_ms'])} "
            f"| {_ratio(b['p99_ratio'])} | {_verdict(b['met'])} "
            f"| {', '.join(f'{r:.2f}' for r in b['round_ratios']) or '-'} |"
        )
    parts += [
        "",
        "| run | shadow | leads compared (metrics) | copies dropped |",
        "|---|---|---|---|",
    ]
    for r in s["runs"]:
        rate = r.get("shadow_rate")
        state = "off" if not r["shadow"] else "on" if rate in (None, 1.0) else f"on, rate {rate:g}"
        parts.append(f"| {r['run']} | {state} | {r['shadow_leads']:,} | {r['shadow_dropped']:,} |")
    parts.append("")
    return parts


def serving_sections(genai: dict[str, Any]) -> list[str]:
    parts: list[str] = []
    if "notes_search" in genai:
        parts += notes_search_section(genai["notes_search"])
    if "tenant_flood" in genai:
        parts += flood_section(genai["tenant_flood"])
    if "shadow" in genai:
        parts += shadow_section(genai["shadow"])
    return parts
