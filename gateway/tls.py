"""TLS and mTLS on the gRPC port, with certificates re-read when their files change.

grpc asks ``CertificateFiles.fetch`` for a new configuration at every TLS handshake (on one of
its own threads); it answers None ("no change") unless a file's modification time, size or inode
moved. A new certificate therefore reaches new connections at once, while established connections
and the calls on them carry on with the one they negotiated.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import grpc

from gateway.settings import Settings, is_loopback

log = logging.getLogger(__name__)

FileStamp = tuple[int, int, int]


def _stamp(path: Path) -> FileStamp:
    info = os.stat(path)
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class CertificateFiles:
    """The server's certificate, key and optional client CA, read again when they change."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self._paths = (cert, key) if client_ca is None else (cert, key, client_ca)
        self._client_ca = client_ca
        self._lock = threading.Lock()  # handshakes run on several of grpc's threads
        self._stamps: tuple[FileStamp, ...] = ()

    def load(self) -> grpc.ServerCertificateConfiguration:
        """The configuration from the files now. Raises OSError or ValueError if unusable."""
        stamps = tuple(_stamp(path) for path in self._paths)
        cert, key, *ca = (path.read_bytes() for path in self._paths)
        for path, data in zip(self._paths, (cert, key, *ca), strict=True):
            if b"-----BEGIN " not in data:
                raise ValueError(f"{path} holds no PEM block")
        self._stamps = stamps
        return grpc.ssl_server_certificate_configuration(
            [(key, cert)], root_certificates=ca[0] if ca else None
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc's fetcher: a new configuration if a file changed since the last load, else None.

        A file that cannot be read or holds no PEM (half written) keeps the current certificate;
        the next handshake tries again.
        """
        with self._lock:
            try:
                if tuple(_stamp(path) for path in self._paths) == self._stamps:
                    return None
                config = self.load()
            except (OSError, ValueError) as exc:
                log.error("TLS files changed but cannot be used, keeping the current ones: %s", exc)
                return None
        log.info("TLS certificate files reloaded: %s", ", ".join(str(p) for p in self._paths))
        return config


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Credentials for the port, or None for plaintext. Raises ValueError for unusable files."""
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        if settings.tls_client_ca_file is not None:
            raise ValueError("tls_client_ca_file (mTLS) needs tls_cert_file and tls_key_file")
        return None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ValueError("TLS needs both tls_cert_file and tls_key_file")
    files = CertificateFiles(
        settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    )
    try:
        initial = files.load()
    except OSError as exc:
        raise ValueError(f"cannot read the TLS files: {exc}") from exc
    return grpc.dynamic_ssl_server_credentials(
        initial,
        files.fetch,
        require_client_authentication=settings.tls_client_ca_file is not None,
    )


def add_port(
    server: grpc.aio.Server, settings: Settings, credentials: grpc.ServerCredentials | None
) -> int:
    """Binds the gRPC port, plaintext or TLS; returns the port (0: could not bind)."""
    address = f"{settings.host}:{settings.port}"
    if credentials is None:
        return server.add_insecure_port(address)
    mtls = settings.tls_client_ca_file is not None
    log.info("TLS on %s%s", address, ", client certificates required (mTLS)" if mtls else "")
    return server.add_secure_port(address, credentials)


def check_transport(settings: Settings, *, quiet: bool = False) -> None:
    """Refuses API keys in clear off loopback, unless the opt-out is set (then says so loudly,
    unless ``quiet``). Raises ValueError with what to set."""
    tls = settings.tls_cert_file is not None
    if tls or is_loopback(settings.host) or settings.keys_file is None:
        return
    if not settings.allow_insecure_keys_off_loopback:
        raise ValueError(
            f"refusing to serve on {settings.host} without TLS: API keys would cross the network "
            "in clear. Set LEADGW_TLS_CERT_FILE and LEADGW_TLS_KEY_FILE (see docs/security.md), "
            "or LEADGW_ALLOW_INSECURE_KEYS_OFF_LOOPBACK=true to accept the risk"
        )
    if not quiet:
        log.error(
            "INSECURE: serving on %s without TLS; API keys cross the network in clear "
            "(allow_insecure_keys_off_loopback is set)",
            settings.host,
        )
