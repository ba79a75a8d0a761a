"""The ``leadgw`` command.

Each subcommand is a module of this package with ``add_arguments(parser)`` and ``run(args)``.
Only the chosen command's module is imported, and each imports its heavy dependencies inside
``run``, so ``leadgw --help`` starts at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name → (module, one-line help). The order is the order ``leadgw --help`` lists them in.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("gateway.cli.serve", "run the gateway"),
    "score": (
        "gateway.cli.score",
        "score leads from a JSON Lines or CSV file, print a ranked table with reasons",
    ),
    "summarize": (
        "gateway.cli.summarize",
        "stream a gateway's summary of one lead, then its citations and timings",
    ),
    "models": (
        "gateway.cli.models",
        "list the models a gateway has loaded, their versions and status",
    ),
    "keys": ("gateway.cli.keys", "create API keys (printed once; only their hash is stored)"),
    "index": ("gateway.cli.index", "send notes (JSON Lines or CSV) to a gateway's IndexNotes"),
    "notes": ("gateway.cli.notes", "snapshot, restore or reindex the notes store"),
    "train": ("gateway.cli.train", "train, calibrate and export the lead model"),
    "bench": ("gateway.cli.bench", "measure latency and throughput against peers"),
}

# Modules that only an optional extra installs, and the extra that brings them.
OPTIONAL_MODULES = {"onnx": "train", "tomli_w": "train", "matplotlib": "plots"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; ``command``'s own arguments are added only when it is named."""
    parser = argparse.ArgumentParser(
        prog="leadgw",
        description="gRPC inference gateway for lead prioritisation: scores with reasons, "
        "grounded summaries, benchmarks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if name != command:
            commands.add_parser(name, help=help_text, add_help=False)
            continue
        module = importlib.import_module(module_name)
        description = getattr(module, "DESCRIPTION", help_text)
        sub = commands.add_parser(name, help=help_text, description=description)
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    from gateway.cli.connection import ConnectionOptionsError

    try:
        return int(args.func(args))
    except ConnectionOptionsError as exc:
        print(f"leadgw {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`leadgw score big.jsonl | head`): stop without a traceback, and
        # point stdout at /dev/null so the interpreter's own flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ModuleNotFoundError as exc:
        # Only a missing optional extra is the user's to fix; anything else is a bug: re-raise.
        extra = OPTIONAL_MODULES.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        print(
            f"leadgw {args.command}: needs the '{extra}' extra "
            f"(pip install 'leadgw[{extra}]'): {exc}",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
