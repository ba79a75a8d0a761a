"""A key store finds a caller by its key's digest: one lookup, whatever the number of keys."""

from __future__ import annotations

import hashlib

import pytest

from gateway import auth
from gateway.auth import Caller, KeyStore, hash_key
from runtimes.errors import Unauthenticated

KEYS = [f"lgw_key_{i:05d}" for i in range(5000)]


@pytest.fixture(scope="module")
def store() -> KeyStore:
    return KeyStore(
        (hash_key(key), Caller(f"tenant-{i}", frozenset({"score"}), f"key-{i}"))
        for i, key in enumerate(KEYS)
    )


@pytest.mark.parametrize("index", [0, 2500, 4999])
def test_each_key_finds_its_own_caller(store: KeyStore, index: int) -> None:
    caller = store.authenticate([("authorization", f"Bearer {KEYS[index]}")])
    assert caller.tenant == f"tenant-{index}"
    assert caller.key_name == f"key-{index}"


@pytest.mark.parametrize(
    "sent", ["lgw_key_5000", KEYS[7].upper(), KEYS[7] + "x", hash_key(KEYS[7])]
)
def test_a_key_not_in_the_store_is_refused(store: KeyStore, sent: str) -> None:
    with pytest.raises(Unauthenticated, match="invalid API key"):
        store.authenticate([("x-api-key", sent)])


def test_authenticating_hashes_once_and_never_scans_the_store(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 5,000 keys, one call hashes the sent key once and compares it with no stored
    digest one by one (the old scan made 5,000 comparisons for the last key)."""
    hashed: list[str] = []
    real_sha256 = hashlib.sha256

    def counting_sha256(data: bytes = b"") -> object:
        hashed.append(data.decode())
        return real_sha256(data)

    compared: list[object] = []
    monkeypatch.setattr(auth.hashlib, "sha256", counting_sha256)
    monkeypatch.setattr("hmac.compare_digest", lambda a, b: compared.append(a) or a == b)
    assert store.authenticate([("authorization", f"Bearer {KEYS[-1]}")]).tenant == "tenant-4999"
    assert hashed == [KEYS[-1]]
    assert compared == []
