"""The committed generated code matches what ``make protos`` would write today."""

from __future__ import annotations

from pathlib import Path

from gateway import protogen


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in protogen.generate(tmp_path)}
    committed_root = protogen.ROOT
    committed = {
        p.relative_to(committed_root): p.read_bytes()
        for p in (committed_root / protogen.PACKAGE_PREFIX).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sorted(committed) == sorted(fresh), "files differ: run `make protos`"
    stale = [str(path) for path, content in fresh.items() if committed[path] != content]
    assert not stale, f"stale generated files (run `make protos`): {stale}"
