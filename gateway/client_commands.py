"""Client-side subcommands: ``leadgw score``, ``leadgw models`` and ``leadgw keys``."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from gateway import lead_codec
from gateway.auth import SCOPES, hash_key, new_key
from gateway.pb.inference import grpc_service_pb2 as oip
from gateway.pb.inference import grpc_service_pb2_grpc as oip_grpc
from gateway.pb.leadgw.v1 import lead_service_pb2 as pb
from gateway.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from runtimes.types import FeatureValue, LeadInput

DEFAULT_ADDRESS = "127.0.0.1:50051"
CHUNK = 1000
BAND_NAMES = {pb.SCORE_BAND_HOT: "hot", pb.SCORE_BAND_WARM: "warm", pb.SCORE_BAND_COLD: "cold"}


def add_commands(commands: Any) -> None:
    score = commands.add_parser(
        "score",
        help="score leads from a JSON Lines or CSV file, print a ranked table with reasons",
        description="Score leads read from FILE ('-' for standard input) on a running gateway. "
        "JSON Lines: one object per line, either {'lead_id': ..., 'features': {...}} or flat "
        "{'lead_id': ..., '<feature>': value}. CSV: a lead_id column and one column per feature "
        "(empty cell = missing; true/false = flag; numbers = number; anything else = category).",
    )
    score.add_argument("file", help="leads file (.jsonl, .json or .csv), or - for stdin")
    _connection_arguments(score)
    score.add_argument("--model", default="", help="model name (default: the server's default)")
    score.add_argument("--version", default="", help="model version (default: latest)")
    score.add_argument("--reasons", type=int, default=3, help="reasons per lead (default 3)")
    score.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    score.set_defaults(func=run_score)

    summarize = commands.add_parser(
        "summarize",
        help="stream a gateway's summary of one lead, then its citations and timings",
        description="Stream SummarizeLead for LEAD_ID from a running gateway (needs scope "
        "'summarize' when keys are in use): the text as it arrives, then the cited notes, "
        "which generator wrote it (an LLM, or the marked fallback) and the latency breakdown.",
    )
    summarize.add_argument("lead_id", help="the lead to summarise, e.g. demo-0001")
    _connection_arguments(summarize, timeout=30.0)
    summarize.add_argument("--json", action="store_true", help="print the final message as JSON")
    summarize.set_defaults(func=run_summarize)

    models = commands.add_parser(
        "models",
        help="list the models a gateway has loaded, their versions and status",
        description="List models, versions, state and tensors of a running gateway "
        "(needs scope 'admin' when keys are in use).",
    )
    _connection_arguments(models)
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(func=run_models)

    keys = commands.add_parser(
        "keys",
        help="create API keys (printed once; only their hash is stored)",
        description="Create an API key for a tenant. The key is printed once; its hashed entry "
        "is appended to --keys-file (or printed, to paste into one).",
    )
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_commands.add_parser("create", help="create a key")
    create.add_argument("--tenant", required=True, help="tenant the key acts as")
    create.add_argument(
        "--scopes",
        default="score",
        help=f"comma-separated scopes from {','.join(SCOPES)} (default: score)",
    )
    create.add_argument("--name", default="", help="a label for the key, shown in logs")
    create.add_argument("--keys-file", type=Path, help="append the hashed entry to this file")
    create.set_defaults(func=run_keys_create)


def _connection_arguments(parser: argparse.ArgumentParser, timeout: float = 10.0) -> None:
    parser.add_argument(
        "--address", default=DEFAULT_ADDRESS, help=f"gateway host:port (default {DEFAULT_ADDRESS})"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LEADGW_API_KEY", ""),
        help="API key (default: $LEADGW_API_KEY; none needed on a loopback gateway without keys)",
    )
    parser.add_argument(
        "--timeout", type=float, default=timeout, help=f"seconds per call (default {timeout:g})"
    )


def _metadata(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


# ---- score ----


def _parse_cell(text: str) -> FeatureValue:
    if text == "":
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text)
    except ValueError:
        return text


def read_leads(path: str) -> Iterator[LeadInput]:
    """Reads leads from JSON Lines, a JSON array, or CSV; errors name the line."""
    stream = sys.stdin if path == "-" else open(path, newline="")  # noqa: SIM115
    with stream:
        if path.endswith(".csv"):
            for row in csv.DictReader(stream):
                lead_id = row.pop("lead_id", None)
                if lead_id is None:
                    raise ValueError(f"{path}: no 'lead_id' column")
                features = {k: _parse_cell(v.strip()) for k, v in row.items() if k}
                yield LeadInput(lead_id.strip(), features)
            return
        for line, text in enumerate(stream, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line}: not valid JSON: {exc.msg}") from exc
            if not isinstance(record, dict) or "lead_id" not in record:
                raise ValueError(f"{path}:{line}: expected an object with a 'lead_id'")
            nested = record.get("features")
            if nested is not None and not isinstance(nested, dict):
                raise ValueError(f"{path}:{line}: 'features' must be an object")
            features = (
                nested
                if nested is not None
                else {k: v for k, v in record.items() if k != "lead_id"}
            )
            for name, value in features.items():
                if value is not None and not isinstance(value, bool | int | float | str):
                    raise ValueError(
                        f"{path}:{line}: feature {name!r} must be a number, a string, true, "
                        f"false or null, got {type(value).__name__}"
                    )
            yield LeadInput(str(record["lead_id"]), dict(features))


def run_score(args: argparse.Namespace) -> int:
    try:
        leads = list(read_leads(args.file))
    except (OSError, ValueError) as exc:
        print(f"leadgw score: {exc}", file=sys.stderr)
        return 2
    if not leads:
        print(f"leadgw score: {args.file} has no leads", file=sys.stderr)
        return 2
    scores: list[pb.LeadScore] = []
    columns = (TextColumn("scoring"), BarColumn(), MofNCompleteColumn())
    # A bar on stderr for files of several requests; it draws nothing when stderr is no terminal.
    with (
        grpc.insecure_channel(args.address) as channel,
        Progress(*columns, console=Console(stderr=True), transient=True) as progress,
    ):
        stub = pb_grpc.LeadServiceStub(channel)
        task = progress.add_task("leads", total=len(leads), visible=len(leads) > CHUNK)
        try:
            for start in range(0, len(leads), CHUNK):
                chunk = leads[start : start + CHUNK]
                scores.extend(_score_chunk(stub, chunk, args))
                progress.advance(task, len(chunk))
        except grpc.RpcError as exc:
            progress.stop()
            done = f" (after {len(scores)} of {len(leads)} leads)" if scores else ""
            print(f"leadgw score: {exc.code().name}: {exc.details()}{done}", file=sys.stderr)
            return 1
    # Requests were chunked; rank across the whole file.
    ranked = sorted(scores, key=lambda s: -s.probability)
    if args.json:
        for rank, score in enumerate(ranked, start=1):
            print(json.dumps(_score_record(score, rank)))
    else:
        _print_table(ranked)
    return 0


def _score_chunk(
    stub: pb_grpc.LeadServiceStub, chunk: list[LeadInput], args: argparse.Namespace
) -> list[pb.LeadScore]:
    """One ScoreLeads call: column-wise when every feature's values have one type (several
    times faster for a big file), else lead by lead, so the server names the lead at fault."""
    request = pb.ScoreLeadsRequest(
        model_name=args.model, model_version=args.version, max_reasons=args.reasons
    )
    columns = lead_codec.leads_to_columns(chunk)
    if columns is None:
        request.leads.extend(lead_codec.lead_to_pb(lead) for lead in chunk)
    else:
        request.columns.CopyFrom(columns)
    response = stub.ScoreLeads(request, timeout=args.timeout, metadata=_metadata(args.api_key))
    if columns is None:
        return list(response.scores)
    return lead_codec.scores_from_columns(response.columns)


def _score_record(score: pb.LeadScore, rank: int) -> dict[str, Any]:
    return {
        "rank": rank,
        "lead_id": score.lead_id,
        "probability": round(score.probability, 6),
        "band": BAND_NAMES.get(score.band, "unspecified"),
        "reasons": [
            {"feature": r.feature, "label": r.label, "contribution": round(r.contribution, 6)}
            for r in score.reasons
        ],
        "model": f"{score.model_name}/{score.model_version}",
    }


def _print_table(ranked: list[pb.LeadScore]) -> None:
    id_width = max(7, *(len(s.lead_id) for s in ranked))
    print(f"{'rank':>4}  {'lead':<{id_width}}  {'p(convert)':>10}  {'band':<4}  reasons")
    for rank, score in enumerate(ranked, start=1):
        reasons = "; ".join(f"{r.contribution:+.2f} {r.label}" for r in score.reasons)
        band = BAND_NAMES.get(score.band, "?")
        lead = f"{score.lead_id:<{id_width}}"
        print(f"{rank:>4}  {lead}  {score.probability:>10.1%}  {band:<4}  {reasons}")
    if ranked:
        print(
            f"\nmodel {ranked[0].model_name} v{ranked[0].model_version}; reasons are signed "
            "contributions to the log-odds (positive raises the odds)"
        )


# ---- summarize ----


def run_summarize(args: argparse.Namespace) -> int:
    final = None
    with grpc.insecure_channel(args.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        try:
            for message in stub.SummarizeLead(
                pb.SummarizeLeadRequest(lead_id=args.lead_id),
                timeout=args.timeout,
                metadata=_metadata(args.api_key),
            ):
                if message.WhichOneof("event") == "text":
                    if not args.json:
                        print(message.text, end="", flush=True)
                else:
                    final = message.final
        except grpc.RpcError as exc:
            print(f"\nleadgw summarize: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    if final is None:
        print("leadgw summarize: the stream ended without a final message", file=sys.stderr)
        return 1
    if args.json:
        print(json_format.MessageToJson(final, preserving_proto_field_name=True))
        return 0
    print("\n")
    for citation in final.citations:
        when = citation.created_at.ToDatetime().date().isoformat()
        print(f"[{citation.index}] {citation.note_id} ({when})")
    written_by = "fallback: " + final.fallback_reason if final.fallback else final.generator
    latency = final.latency
    print(
        f"\nwritten by {written_by}; score {final.score.probability:.1%}; "
        f"score {latency.score_ms:.0f} ms, retrieve {latency.retrieve_ms:.0f} ms, "
        f"first token {latency.first_token_ms:.0f} ms, total {latency.total_ms:.0f} ms"
        + ("; from cache" if final.cached else "")
    )
    return 0


# ---- models ----


def run_models(args: argparse.Namespace) -> int:
    metadata = _metadata(args.api_key)
    rows = []
    with grpc.insecure_channel(args.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        try:
            index = stub.RepositoryIndex(
                oip.RepositoryIndexRequest(), timeout=args.timeout, metadata=metadata
            )
            for model in index.models:
                row: dict[str, Any] = {
                    "model": model.name,
                    "version": model.version,
                    "state": model.state,
                    "reason": model.reason,
                }
                if model.state == "READY":
                    meta = stub.ModelMetadata(
                        oip.ModelMetadataRequest(name=model.name, version=model.version),
                        timeout=args.timeout,
                        metadata=metadata,
                    )
                    row["inputs"] = [f"{t.name} {t.datatype} {list(t.shape)}" for t in meta.inputs]
                    row["outputs"] = [
                        f"{t.name} {t.datatype} {list(t.shape)}" for t in meta.outputs
                    ]
                rows.append(row)
        except grpc.RpcError as exc:
            print(f"leadgw models: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['model']}  v{row['version']}  {row['state']}  {row['reason']}".rstrip())
        for line in row.get("inputs", []):
            print(f"    in   {line}")
        for line in row.get("outputs", []):
            print(f"    out  {line}")
    return 0


# ---- keys ----


def run_keys_create(args: argparse.Namespace) -> int:
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        print(f"leadgw keys: unknown scopes {unknown}; known: {', '.join(SCOPES)}", file=sys.stderr)
        return 2
    key = new_key()
    entry = (
        "[[keys]]\n"
        f"name = {json.dumps(args.name or args.tenant)}\n"
        f"tenant = {json.dumps(args.tenant)}\n"
        f"scopes = {json.dumps(scopes)}\n"
        f'sha256 = "{hash_key(key)}"\n'
    )
    if args.keys_file is not None:
        with open(args.keys_file, "a") as handle:
            handle.write("\n" + entry)
        print(f"appended the hashed entry to {args.keys_file}", file=sys.stderr)
    else:
        print(entry)
    print(f"API key (shown once): {key}")
    return 0
