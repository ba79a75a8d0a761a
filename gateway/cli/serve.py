"""``leadgw serve``: run the gateway."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.settings_file import add_config_argument, load_settings

DESCRIPTION = (
    "Run the gateway. Every option can also be set as LEADGW_<NAME> in the environment or in "
    "the --config file; options win over both."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
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
    parser.add_argument(
        "--model-repository",
        type=Path,
        help="model repository folder (default: the bundled runtimes/bundled_models/)",
    )
    parser.add_argument(
        "--model-control-mode",
        choices=["none", "poll", "explicit"],
        help="none (default): load at start; poll: watch the repository; explicit: RPCs only",
    )
    parser.add_argument(
        "--repository-poll-secs",
        type=float,
        help="seconds between reads of the repository in poll and explicit modes (default 15)",
    )
    parser.add_argument(
        "--keys-file",
        type=Path,
        help="API keys file (TOML, hashed keys; default: none, no auth: loopback --host only)",
    )
    parser.add_argument(
        "--tls-cert-file", type=Path, help="PEM server certificate: TLS (default: none, plaintext)"
    )
    parser.add_argument("--tls-key-file", type=Path, help="PEM private key of --tls-cert-file")
    parser.add_argument(
        "--tls-client-ca-file",
        type=Path,
        help="PEM CA for client certificates: mTLS (default: none, no client certificate asked)",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="where the embedded notes store keeps files (default .leadgw)"
    )
    parser.add_argument(
        "--llm-base-url",
        help="OpenAI-compatible endpoint for summaries (default: none, every summary is the "
        "marked fallback)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="Prometheus endpoint port; 0 picks one (default: none, no endpoint unless "
        "OTEL_METRICS_EXPORTER=prometheus)",
    )
    parser.add_argument(
        "--metrics-host", help="address the Prometheus endpoint binds (default 127.0.0.1)"
    )
    parser.add_argument(
        "--health-port",
        type=int,
        help="also serve grpc.health.v1 alone, in plaintext, here (default: none, off)",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO (default), WARNING, ERROR")
    parser.add_argument("--log-format", choices=["json", "text"], help="json (default) or text")


def run(args: argparse.Namespace) -> int:
    overrides = {
        key: value
        for key, value in vars(args).items()
        if value is not None and key not in ("command", "func", "config")
    }
    settings = load_settings("serve", args.config, **overrides)
    if settings is None:
        return 2
    # Before the server's modules import grpc, which reads its experiments once, on import.
    from gateway import grpc_experiments

    grpc_experiments.apply(settings.grpc_experiments)
    from gateway.server import run_serve

    return run_serve(settings)
