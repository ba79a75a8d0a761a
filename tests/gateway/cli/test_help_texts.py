"""What ``leadgw <command> --help`` says about an option's default is what the command does."""

from __future__ import annotations

import re

import pytest

from gateway.cli import main
from gateway.cli.connection import DEFAULT_ADDRESS
from gateway.cli.models import ACTIONS
from gateway.settings import Settings


def help_text(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def option_help(text: str, option: str) -> str:
    """The help of ``option`` (its first line and the lines wrapped under it), on one line."""
    match = re.search(rf"^  {re.escape(option)}\b.*?(?=^  \S|^\S|\Z)", text, re.M | re.S)
    assert match, f"{option} is not in:\n{text}"
    return " ".join(match[0].split())


ADDRESS_COMMANDS = [["score"], ["summarize"], ["models"], *(["models", a] for a in ACTIONS)]


@pytest.mark.parametrize("argv", [*ADDRESS_COMMANDS, ["index"]], ids=" ".join)
def test_every_address_option_says_its_default(capsys, argv: list[str]) -> None:
    help_of_address = option_help(help_text(capsys, *argv), "--address")
    assert help_of_address == f"--address ADDRESS gateway host:port (default {DEFAULT_ADDRESS})"


def test_index_says_its_defaults(capsys) -> None:
    text = help_text(capsys, "index")
    assert "(default 256)" in option_help(text, "--batch-size")
    assert "(default 60)" in option_help(text, "--timeout")


def test_score_version_says_the_routing_picks_by_default(capsys) -> None:
    # Without a version the model's routing answers: the live version (which a promote or a
    # rollback may have made an older one), or the canary for its share of leads.
    version = option_help(help_text(capsys, "score"), "--version")
    assert "latest" not in version
    assert "routing" in version and "live version" in version and "canary" in version


def test_serve_says_the_default_of_every_setting_that_has_one(capsys) -> None:
    text = help_text(capsys, "serve")
    options = re.findall(r"^  (--[a-z-]+)", text, re.M)
    for option in options:
        name = option.removeprefix("--").replace("-", "_")
        field = Settings.model_fields.get("config_file" if name == "config" else name)
        if option == "--help" or field is None:
            continue
        described = option_help(text, option)
        if field.default is None and field.default_factory is None:
            continue  # unset means off (or $LEADGW_CONFIG_FILE): nothing to state
        assert "default" in described, described
        if isinstance(field.default, int | float | str) and not isinstance(field.default, bool):
            shown = f"{field.default:g}" if isinstance(field.default, float) else field.default
            assert str(shown) in described, (described, field.default)


def test_keys_create_says_its_defaults(capsys) -> None:
    text = help_text(capsys, "keys", "create")
    assert "(default: the tenant)" in option_help(text, "--name")
    assert "default: print it" in option_help(text, "--keys-file")
