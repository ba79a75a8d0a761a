"""The keys file, reloaded when it changes and on request (SIGHUP), without a restart.

A watcher polls the file's modification time, size and inode twice a second (a ``stat`` on a
thread: cheap) and reads it again when they move; ``request_reload`` reads it at once whatever
they say. A reload swaps the whole key table in one assignment, so a call sees the old table or
the new one, never a mix, and calls with unchanged keys never fail. A file that cannot be read or
parsed, or that holds no key at all (a half-written or emptied file), keeps the old keys and logs
an error: a bad edit neither opens the gate nor locks everyone out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from gateway.auth import Caller, KeyStore, TenantLimits

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5

FileStamp = tuple[int, int, int] | None


def _stamp(path: Path) -> FileStamp:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class ReloadingKeyStore:
    """A ``KeyStore`` that follows its file. ``authenticate`` always uses the latest good one."""

    def __init__(self, path: Path, store: KeyStore, stamp: FileStamp) -> None:
        self._path = path
        self._store = store
        self._stamp = stamp
        self._reload_now: asyncio.Event | None = None  # created by watch(), in the loop
        self.reloads = 0
        """Successful reloads so far."""

    @classmethod
    def from_file(cls, path: Path) -> ReloadingKeyStore:
        """Reads the file once. Raises ValueError (naming the entry) if it is unusable."""
        stamp = _stamp(path)
        return cls(path, KeyStore.from_file(path), stamp)

    @property
    def store(self) -> KeyStore:
        return self._store

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        return self._store.authenticate(metadata)

    def limits_of(self, tenant: str) -> TenantLimits:
        return self._store.limits_of(tenant)

    def reload(self, *, force: bool = False) -> bool:
        """Reads the file again if it changed (or ``force``). Blocking: call it off the loop.

        Returns True when new keys are in use."""
        stamp = _stamp(self._path)
        if stamp == self._stamp and not force:
            return False
        self._stamp = stamp  # a bad file is reported once, not at every poll
        try:
            store = KeyStore.from_file(self._path)
        except ValueError as exc:
            log.error("keys file not reloaded, the previous keys stay in use: %s", exc)
            return False
        if len(store) == 0:
            log.error(
                "keys file not reloaded, the previous keys stay in use: %s holds no key "
                "(to refuse every caller, stop the gateway)",
                self._path,
            )
            return False
        self._store = store
        self.reloads += 1
        log.info("keys file reloaded: %d keys", len(store))
        return True

    def request_reload(self) -> None:
        """Reload at once, changed or not (SIGHUP). Safe to call from a signal handler."""
        if self._reload_now is not None:
            self._reload_now.set()

    async def watch(self, interval_s: float = POLL_INTERVAL_S) -> None:
        """Runs until cancelled: reloads on change (polled) and on ``request_reload``."""
        self._reload_now = asyncio.Event()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reload_now.wait(), interval_s)
            force = self._reload_now.is_set()
            self._reload_now.clear()
            await asyncio.to_thread(self.reload, force=force)
