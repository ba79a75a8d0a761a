"""``leadgw summarize``: stream a gateway's summary of one lead."""

from __future__ import annotations

import argparse
import sys

from gateway.cli.connection import add_connection_arguments, call_metadata, open_channel

DESCRIPTION = (
    "Stream SummarizeLead for LEAD_ID from a running gateway (needs scope 'summarize' when keys "
    "are in use): the text as it arrives, then the cited notes, which generator wrote it (an "
    "LLM, or the marked fallback) and the latency breakdown."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lead_id", help="the lead to summarise, e.g. demo-0001")
    add_connection_arguments(parser, timeout=30.0)
    parser.add_argument("--json", action="store_true", help="print the final message as JSON")


def run(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
    from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

    final = None
    with open_channel(args) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        try:
            for message in stub.SummarizeLead(
                pb.SummarizeLeadRequest(lead_id=args.lead_id),
                timeout=args.timeout,
                metadata=call_metadata(args.api_key),
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
