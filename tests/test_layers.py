"""Arrows between packages point one way: runtimes <- retrieval <- gateway; benchmarks apart.

Read from the source with ``ast`` (imports inside functions and under TYPE_CHECKING count), so
a new import that breaks the layering fails here, whatever runs at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtimes", "retrieval", "gateway", "benchmarks", "leadgw_client")

# package → packages it must never import
FORBIDDEN = {
    "runtimes": {"retrieval", "gateway", "benchmarks", "leadgw_client"},
    "retrieval": {"gateway", "benchmarks", "leadgw_client"},
    "benchmarks": {"gateway"},
    "leadgw_client": {"gateway", "runtimes", "retrieval", "benchmarks"},
    "gateway": set(),
}
# Offline training: only the ``leadgw train`` command may import it.
TRAINING = "runtimes.training"
TRAINING_USERS = {"gateway/cli/train.py"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources(package: str) -> list[Path]:
    return sorted(
        p for p in (ROOT / package).rglob("*.py") if "pb" not in p.relative_to(ROOT).parts[:2]
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down(package: str) -> None:
    bad = []
    for path in sources(package):
        for module in imports_of(path):
            if module.partition(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not bad, "\n".join(bad)


def test_serving_never_imports_training() -> None:
    bad = []
    for package in PACKAGES:
        for path in sources(package):
            relative = path.relative_to(ROOT)
            if relative.parts[:2] == ("runtimes", "training") or str(relative) in TRAINING_USERS:
                continue
            bad += [
                f"{relative} imports {m}"
                for m in imports_of(path)
                if m == TRAINING or m.startswith(TRAINING + ".")
            ]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from gateway.settings import Settings\n    import retrieval\n")
    assert imports_of(module) == {"gateway.settings", "retrieval"}
