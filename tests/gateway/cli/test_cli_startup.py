"""``leadgw --help`` must not load the world: only the chosen command's module is imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway.cli import COMMANDS, build_parser

# Modules that cost hundreds of milliseconds to import; none is needed to list the commands.
HEAVY = ("grpc", "pydantic", "qdrant_client", "onnxruntime", "numpy", "openai", "rich")


def imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nimport json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_top_level_help_imports_no_heavy_module() -> None:
    code = "from gateway.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    loaded = imported_after(code)
    assert "gateway.cli" in loaded
    assert not {name for name in HEAVY if name in loaded}
    assert not {m for m in loaded if m.startswith("gateway.cli.") and m != "gateway.cli"}


def test_a_command_loads_only_its_own_module() -> None:
    code = (
        "from gateway.cli import main\n"
        "try:\n    main(['keys', 'create', '--help'])\nexcept SystemExit:\n    pass"
    )
    loaded = imported_after(code)
    assert "gateway.cli.keys" in loaded
    others = {COMMANDS[name][0] for name in COMMANDS if name != "keys"}
    assert not others & loaded
    assert "grpc" not in loaded


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_builds_its_parser(name: str) -> None:
    parser = build_parser(name)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([name, "--help"])
    assert exit_info.value.code == 0


def command_raising(tmp_path, monkeypatch, missing: str) -> None:
    """Registers a command ``boom`` whose run raises ModuleNotFoundError for ``missing``."""
    module = "leadgw_boom_" + missing.replace(".", "_")
    (tmp_path / f"{module}.py").write_text(
        "def add_arguments(parser):\n    pass\n\n"
        "def run(args):\n"
        f"    raise ModuleNotFoundError('missing module', name={missing!r})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(COMMANDS, "boom", (module, "raises"))


def test_a_bug_in_a_command_is_not_reported_as_a_missing_extra(tmp_path, monkeypatch) -> None:
    """A ModuleNotFoundError for a module no extra provides is a bug, and must surface."""
    from gateway import cli

    command_raising(tmp_path, monkeypatch, "gateway.typo")
    with pytest.raises(ModuleNotFoundError):
        cli.main(["boom"])


def test_a_missing_extra_is_named(tmp_path, monkeypatch, capsys) -> None:
    from gateway import cli

    command_raising(tmp_path, monkeypatch, "onnx")
    assert cli.main(["boom"]) == 2
    assert "leadgw[train]" in capsys.readouterr().err
