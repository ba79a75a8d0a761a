"""Connection options shared by the client commands (score, summarize, models)."""

from __future__ import annotations

import argparse
import os

DEFAULT_ADDRESS = "127.0.0.1:50051"


def add_connection_arguments(parser: argparse.ArgumentParser, timeout: float = 10.0) -> None:
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


def call_metadata(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()
