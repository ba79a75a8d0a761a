"""``leadgw keys create``: a new API key, printed once; only its hash is stored."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.auth import SCOPES, hash_key, new_key
from runtimes.ids import id_problem

DESCRIPTION = (
    "Create an API key for a tenant. The key is printed once; its hashed entry is appended to "
    "--keys-file (or printed, to paste into one)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key")
    create.add_argument("--tenant", required=True, help="tenant the key acts as")
    create.add_argument(
        "--scopes",
        default="score",
        help=f"comma-separated scopes from {','.join(SCOPES)} (default: score)",
    )
    create.add_argument(
        "--name", default="", help="a label for the key, shown in logs (default: the tenant)"
    )
    create.add_argument(
        "--keys-file",
        type=Path,
        help="append the hashed entry to this file (default: print it, to paste into one)",
    )


def run(args: argparse.Namespace) -> int:
    return run_create(args)


def run_create(args: argparse.Namespace) -> int:
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    if not scopes:
        # A key with no scope authenticates but may call nothing: a slip, never what was meant.
        print(f"leadgw keys: --scopes names no scope; known: {', '.join(SCOPES)}", file=sys.stderr)
        return 2
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        print(f"leadgw keys: unknown scopes {unknown}; known: {', '.join(SCOPES)}", file=sys.stderr)
        return 2
    problem = id_problem(args.tenant)
    if problem is not None:
        print(f"leadgw keys: tenant {problem}", file=sys.stderr)
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
        try:
            with open(args.keys_file, "a") as handle:
                handle.write("\n" + entry)
        except OSError as exc:
            # The key is not printed: no file holds its hash, so it could never be used.
            reason = exc.strerror or str(exc)
            print(f"leadgw keys: cannot append to {args.keys_file}: {reason}", file=sys.stderr)
            return 2
        print(f"appended the hashed entry to {args.keys_file}", file=sys.stderr)
    else:
        print(entry)
    print(f"API key (shown once): {key}")
    return 0
