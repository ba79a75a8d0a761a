"""A settings file that is missing, a folder or not TOML stops every command that reads the
settings (serve, notes) with one line naming it and exit 2, whether ``--config`` or
``LEADGW_CONFIG_FILE`` names it; never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main

ROOT = Path(__file__).resolve().parents[3]


def bad_config_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name → (file, what the one line says about it)."""
    not_toml = tmp_path / "not-toml.toml"
    not_toml.write_text('port = "50051\n')
    not_utf8 = tmp_path / "not-utf8.toml"
    not_utf8.write_bytes(b"port = 1 # \xff\n")
    return {
        "missing": (tmp_path / "missing.toml", "does not exist"),
        "folder": (tmp_path, "is a directory"),
        "not TOML": (not_toml, "is not valid TOML"),
        "not UTF-8": (not_utf8, "is not valid TOML"),
    }


def serve(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "LEADGW_DATA_DIR": str(tmp_path / "data"),
        "LEADGW_WORKERS": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", *args],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["missing", "folder", "not TOML", "not UTF-8"])
@pytest.mark.parametrize("named_by", ["--config", "LEADGW_CONFIG_FILE"])
def test_serve_names_a_bad_config_file_in_one_line(
    tmp_path: Path, kind: str, named_by: str
) -> None:
    path, problem = bad_config_files(tmp_path)[kind]
    if named_by == "--config":
        done = serve(tmp_path, "--config", str(path), env={})
    else:
        done = serve(tmp_path, env={"LEADGW_CONFIG_FILE": str(path)})
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"leadgw serve: config file {path} {problem}"), done.stderr


def test_serve_reads_the_settings_of_its_config_file(tmp_path: Path) -> None:
    # A value out of range that only the file gives: refused, so it was read (nothing starts).
    config = tmp_path / "leadgw.toml"
    config.write_text("metrics_port = 70000\n")
    done = serve(tmp_path, "--config", str(config), env={})
    assert done.returncode == 2, done.stderr
    assert "invalid settings" in done.stderr and "metrics_port" in done.stderr


NOTES_ACTIONS = [["snapshot", "snap.tar"], ["restore", "snap.tar"], ["reindex"]]


@pytest.mark.parametrize("action", NOTES_ACTIONS, ids=lambda a: a[0])
@pytest.mark.parametrize("kind", ["missing", "folder", "not TOML", "not UTF-8"])
def test_notes_names_a_bad_config_file_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, kind: str, action: list[str]
) -> None:
    path, problem = bad_config_files(tmp_path)[kind]
    monkeypatch.setenv("LEADGW_CONFIG_FILE", str(path))
    assert main(["notes", *action, "--data-dir", str(tmp_path / "data")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"leadgw notes: config file {path} {problem}")


@pytest.mark.parametrize("action", NOTES_ACTIONS, ids=lambda a: a[0])
def test_notes_takes_config_as_serve_does(tmp_path: Path, capsys, action: list[str]) -> None:
    missing = tmp_path / "missing.toml"
    assert main(["notes", *action, "--config", str(missing)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"leadgw notes: config file {missing} does not exist"


def test_notes_reads_the_settings_of_its_config_file(tmp_path: Path, capsys) -> None:
    # A setting only the file gives: snapshot refuses a Qdrant server, so it must have read it.
    config = tmp_path / "leadgw.toml"
    config.write_text('qdrant_url = "http://127.0.0.1:9"\n')
    code = main(["notes", "snapshot", str(tmp_path / "s.tar"), "--config", str(config)])
    assert code == 2
    assert "points at a Qdrant server" in capsys.readouterr().err
