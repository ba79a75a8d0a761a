"""The ``leadgw`` command: serve, score, models, keys, train, index, bench."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from pydantic import ValidationError

# Subcommands that live in their own modules: name → (module, help).
DELEGATED = {
    "train": ("runtimes.lead_model.cli", "train, calibrate and export the lead model"),
    "index": ("gateway.index_command", "send notes (JSON Lines or CSV) to a gateway's IndexNotes"),
    "bench": ("gateway.bench_command", "measure latency and throughput against peers"),
}


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file (keys: setting names)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind; 0 picks a free one (default 50051)")
    parser.add_argument(
        "--workers", type=int, help="processes sharing the port (default: one per usable core)"
    )
    parser.add_argument("--model-repository", type=Path, help="model repository folder")
    parser.add_argument("--keys-file", type=Path, help="API keys file (TOML, hashed keys)")
    parser.add_argument("--data-dir", type=Path, help="where embedded Qdrant keeps its files")
    parser.add_argument("--llm-base-url", help="OpenAI-compatible endpoint for summaries")
    parser.add_argument("--metrics-port", type=int, help="Prometheus endpoint port")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--log-format", choices=["json", "text"])


def _settings_from(args: argparse.Namespace):
    from gateway.settings import Settings

    overrides = {
        key: value
        for key, value in vars(args).items()
        if value is not None and key not in ("command", "func", "config")
    }
    if args.config is not None:
        overrides["config_file"] = args.config
    return Settings(**overrides)


def _run_serve(args: argparse.Namespace) -> int:
    try:
        settings = _settings_from(args)
    except (ValidationError, FileNotFoundError) as exc:
        print(f"leadgw serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    from gateway.server import run_serve

    return run_serve(settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadgw",
        description="gRPC inference gateway for lead prioritisation: scores with reasons, "
        "grounded summaries, benchmarks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. Every option can also be set as LEADGW_<NAME> in the "
        "environment or in the --config file; options win over both.",
    )
    _serve_arguments(serve)
    serve.set_defaults(func=_run_serve)

    from gateway import client_commands

    client_commands.add_commands(commands)

    for name, (module, help_text) in DELEGATED.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            sub.set_defaults(func=_missing(name, exc))
            continue
        loaded.add_arguments(sub)
        sub.set_defaults(func=loaded.run)
    return parser


def _missing(name: str, exc: Exception):
    def run(args: argparse.Namespace) -> int:
        print(f"leadgw {name}: not available in this installation ({exc})", file=sys.stderr)
        return 2

    return run


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`leadgw score big.jsonl | head`): stop without a traceback, and
        # point stdout at /dev/null so the interpreter's own flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
