"""A model's config.toml: every table rejects keys it does not know, naming key and table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.settings import BUNDLED_MODELS
from runtimes.batching_config import BatchingConfig
from runtimes.model_config import load_config

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
    assert getattr(BatchingConfig.from_config(config.batching), key) == 1234


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
