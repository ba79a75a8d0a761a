"""Markdown sections of the report for the GenAI targets: retrieval, summaries, tracing cost.

They read the ``genai`` part of the report (plain dicts, as written to result.json), so a report
can be re-rendered from its JSON alone.
"""

from __future__ import annotations

from typing import Any

from benchmarks.serving_report import serving_sections


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _verdict(met: bool | None) -> str:
    return "-" if met is None else "met" if met else "**not met**"


def retrieval_section(r: dict[str, Any]) -> list[str]:
    parts = ["## Retrieval (Qdrant Edge, embedded)", ""]
    if r["embed_texts_per_s"] is not None:
        parts += [
            f"Embedding throughput: **{r['embed_texts_per_s']:,.0f} texts/s** (all-MiniLM-L6-v2 "
            f"int8 on ONNX Runtime, batches of 32, one intra-op thread; best of several passes "
            f"over {r['embed_texts']} note texts).",
            "",
        ]
    if r["searches"]:
        parts += [
            f"Search: {r['storage']}; random unit vectors bulk-loaded, queries through the real "
            "path (embed the query, tenant-filtered search, top 5), one at a time.",
            "",
            "| notes | scope | queries | errors | p50 ms | p90 ms | p99 ms | max ms "
            "| p50 ms per 1,000 notes | bulk load s | reopen s |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in r["searches"]:
            lat = s["latency_ms"]
            parts.append(
                f"| {s['notes']:,} | {s['scope']} | {s['queries']} | {s['errors']} "
                f"| {_ms(lat['p50'])} | {_ms(lat['p90'])} | {_ms(lat['p99'])} | {_ms(lat['max'])} "
                f"| {s['ms_per_1000_notes']:.2f} | {s['fill_s']:.1f} | {s['open_s']:.1f} |"
            )
        parts.append("")
    return parts


def summary_section(s: dict[str, Any]) -> list[str]:
    before = s["gateway_before_first_token_ms"]
    client = s["client_first_text_ms"]
    parts = [
        "## Summaries",
        "",
        f"{s['notes']:,} notes in the store (Qdrant Edge, loaded and indexed in "
        f"{s['fill_s']:.1f} s); "
        f"LLM stand-in on loopback waiting {s['llm_first_token_ms']:g} ms before its first "
        f"text; {s['summaries']} summaries one at a time (cache off), {s['fallbacks']} fell back "
        f"({_counts(s['fallback_reasons'])}), errors: {_counts(s['errors'])}.",
        "",
        "| time before the first token | count | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
        _pct_row("gateway (client first text − LLM wait)", before),
        _pct_row("client time to first text", client),
    ]
    names = {
        "score": "server: score",
        "retrieve": "server: retrieve",
        "prompt": "server: prompt",
        "before_llm": "server: score + retrieve + prompt",
        "first_token": "server: LLM call to first token (includes the wait)",
    }
    parts += [_pct_row(names[k], v) for k, v in s["server_ms"].items()]
    parts += [
        "",
        f"ScoreLeads p99 with {s['concurrency']} summaries streaming, against "
        f"{_ms(s['p99_alone_ms'])} ms alone (open loop at the same rate; each kind's target, a "
        "ratio within its bound either way, is in its row). held: opened before the run, "
        "streaming through all of it; churn: replaced as each ends, so scoring and retrieval of "
        "new summaries overlap the run."
        + (
            f" {s['rounds']} rounds of alone, held and churn in turn; p99s are of each kind's "
            "latencies pooled over the rounds, and each round's own ratio is listed."
            if s.get("rounds", 1) > 1
            else ""
        ),
        "",
        "| summaries | stream s | p99 ms | ratio | target | verdict | rounds' ratios | started "
        "| completed | fell back | errors | fewest open while measured |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in s["with_summaries"]:
        b = w["background"]
        ratio = "-" if w["p99_ratio"] is None else f"{w['p99_ratio']:.2f}"
        fewest = "-" if b["min_open"] is None else b["min_open"]
        rounds = ", ".join(f"{r:.2f}" for r in w.get("round_ratios", [])) or "-"
        parts.append(
            f"| {w['kind']} | {w['stream_s']:.1f} | {_ms(w['p99_ms'])} | {ratio} "
            f"| {1 / w['target_ratio']:.2f}–{w['target_ratio']:.2f} "
            f"| {_verdict(w['met'])} | {rounds} | {b['started']} | {b['completed']} "
            f"| {b['fallbacks']} | {_counts(b['errors'])} | {fewest} |"
        )
    parts.append("")
    return parts


def tracing_section(t: dict[str, Any]) -> list[str]:
    parts = [
        "## Tracing cost",
        "",
        f"Closed loop, each level on its own gateway, {t['rounds']} round(s); OTLP/gRPC to a "
        "discard collector on loopback; sampler parentbased_traceidratio.",
        "",
        "| target | tracing | ok req/s | throughput vs off | cost | cost 90% CI (paired rounds) "
        "| target | verdict | p50 ms | p99 ms | spans exported | server CPU µs/req | CPU vs off |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in t["rows"]:
        ratio = "-" if row["throughput_ratio"] is None else f"{row['throughput_ratio']:.3f}"
        cost = "-" if row["cost"] is None else f"{row['cost']:+.1%}"
        target = "-" if row["cost_target"] is None else f"≤ {row['cost_target']:.0%}"
        level = _level(row["level"])
        interval = row.get("cost_ci90")
        ci = "-" if not interval else f"{interval[0]:+.1%} to {interval[1]:+.1%}"
        parts.append(
            f"| {row['target']} | {level} | {row['ok_rps']:,.0f} | {ratio} | {cost} | {ci} "
            f"| {target} "
            f"| {_verdict(row['met'])} | {_ms(row['p50_ms'])} | {_ms(row['p99_ms'])} "
            f"| {row['spans_exported']:,} | {_optional(row.get('server_cpu_us'), '{:,.0f}')} "
            f"| {_optional(row.get('cpu_ratio'), '{:.3f}')} |"
        )
    parts.append("")
    return parts


def _level(level: str) -> str:
    if level == "off":
        return "off"
    ratio, _, detail = level.partition("/")
    return f"{float(ratio) * 100:g}%" + (f" ({detail} spans)" if detail else "")


def _optional(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)


def genai_sections(genai: dict[str, Any]) -> list[str]:
    parts: list[str] = []
    if "retrieval" in genai:
        parts += retrieval_section(genai["retrieval"])
    if "summary" in genai:
        parts += summary_section(genai["summary"])
    if "tracing" in genai:
        parts += tracing_section(genai["tracing"])
    return parts + serving_sections(genai)


def _pct_row(name: str, p: dict[str, Any]) -> str:
    return (
        f"| {name} | {p['count']} | {_ms(p['p50'])} | {_ms(p['p90'])} | {_ms(p['p99'])} "
        f"| {_ms(p['max'])} |"
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
