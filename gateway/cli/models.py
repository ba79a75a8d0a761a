"""``leadgw models``: what a running gateway has loaded, and model control against it.

``leadgw models`` lists; ``leadgw models load|unload|promote|rollback|shadow|canary`` call the
gateway's ``RepositoryModelLoad`` / ``RepositoryModelUnload`` (scope ``admin``), which return
once every worker has applied the change."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.cli.connection import add_connection_arguments, call_metadata, open_channel

DESCRIPTION = (
    "List models, versions, state and tensors of a running gateway, or load, unload, shadow, "
    "canary, promote and roll back versions while it serves (scope 'admin' when keys are in use; "
    "the gateway's model_control_mode must be poll or explicit to change anything)."
)

ACTIONS = {
    "load": "load a model (every version its policy selects), or one --version",
    "unload": "unload one --version, or the whole model",
    "promote": "make --version (default: the canary or shadow) the live version",
    "rollback": "make the previous live version live again",
    "shadow": "score a copy of live traffic on --version (compare in the metrics), of a --rate "
    "share of leads; --rate alone changes the rate of the shadow on; --off ends it",
    "canary": "serve --version to a sticky --weight share of leads; --weight 0 ends it",
}

# What each action does without --version.
VERSION_HELP = {
    "load": "default: every version the model's policy selects",
    "unload": "default: every version, the whole model",
    "promote": "default: the canary or shadow",
    "shadow": "needed to start a shadow",
    "canary": "needed unless --weight 0",
}

LIST_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 120.0
"""A control RPC returns once every worker has applied it (``model_control_timeout_s``)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(
        parser,
        timeout=LIST_TIMEOUT_S,
        timeout_help=f"seconds per call (default {LIST_TIMEOUT_S:g}; "
        f"{CONTROL_TIMEOUT_S:g} with an ACTION)",
    )
    # None: the listing's or the action's own default, unless --timeout is given before the
    # action or after it.
    parser.set_defaults(timeout=None)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    for name, help_text in ACTIONS.items():
        sub = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "model", nargs="?", default="lead_scorer", help="model name (default: lead_scorer)"
        )
        # An option given before the action (`leadgw models --address A promote`) holds too.
        add_connection_arguments(sub, timeout=CONTROL_TIMEOUT_S, inherit=True)
        if name in VERSION_HELP:
            sub.add_argument("--version", help=f"version number ({VERSION_HELP[name]})")
        if name == "unload":
            sub.add_argument(
                "--force", action="store_true", help="even if it leaves the model with nothing"
            )
        if name == "shadow":
            sub.add_argument("--off", action="store_true", help="end the shadow")
            sub.add_argument(
                "--rate",
                help="share of leads compared, 0..1, sticky by tenant and lead id (default: 1)",
            )
        if name == "canary":
            sub.add_argument("--weight", type=float, required=True, help="share of leads, 0..1")
        if name == "load":
            sub.add_argument("--alias", help="also name --version so (requests may use the name)")


def run(args: argparse.Namespace) -> int:
    if args.timeout is None:
        args.timeout = CONTROL_TIMEOUT_S if args.action else LIST_TIMEOUT_S
    if args.action:
        return _control(args)
    return _list(args)


def _control(args: argparse.Namespace) -> int:
    import grpc

    from leadgw_client.pb.inference import grpc_service_pb2 as oip
    from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc

    params: dict[str, str | bool] = {}
    version = getattr(args, "version", None)
    if version:
        params["version"] = version
    if args.action == "promote":
        params["promote"] = True
    elif args.action == "rollback":
        params["rollback"] = True
    elif args.action == "shadow":
        if args.rate is None or version or args.off:
            params["shadow"] = not args.off
        if args.rate is not None:
            params["shadow_rate"] = args.rate
    elif args.action == "canary":
        params["canary_weight"] = repr(args.weight)
    elif args.action == "unload" and args.force:
        params["force"] = True
    if getattr(args, "alias", None):
        params["alias"] = args.alias
    request: Any = (
        oip.RepositoryModelUnloadRequest(model_name=args.model)
        if args.action == "unload"
        else oip.RepositoryModelLoadRequest(model_name=args.model)
    )
    for key, value in params.items():
        if isinstance(value, bool):
            request.parameters[key].bool_param = value
        else:
            request.parameters[key].string_param = value
    with open_channel(args) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        call = stub.RepositoryModelUnload if args.action == "unload" else stub.RepositoryModelLoad
        try:
            call(request, timeout=args.timeout, metadata=call_metadata(args.api_key))
        except grpc.RpcError as exc:
            print(
                f"leadgw models {args.action}: {exc.code().name}: {exc.details()}", file=sys.stderr
            )
            return 1
    done = " ".join(f"{k}={v}" for k, v in params.items())
    print(f"{args.action} {args.model}{' ' + done if done else ''}: applied by every worker")
    return 0


def _list(args: argparse.Namespace) -> int:
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
