"""Runs the targets that start their own servers (embed, search, summary, notes-search,
tenant-flood, shadow) and the ``--tracing`` levels of a bench.

Each starts and stops what it needs (stores, an LLM stand-in, gateways, a collector) after the
other targets have run, and leaves its figures under ``genai`` in the report. Their ScoreLeads
runs join the bench's runs, so they get the same table, warnings and JSON fields as any other.
"""

from __future__ import annotations

import asyncio
import random
from importlib import metadata
from typing import TYPE_CHECKING, Any

from benchmarks.flood_suite import FloodBenchPlan, gateway_workers, run_flood
from benchmarks.leads import Feature, random_rows
from benchmarks.notes_fill import leads_with_notes
from benchmarks.notes_search_suite import NotesSearchPlan, run_notes_search
from benchmarks.progress import ProgressSink
from benchmarks.results import RunResult
from benchmarks.retrieval_suite import RetrievalPlan, run_retrieval
from benchmarks.score_target import score_leads_target
from benchmarks.shadow_suite import ShadowPlan, Source, run_shadow
from benchmarks.summary_client import summary_requests
from benchmarks.summary_suite import SummaryPlan, run_summary
from benchmarks.targets import GrpcUnaryTarget
from benchmarks.tracing_suite import run_tracing

if TYPE_CHECKING:
    from benchmarks.suite import BenchConfig

# A placeholder: each suite points its targets at the gateway it starts.
_UNSTARTED = "127.0.0.1:0"
_SUMMARY_REQUESTS = 64


def _leadgw_targets(
    config: BenchConfig, schema: list[Feature], batches: list[list[list[object]]]
) -> list[GrpcUnaryTarget]:
    from benchmarks.leads import as_matrix
    from benchmarks.oip_target import oip_target

    targets: list[GrpcUnaryTarget] = []
    for name in config.targets:
        if name in ("scoreleads", "scoreleads-columns"):
            targets.append(
                score_leads_target(
                    name,
                    _UNSTARTED,
                    config.model,
                    schema,
                    batches,
                    config.timeout_s,
                    columns=name == "scoreleads-columns",
                )
            )
        elif name == "modelinfer":
            matrices = [as_matrix(schema, rows) for rows in batches]
            targets.append(oip_target(name, _UNSTARTED, config.model, matrices, config.timeout_s))
    return targets


def genai_versions() -> dict[str, str | None]:
    """The packages these figures also depend on."""
    versions: dict[str, str | None] = {}
    for name in (
        "qdrant-client",
        "openai",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-grpc",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_genai(
    config: BenchConfig,
    schema: list[Feature],
    batches: list[list[list[object]]],
    genai: dict[str, Any],
    exit_codes: dict[str, int | None],
    progress: ProgressSink,
) -> list[RunResult]:
    """Runs what ``config`` asks for; fills ``genai`` and ``exit_codes``; returns the runs."""
    runs: list[RunResult] = []
    if config.tracing:
        targets = _leadgw_targets(config, schema, batches)
        traced, result, codes = run_tracing(
            config, config.tracing, config.tracing_rounds, targets, progress
        )
        runs += traced
        genai["tracing"] = result.to_dict()
        exit_codes.update(codes)
    if "summary" in config.targets:
        plan = SummaryPlan(
            notes=config.summary_notes,
            concurrency=config.summary_concurrency,
            llm_first_token_ms=config.llm_first_token_ms,
            stream_s=config.summary_stream_s,
            rounds=config.summary_rounds,
            duration_s=config.shape.duration_s,
        )
        score = score_leads_target(
            "scoreleads", _UNSTARTED, config.model, schema, batches, config.timeout_s
        )
        rng = random.Random(config.shape.seed + 1)
        # The bulk load spreads notes over up to 1,000 leads: ask only about leads that have some.
        leads = leads_with_notes(config.summary_notes)
        requests = summary_requests(
            schema, random_rows(schema, _SUMMARY_REQUESTS, rng), leads, config.model
        )
        loaded, summary, codes = run_summary(config, plan, score, requests, progress)
        runs += loaded
        genai["summary"] = summary.to_dict()
        exit_codes.update(codes)
    runs += _serving(config, schema, batches, genai, exit_codes, progress)
    embed, search = "embed" in config.targets, "search" in config.targets
    if embed or search:
        retrieval_plan = RetrievalPlan(
            sizes=config.search_notes, duration_s=config.shape.duration_s
        )
        retrieval = asyncio.run(run_retrieval(retrieval_plan, embed, search, progress))
        genai["retrieval"] = retrieval.to_dict()
    return runs


def _serving(
    config: BenchConfig,
    schema: list[Feature],
    batches: list[list[list[object]]],
    genai: dict[str, Any],
    exit_codes: dict[str, int | None],
    progress: ProgressSink,
) -> list[RunResult]:
    """notes-search, tenant-flood and shadow, each on gateways of its own."""
    runs: list[RunResult] = []
    if "notes-search" in config.targets:
        plan = NotesSearchPlan(
            config.search_notes,
            config.shape.duration_s,
            config.shape.warmup_s,
            embedder=config.search_embedder,
        )
        searched, notes_search = run_notes_search(config, plan, progress)
        runs += searched
        genai["notes_search"] = notes_search.to_dict()
        exit_codes.update(notes_search.exit_codes)
    score = score_leads_target(
        "scoreleads", _UNSTARTED, config.model, schema, batches, config.timeout_s
    )
    if "tenant-flood" in config.targets:
        flood_plan = FloodBenchPlan(
            config.shape.rate,
            config.flood_concurrency,
            config.flood_limit,
            config.flood_rounds,
            flood_rate=config.flood_rate,
            forms=config.flood_forms,
            floor=config.flood_floor,
            floor_workers=gateway_workers(config.leadgw_command),
            max_streams=config.flood_max_streams,
            hold_ms=config.flood_hold_ms,
        )
        flooded, flood = run_flood(config, flood_plan, score, progress)
        runs += flooded
        genai["tenant_flood"] = flood.to_dict()
        exit_codes.update(flood.exit_codes)
    if "shadow" in config.targets:
        source: Source = "copy" if config.shadow_source == "copy" else "train"
        shadow_plan = ShadowPlan(
            config.shape.rate,
            config.shadow_half_capacity,
            config.shadow_rounds,
            source,
            config.shadow_rates,
        )
        shadowed, shadow = run_shadow(config, shadow_plan, score, progress)
        runs += shadowed
        genai["shadow"] = shadow.to_dict()
        exit_codes.update(shadow.exit_codes)
    return runs
