"""``leadgw serve``: run the gateway."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = (
    "Run the gateway. Every option can also be set as LEADGW_<NAME> in the environment or in "
    "the --config file; options win over both."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file (keys: setting names)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind; 0 picks a free one (default 50051)")
    parser.add_argument(
        "--workers", type=int, help="processes sharing the port (default: one per usable core)"
    )
    parser.add_argument(
        "--pin-workers",
        choices=["auto", "on", "off"],
        help="keep worker i on the i-th CPU: auto (default; when the workers are one per CPU "
        "the gateway has to itself), on or off",
    )
    parser.add_argument("--model-repository", type=Path, help="model repository folder")
    parser.add_argument(
        "--model-control-mode",
        choices=["none", "poll", "explicit"],
        help="none (default): load at start; poll: watch the repository; explicit: RPCs only",
    )
    parser.add_argument(
        "--repository-poll-secs", type=float, help="poll interval of the model repository"
    )
    parser.add_argument("--keys-file", type=Path, help="API keys file (TOML, hashed keys)")
    parser.add_argument("--tls-cert-file", type=Path, help="PEM server certificate: TLS")
    parser.add_argument("--tls-key-file", type=Path, help="PEM private key of --tls-cert-file")
    parser.add_argument(
        "--tls-client-ca-file", type=Path, help="PEM CA for client certificates: mTLS"
    )
    parser.add_argument("--data-dir", type=Path, help="where the embedded notes store keeps files")
    parser.add_argument("--llm-base-url", help="OpenAI-compatible endpoint for summaries")
    parser.add_argument("--metrics-port", type=int, help="Prometheus endpoint port")
    parser.add_argument(
        "--metrics-host", help="address the Prometheus endpoint binds (default 127.0.0.1)"
    )
    parser.add_argument(
        "--health-port", type=int, help="also serve grpc.health.v1 alone, in plaintext, here"
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--log-format", choices=["json", "text"])


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from gateway.settings import Settings

    overrides = {
        key: value
        for key, value in vars(args).items()
        if value is not None and key not in ("command", "func", "config")
    }
    if args.config is not None:
        overrides["config_file"] = args.config
    try:
        settings = Settings(**overrides)
    except (ValidationError, FileNotFoundError) as exc:
        print(f"leadgw serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    # Before the server's modules import grpc, which reads its experiments once, on import.
    from gateway import grpc_experiments

    grpc_experiments.apply(settings.grpc_experiments)
    from gateway.server import run_serve

    return run_serve(settings)
