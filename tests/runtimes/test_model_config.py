"""A model's config.toml: every table rejects keys it does not know, naming key and table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.settings import BUNDLED_MODELS
from runtimes.batching_config import BatchingConfig
from runtimes.model_config import (
    files_fingerprint,
    load_config,
    load_version_config,
    read_model_controls,
)

BUNDLED = BUNDLED_MODELS / "lead_scorer" / "config.toml"


def config_with(tmp_path: Path, old: str, new: str) -> Path:
    text = BUNDLED.read_text()
    assert old in text, f"the bundled config no longer has {old!r}"
    path = tmp_path / "config.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_bundled_config_loads() -> None:
    config = load_config(BUNDLED)
    assert config.name == "lead_scorer"
    assert config.raw["features"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[bands]", "[bands]\nhotness = 0.5", "unknown key 'hotness' in [bands]"),
        ("[onnxruntime]", "[onnxruntime]\nthreads = 2", "unknown key 'threads' in [onnxruntime]"),
        ("[outputs]", "[outputs]\nscore = 'x'", "unknown key 'score' in [outputs]"),
        ("[input]", "[input]\nshape = 3", "unknown key 'shape' in [input]"),
        (
            'name = "lead_scorer"',
            'name = "lead_scorer"\nverison = 2',
            "unknown key 'verison' in the top level",
        ),
        (
            "[batching]",
            "[batching]\nmax_batchsize = 8",
            "unknown key 'max_batchsize' in [batching]",
        ),
        ("[bands]", "[band]\n[bands]", "unknown key 'band' in the top level"),
    ],
)
def test_an_unknown_key_is_named_with_its_table(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = config_with(tmp_path, old, new)
    with pytest.raises(ValueError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_an_unknown_key_in_a_feature_names_the_feature(tmp_path: Path) -> None:
    text = BUNDLED.read_text()
    first_feature = text.index("[[features]]")
    name_line = text.index("name = ", first_feature)
    name = text[name_line:].split("\n", 1)[0].split("=", 1)[1].strip().strip('"')
    path = tmp_path / "config.toml"
    path.write_text(text[:name_line] + "maximum = 3\n" + text[name_line:])
    with pytest.raises(ValueError, match=rf"unknown key 'maximum' in \[\[features\]\] '{name}'"):
        load_config(path)


def test_a_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = config_with(tmp_path, "[onnxruntime]", "[onnxruntime]\n")
    text = path.read_text().replace("intra_op_threads = ", "intra_op_threads = 'many' #", 1)
    path.write_text(text)
    with pytest.raises(ValueError, match=r"\[onnxruntime\]\.intra_op_threads"):
        load_config(path)


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(BatchingConfig)])
def test_every_batching_key_the_batcher_knows_is_accepted_in_the_file(
    tmp_path: Path, key: str
) -> None:
    """A key documented for ``[batching]`` must pass the file's own check and reach the
    batcher: ``gather_delay_us`` was read by BatchingConfig but refused by the file's schema, so
    the documented way to turn gathering on stopped the model from loading."""
    # The bundled file may set the key already: drop its line, then set it first in the table.
    lines = BUNDLED.read_text().split("\n")
    text = "\n".join(line for line in lines if not line.startswith(f"{key} ="))
    path = tmp_path / "config.toml"
    path.write_text(text.replace("[batching]\n", f"[batching]\n{key} = 1234\n", 1))
    config = load_config(path)
    assert getattr(config.batching, key) == 1234


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("0", "max_batch_size must be a positive integer, got 0"),
        ("64.0", "max_batch_size must be a positive integer, got 64.0"),
        ("true", "max_batch_size must be a positive integer, got True"),
    ],
)
def test_a_bad_batching_value_is_refused_with_the_file(
    tmp_path: Path, value: str, complaint: str
) -> None:
    """docs/batching.md: a bad value stops the model from loading, naming the key. Refused when
    the file is read, the version fails alone; found only when its batcher was built, it
    stopped the whole gateway."""
    path = config_with(tmp_path, "max_batch_size = 1024", f"max_batch_size = {value}")
    with pytest.raises(ValueError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert complaint in str(error.value)


@pytest.mark.parametrize(
    ("value", "shown_as"),
    [
        ('"tensorflow_savedmodel"', "'tensorflow_savedmodel'"),
        ('"onnxruntime"', "'onnxruntime'"),  # Triton's backend name, not a platform
        ('""', "''"),
        (f'"{"x" * 60}"', "'" + "x" * 36 + "..."),  # quoted as a client's value is, cut short
    ],
    ids=["another platform", "the backend name", "empty", "long"],
)
def test_a_platform_other_than_onnx_runtime_is_refused_with_the_file(
    tmp_path: Path, value: str, shown_as: str
) -> None:
    """leadgw runs ONNX Runtime models only; another platform was accepted, run by ONNX Runtime
    all the same, and reported as the model's platform by ModelMetadata and ModelConfig.
    Refused as a bad [batching] value is, so that this version fails alone."""
    path = config_with(tmp_path, 'platform = "onnxruntime_onnx"', f"platform = {value}")
    with pytest.raises(ValueError) as error:
        load_config(path)
    assert str(error.value) == (
        f"{path}: platform must be 'onnxruntime_onnx' (leadgw serves ONNX Runtime models "
        f"only), got {shown_as}"
    )


def test_the_platform_may_be_left_out(tmp_path: Path) -> None:
    path = config_with(tmp_path, 'platform = "onnxruntime_onnx"\n', "")
    assert load_config(path).platform == "onnxruntime_onnx"


ROUTING = '\n[routing]\nlive = "1"\n'
VERSION_POLICY = "\n[version_policy]\nlatest = 1\n"


def model_folder(tmp_path: Path, name: str = "lead_scorer") -> Path:
    """``<name>/config.toml`` (the bundled text) and version folders 1 and 2 (no graph: only the
    configs are read here)."""
    model = tmp_path / name
    for version in ("1", "2"):
        (model / version).mkdir(parents=True)
    (model / "config.toml").write_text(BUNDLED.read_text())
    return model


@pytest.mark.parametrize(
    ("extra", "tables"),
    [
        (ROUTING, "[routing] is"),
        (VERSION_POLICY, "[version_policy] is"),
        ('\n[routing.aliases]\nstable = "1"\n', "[routing] is"),
        (ROUTING + VERSION_POLICY, "[routing] and [version_policy] are"),
    ],
    ids=["routing", "version_policy", "routing.aliases", "both"],
)
def test_a_version_config_may_not_hold_the_control_tables(
    tmp_path: Path, extra: str, tables: str
) -> None:
    """Only the model's own config.toml is read for them: written in a version's, they were
    ignored while their writer believed they applied. Refused as a bad [batching] value is, so
    that this version fails alone."""
    model = model_folder(tmp_path)
    own = model / "2" / "config.toml"
    own.write_text(BUNDLED.read_text() + extra)
    with pytest.raises(ValueError) as error:
        load_version_config(model, model / "2")
    message = str(error.value)
    assert message.startswith(f"{own}: {tables} read only from the model's own config.toml")
    assert f"({model / 'config.toml'})" in message and "move" in message


def test_the_model_config_holds_the_control_tables_and_its_versions_load_with_it(
    tmp_path: Path,
) -> None:
    model = model_folder(tmp_path)
    (model / "config.toml").write_text(BUNDLED.read_text() + ROUTING + VERSION_POLICY)
    assert load_version_config(model, model / "1").name == "lead_scorer"
    policy, routing = read_model_controls(model)
    assert (policy.kind, policy.latest, routing.live) == ("latest", 1, "1")


def test_a_config_named_other_than_its_model_folder_is_refused(tmp_path: Path) -> None:
    """The folder names the model; the file's name was read nowhere (Triton refuses it too)."""
    model = model_folder(tmp_path, "scorer_b")
    with pytest.raises(ValueError) as error:
        load_version_config(model, model / "1")
    assert str(error.value) == (
        f"{model / 'config.toml'}: name 'lead_scorer' is not the model's folder name "
        "'scorer_b'; the folder names the model, so name must match it"
    )


def test_a_misspelt_table_in_the_model_config_is_refused_when_no_version_reads_it(
    tmp_path: Path,
) -> None:
    """Every version with a config.toml of its own: the model's file is read for its control
    tables only, and a misspelt one was checked by nothing."""
    model = model_folder(tmp_path)
    for version in ("1", "2"):
        (model / version / "config.toml").write_text(BUNDLED.read_text())
    (model / "config.toml").write_text("[version_polcy]\nlatest = 1\n")
    with pytest.raises(ValueError) as error:
        read_model_controls(model)
    assert str(error.value) == (
        f"{model / 'config.toml'}: unknown key 'version_polcy' in the top level"
    )
    (model / "config.toml").write_text(VERSION_POLICY)  # the control tables alone: fine
    assert read_model_controls(model)[0].latest == 1


def test_a_control_table_reloads_a_version_only_when_written_in_its_own_config(
    tmp_path: Path,
) -> None:
    """In the model's file a routing change reloads nothing; in a version's own file it makes
    the version load again, which refuses it (a loaded version would otherwise keep it
    unnoticed until a restart)."""
    model = model_folder(tmp_path)
    shared = files_fingerprint(model / "1", "model.onnx")
    (model / "config.toml").write_text(BUNDLED.read_text() + ROUTING)
    assert files_fingerprint(model / "1", "model.onnx") == shared
    own = model / "2" / "config.toml"
    own.write_text(BUNDLED.read_text())
    before = files_fingerprint(model / "2", "model.onnx")
    own.write_text(BUNDLED.read_text() + ROUTING)
    assert files_fingerprint(model / "2", "model.onnx") != before
