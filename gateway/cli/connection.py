"""Connection options shared by the client commands (score, summarize, models, index)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
API_KEY_HELP = "API key (default: $LEADGW_API_KEY; none needed on a loopback gateway without keys)"


# gRPC's own target schemes (``dns:///host:port``, ``unix:/path``...): passed on as they are.
_GRPC_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:")


class ConnectionOptionsError(Exception):
    """An address that is no gateway address, TLS options that do not go together, or files
    that cannot be read."""


def add_connection_arguments(
    parser: argparse.ArgumentParser,
    timeout: float = 10.0,
    *,
    inherit: bool = False,
    timeout_help: str | None = None,
) -> None:
    """``--address``, ``--api-key``, ``--timeout`` and the TLS options.

    ``inherit``: for a sub-command's parser whose parent takes the same options. An option left
    out there keeps the value given to the parent: argparse copies every default of a
    sub-command's parser over the parent's values, so ``leadgw models --address A promote``
    would otherwise call the default address. ``timeout_help`` replaces ``--timeout``'s help."""

    add_address_and_key_arguments(parser, inherit=inherit)
    parser.add_argument(
        "--timeout",
        type=float,
        default=_default(timeout, inherit),
        help=timeout_help or f"seconds per call (default {timeout:g})",
    )
    add_tls_arguments(parser, inherit=inherit)


def add_address_and_key_arguments(
    parser: argparse.ArgumentParser, *, inherit: bool = False
) -> None:
    """``--address`` and ``--api-key``, worded alike in every client command."""
    parser.add_argument(
        "--address",
        default=_default(DEFAULT_ADDRESS, inherit),
        help=f"gateway host:port (default {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--api-key",
        default=_default(os.environ.get("LEADGW_API_KEY", ""), inherit),
        help=API_KEY_HELP,
    )


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

    check_address(args.address)
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


def check_address(address: str) -> None:
    """Raises ConnectionOptionsError for an ``--address`` that is not ``host:port`` (nor one of
    gRPC's own targets). gRPC takes anything: an empty one fails each call with "target uri is
    not valid" and log lines, ``host:`` quietly means port 443, ``host:99999`` another port."""
    problem = _address_problem(address)
    if problem is not None:
        raise ConnectionOptionsError(
            f"--address {address!r} {problem}; give the gateway's host:port, e.g. {DEFAULT_ADDRESS}"
        )


def _address_problem(address: str) -> str | None:
    if not address.strip():
        return "is empty"
    if any(c.isspace() for c in address):
        return "has a space in it"
    if address.startswith(_GRPC_SCHEMES):
        return None if address.partition(":")[2].strip("/") else "has nothing after its scheme"
    if "://" in address:
        return "is a URL; leave out its scheme"
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return "is not a host:port ([IPv6]:port has one ']' before the ':')"
        port = rest[1:] if rest else None
    else:
        host, colon, port_text = address.rpartition(":")
        if not colon:
            return None  # a host alone: gRPC's default port
        if ":" in host:
            return _bare_ipv6_problem(address)
        port = port_text
    if not host:
        return "names no host"
    if port == "":
        return "has no port after its ':'"
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        return f"has port {port!r}, not a number from 1 to 65535"
    return None


def _bare_ipv6_problem(address: str) -> str | None:
    import ipaddress

    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return "is not a host:port (an IPv6 address with a port goes in brackets: [::1]:50051)"
    return None
