"""``leadgw models``: what a running gateway has loaded."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.cli.connection import add_connection_arguments, call_metadata, open_channel

DESCRIPTION = (
    "List models, versions, state and tensors of a running gateway (needs scope 'admin' when "
    "keys are in use)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import grpc

    from leadgw_client.pb.inference import grpc_service_pb2 as oip
    from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc

    metadata = call_metadata(args.api_key)
    rows = []
    with open_channel(args) as channel:
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
