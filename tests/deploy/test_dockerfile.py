"""The Dockerfile, checked without a container runtime: every path, command and setting it uses
exists, and the install it performs is the one tests/deploy/test_install.py exercises."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from gateway.settings import BUNDLED_MODELS, Settings
from tests.deploy.dockerfile import (
    Stage,
    dockerignore_excludes,
    read_dockerfile,
    read_dockerignore,
    shell_commands,
)
from tests.deploy.wheel_build import (
    ROOT,
    WHEEL_BUILD,
    WHEEL_GLOB,
    build_sources,
)

STAGES = read_dockerfile(ROOT / "Dockerfile")
BUILDER = next(stage for stage in STAGES if stage.name == "builder")
RUNTIME = STAGES[-1]
IGNORED = read_dockerignore(ROOT / ".dockerignore")
# A slim Python 3.11 base named by its full version (optionally also by digest).
PINNED_BASE = re.compile(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?")


def _copies(stage: Stage) -> list[tuple[str | None, list[str], str]]:
    """(--from stage or None, sources, destination) of each COPY."""
    copies = []
    for instruction in stage.all("COPY"):
        words = instruction.exec_form()
        source_stage = None
        while words[0].startswith("--"):
            flag = words.pop(0)
            if flag.startswith("--from="):
                source_stage = flag.removeprefix("--from=")
        copies.append((source_stage, words[:-1], words[-1]))
    return copies


def _runs(stage: Stage) -> list[list[str]]:
    return [command for run in stage.all("RUN") for command in shell_commands(run)]


def test_every_base_image_is_a_pinned_slim_python_3_11() -> None:
    assert len(STAGES) >= 2, "a multi-stage build"
    for stage in STAGES:
        assert PINNED_BASE.fullmatch(stage.base), stage.base


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    for stage in STAGES:
        for source_stage, sources, _ in _copies(stage):
            if source_stage is not None:
                continue
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not dockerignore_excludes(IGNORED, source), f"{source} is .dockerignored"


def test_copies_from_the_builder_take_what_the_builder_made() -> None:
    made = " ".join(run.arguments for run in BUILDER.all("RUN"))
    from_builder = [c for s in STAGES for c in _copies(s) if c[0] == "builder"]
    assert from_builder, "the runtime stage takes the wheel from the builder"
    for _, sources, _ in from_builder:
        for source in sources:
            assert f" {source.rstrip('/')} " in f" {made} ", f"the builder never writes {source}"


def test_the_dockerignore_keeps_local_state_out() -> None:
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", ".leadgw/qdrant"):
        assert dockerignore_excludes(IGNORED, path), path
    assert not dockerignore_excludes(IGNORED, "gateway/server.py")


def test_the_builder_copies_what_the_install_test_builds_from() -> None:
    copied = {Path(source).parts[0] for _, sources, _ in _copies(BUILDER) for source in sources}
    assert copied == set(build_sources()), "the wheel's packages and the files the build reads"


def test_the_wheel_is_built_as_the_install_test_builds_it() -> None:
    expected = ["python", "-m", *WHEEL_BUILD]
    builds = [c for c in _runs(BUILDER) if c[: len(expected)] == expected]
    assert len(builds) == 1, f"one `{' '.join(expected)} <dir> .` in the builder"
    assert builds[0][len(expected) + 1 :] == ["."]


def test_the_runtime_installs_that_wheel_into_a_venv() -> None:
    (_, _, wheel_dir), *_ = [c for c in _copies(RUNTIME) if c[0] == "builder"]
    installs = [c for c in _runs(RUNTIME) if c[:4] == ["python", "-m", "pip", "install"]]
    targets = [word for c in installs for word in c[4:] if not word.startswith("-")]
    assert f"{wheel_dir.rstrip('/')}/{WHEEL_GLOB}" in targets, "the wheel, not the source tree"
    assert not any("-e" in c or "--editable" in c for c in installs)
    assert targets == [f"{wheel_dir.rstrip('/')}/{WHEEL_GLOB}"], "the wheel alone: it is whole"
    venv = RUNTIME.env()["VIRTUAL_ENV"]
    assert ["python", "-m", "venv", venv] in _runs(RUNTIME)
    assert RUNTIME.env()["PATH"].startswith(f"{venv}/bin:"), "pip and leadgw are the venv's"


def test_every_command_it_runs_exists() -> None:
    for stage in STAGES:
        for command in _runs(stage):
            if command[0] == "python":
                assert command[1] == "-m"
                assert importlib.util.find_spec(command[2]) is not None, command
            else:
                assert shutil.which(command[0]) is not None, command


def test_the_entrypoint_is_leadgw_serve() -> None:
    (entrypoint,) = RUNTIME.all("ENTRYPOINT")
    assert entrypoint.arguments.startswith("["), "exec form, so SIGTERM reaches leadgw"
    program, command = entrypoint.exec_form()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert program in scripts
    helped = subprocess.run(
        [sys.executable, "-m", "gateway", command, "--help"], capture_output=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr


def test_it_runs_as_a_fixed_non_root_uid() -> None:
    (user,) = RUNTIME.all("USER")
    uid, _, gid = user.arguments.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so runAsNonRoot can verify it"
    created = [c for c in _runs(RUNTIME) if c[0] == "useradd"]
    assert created and created[0][created[0].index("--uid") + 1] == uid
    assert not gid or gid == created[0][created[0].index("--gid") + 1]


def test_stop_signal_and_no_healthcheck() -> None:
    (stop,) = RUNTIME.all("STOPSIGNAL")
    assert stop.arguments == "SIGTERM"
    assert not any(stage.all("HEALTHCHECK") for stage in STAGES)


def test_its_settings_are_real_and_its_ports_are_exposed() -> None:
    env = RUNTIME.env()
    leadgw = {key: value for key, value in env.items() if key.startswith("LEADGW_")}
    fields = {f"LEADGW_{name.upper()}" for name in Settings.model_fields}
    assert set(leadgw) <= fields, set(leadgw) - fields
    exposed = {word for expose in RUNTIME.all("EXPOSE") for word in expose.arguments.split()}
    port = env.get("LEADGW_PORT", str(Settings.model_fields["port"].default))
    assert port == str(Settings.model_fields["port"].default)
    assert {port, env["LEADGW_METRICS_PORT"]} <= exposed


# What reads each variable the runtime stage sets besides leadgw's own settings. A variable
# nothing reads misleads whoever runs the image (XDG_CACHE_HOME=/tmp/cache was one: the
# tokenizer and the embedding model ship inside the installed packages and are read from there,
# and no library of the image keeps a cache).
READ_BY = {
    "PIP_DISABLE_PIP_VERSION_CHECK": "pip, in the RUN that installs the wheel",
    "PIP_NO_CACHE_DIR": "pip, in the same RUN",
    "PYTHONDONTWRITEBYTECODE": "python: no bytecode beside the read-only code",
    "PYTHONUNBUFFERED": "python: log lines leave at once",
    "VIRTUAL_ENV": "the venv's path, which PATH puts first",
    "PATH": "the shell of each RUN, and the ENTRYPOINT",
}


def test_every_other_variable_it_sets_is_read_by_something() -> None:
    others = {key for key in RUNTIME.env() if not key.startswith("LEADGW_")}
    assert others <= set(READ_BY), others - set(READ_BY)


def test_the_bundled_models_are_baked_in_where_the_setting_points() -> None:
    env = RUNTIME.env()
    baked = [dest for s, sources, dest in _copies(RUNTIME) if s is None and len(sources) == 1]
    bundled = BUNDLED_MODELS.relative_to(ROOT).as_posix()
    assert env["LEADGW_MODEL_REPOSITORY"] in baked
    assert (bundled, env["LEADGW_MODEL_REPOSITORY"]) in [
        (sources[0], dest) for s, sources, dest in _copies(RUNTIME) if s is None
    ]


def test_writable_paths_are_volumes() -> None:
    env = RUNTIME.env()
    volumes = {path for volume in RUNTIME.all("VOLUME") for path in volume.exec_form()}
    assert env["LEADGW_DATA_DIR"] in volumes
    assert "/tmp" in volumes
    # Nothing writes bytecode next to the read-only code at run time.
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert ["python", "-m", "compileall", "-q", env["VIRTUAL_ENV"]] in _runs(RUNTIME)
