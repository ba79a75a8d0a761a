"""Connection options shared by the client commands (score, summarize, models, index)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"


class ConnectionOptionsError(Exception):
    """TLS options that do not go together, or files that cannot be read."""


def add_connection_arguments(
    parser: argparse.ArgumentParser, timeout: float = 10.0, *, inherit: bool = False
) -> None:
    """``--address``, ``--api-key``, ``--timeout`` and the TLS options.

    ``inherit``: for a sub-command's parser whose parent takes the same options. An option left
    out there keeps the value given to the parent: argparse copies every default of a
    sub-command's parser over the parent's values, so ``leadgw models --address A promote``
    would otherwise call the default address."""

    parser.add_argument(
        "--address",
        default=_default(DEFAULT_ADDRESS, inherit),
        help=f"gateway host:port (default {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--api-key",
        default=_default(os.environ.get("LEADGW_API_KEY", ""), inherit),
        help="API key (default: $LEADGW_API_KEY; none needed on a loopback gateway without keys)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=_default(timeout, inherit),
        help=f"seconds per call (default {timeout:g})",
    )
    add_tls_arguments(parser, inherit=inherit)


def add_tls_arguments(parser: argparse.ArgumentParser, *, inherit: bool = False) -> None:
    """``--ca``, ``--cert``, ``--key``, ``--tls``; ``inherit`` as in add_connection_arguments."""
    none = _default(None, inherit)
    tls = parser.add_argument_group("TLS (any of these: connect over TLS)")
    tls.add_argument(
        "--ca",
        type=Path,
        default=none,
        help="PEM CA certificates to verify the gateway (default: system CAs)",
    )
    tls.add_argument("--cert", type=Path, default=none, help="PEM client certificate, for mTLS")
    tls.add_argument("--key", type=Path, default=none, help="PEM private key of --cert")
    tls.add_argument(
        "--tls",
        action="store_true",
        default=_default(False, inherit),
        help="TLS with the system CAs",
    )


def _default(value: object, inherit: bool) -> object:
    return argparse.SUPPRESS if inherit else value


def call_metadata(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    """A channel to ``args.address``: TLS when any TLS option is given, else plaintext.

    Raises ConnectionOptionsError for a client certificate without its key (or the reverse) or
    files that cannot be read."""
    import grpc

    if not (args.tls or args.ca or args.cert or args.key):
        return grpc.insecure_channel(args.address)
    if (args.cert is None) != (args.key is None):
        raise ConnectionOptionsError("--cert and --key go together: a certificate and its key")
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=args.ca.read_bytes() if args.ca else None,
            private_key=args.key.read_bytes() if args.key else None,
            certificate_chain=args.cert.read_bytes() if args.cert else None,
        )
    except OSError as exc:
        raise ConnectionOptionsError(f"cannot read a TLS file: {exc}") from exc
    return grpc.secure_channel(args.address, credentials)
