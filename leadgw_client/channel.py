"""Channels to one gateway or to every replica behind a headless Kubernetes Service."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

# Round-robin over every address the target resolves to (every pod of a headless Service, or
# every address given). gRPC's own retries are off: the client retries itself, honouring the
# server's RetryInfo, so a call is never retried twice over.
_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
CHANNEL_OPTIONS: tuple[tuple[str, str | int], ...] = (
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS to the gateway: ``ca`` verifies the server (None: the system's roots); ``cert`` and
    ``key`` are this client's certificate for mTLS."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ValueError("mTLS needs both a client certificate and its key")
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes() if self.ca else None,
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )


def channel_target(target: str | Sequence[str]) -> str:
    """One gRPC target for a name or a list of ``host:port`` addresses.

    ``"dns:///leadgw.prod.svc.cluster.local:50051"`` resolves every pod of a headless Service;
    a list of IP addresses becomes one ``ipv4:``/``ipv6:`` target, balanced round-robin."""
    if isinstance(target, str):
        return target
    addresses = list(target)
    if not addresses:
        raise ValueError("no address to connect to")
    if len(addresses) == 1:
        return addresses[0]
    families = {_family(address) for address in addresses}
    if len(families) != 1 or None in families:
        raise ValueError(
            "a list of addresses must be IP literals of one family (host:port or [v6]:port); "
            "for host names, use one dns:/// target"
        )
    return f"{families.pop()}:{','.join(addresses)}"


def _family(address: str) -> str | None:
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        return "ipv4" if ipaddress.ip_address(host).version == 4 else "ipv6"
    except ValueError:
        return None


def open_channel(
    target: str | Sequence[str],
    tls: Tls | None = None,
    options: Sequence[tuple[str, str | int]] = (),
) -> grpc.Channel:
    merged = (*CHANNEL_OPTIONS, *options)
    address = channel_target(target)
    if tls is None:
        return grpc.insecure_channel(address, options=merged)
    return grpc.secure_channel(address, tls.credentials(), options=merged)
