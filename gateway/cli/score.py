"""``leadgw score``: score leads from a file on a running gateway."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gateway.cli.connection import add_connection_arguments, call_metadata, open_channel
from runtimes.types import FeatureValue, LeadInput

if TYPE_CHECKING:
    from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
    from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

CHUNK = 1000
DESCRIPTION = (
    "Score leads read from FILE ('-' for standard input) on a running gateway. "
    "JSON Lines: one object per line, either {'lead_id': ..., 'features': {...}} or flat "
    "{'lead_id': ..., '<feature>': value}. CSV: a lead_id column and one column per feature "
    "(empty cell = missing; true/false = flag; numbers = number; anything else = category)."
)


def band_name(band: int) -> str:
    from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb

    names: dict[int, str] = {
        pb.SCORE_BAND_HOT: "hot",
        pb.SCORE_BAND_WARM: "warm",
        pb.SCORE_BAND_COLD: "cold",
    }
    return names.get(band, "unspecified")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", help="leads file: CSV (.csv) or JSON Lines (any other name; - for stdin)"
    )
    add_connection_arguments(parser)
    parser.add_argument("--model", default="", help="model name (default: the server's default)")
    parser.add_argument(
        "--version",
        default="",
        help="model version or alias (default: the model's routing picks: its live version, "
        "or its canary for a share of leads)",
    )
    parser.add_argument(
        "--reasons",
        type=_reasons,
        default=3,
        help="reasons per lead (default 3; 0: the gateway's default_max_reasons)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")


def _reasons(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    # The request's field is a uint32; more reasons than that is every reason anyway.
    return min(value, 2**32 - 1)


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
    """Reads leads from CSV (a ``.csv`` path) or JSON Lines; errors name the line."""
    stream = sys.stdin if path == "-" else open(path, newline="", encoding="utf-8")  # noqa: SIM115
    with stream:
        if path.lower().endswith(".csv"):
            reader = csv.DictReader(stream)
            for row in reader:
                if None in row:
                    raise ValueError(f"{path}:{reader.line_num}: more values than columns")
                if "lead_id" not in row:
                    raise ValueError(f"{path}: no 'lead_id' column")
                # A row that ends early has None for its last cells: missing, like empty ones.
                cells = {k: (v or "").strip() for k, v in row.items() if k}
                lead_id = cells.pop("lead_id")
                yield LeadInput(lead_id, {k: _parse_cell(v) for k, v in cells.items()})
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


def run(args: argparse.Namespace) -> int:
    try:
        leads = list(read_leads(args.file))
    except UnicodeDecodeError as exc:
        print(f"leadgw score: {args.file}: not {exc.encoding} text ({exc.reason})", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"leadgw score: {exc}", file=sys.stderr)
        return 2
    if not leads:
        print(f"leadgw score: {args.file} has no leads", file=sys.stderr)
        return 2
    import grpc
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

    scores: list[pb.LeadScore] = []
    columns = (TextColumn("scoring"), BarColumn(), MofNCompleteColumn())
    # A bar on stderr for files of several requests; it draws nothing when stderr is no terminal.
    with (
        open_channel(args) as channel,
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
    from gateway import lead_codec
    from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb

    request = pb.ScoreLeadsRequest(
        model_name=args.model, model_version=args.version, max_reasons=args.reasons
    )
    columns = lead_codec.leads_to_columns(chunk)
    if columns is None:
        request.leads.extend(lead_codec.lead_to_pb(lead) for lead in chunk)
    else:
        request.columns.CopyFrom(columns)
    response = stub.ScoreLeads(request, timeout=args.timeout, metadata=call_metadata(args.api_key))
    if columns is None:
        return list(response.scores)
    return lead_codec.scores_from_columns(response.columns)


def _score_record(score: pb.LeadScore, rank: int) -> dict[str, Any]:
    return {
        "rank": rank,
        "lead_id": score.lead_id,
        "probability": round(score.probability, 6),
        "band": band_name(score.band),
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
        band = band_name(score.band)
        lead = f"{score.lead_id:<{id_width}}"
        print(f"{rank:>4}  {lead}  {score.probability:>10.1%}  {band:<4}  {reasons}")
    if ranked:
        print(
            f"\nmodel {ranked[0].model_name} v{ranked[0].model_version}; reasons are signed "
            "contributions to the log-odds (positive raises the odds)"
        )
