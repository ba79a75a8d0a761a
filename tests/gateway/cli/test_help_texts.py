"""What ``leadgw <command> --help`` says about an option's default is what the command does."""

from __future__ import annotations

import re

import pytest

from gateway.cli import main
from gateway.cli.connection import DEFAULT_ADDRESS
from gateway.cli.models import ACTIONS, CONTROL_TIMEOUT_S, LIST_TIMEOUT_S
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


@pytest.mark.parametrize("argv", [*ADDRESS_COMMANDS, ["index"]], ids=" ".join)
def test_every_api_key_option_reads_the_same(capsys, argv: list[str]) -> None:
    # index's said "API key with scope 'index' (default: $LEADGW_API_KEY)" alone.
    assert option_help(help_text(capsys, *argv), "--api-key") == (
        "--api-key API_KEY API key (default: $LEADGW_API_KEY; none needed on a loopback "
        "gateway without keys)"
    )


def test_index_says_its_defaults(capsys) -> None:
    text = help_text(capsys, "index")
    assert "(default 256)" in option_help(text, "--batch-size")
    assert "(default 60)" in option_help(text, "--timeout")
    # auto reads .csv as CSV, .jsonl and .ndjson as JSON Lines, and refuses any other suffix.
    assert ".ndjson" in option_help(text, "file")
    assert "by the file's suffix; another suffix is refused" in option_help(text, "--format")
    assert "needs scope 'index' when keys are in use" in " ".join(text.split())


@pytest.mark.parametrize(
    ("option", "unset"),
    [
        # gateway.server._key_store: no keys file is tenant 'default', refused off loopback.
        ("--keys-file", "default: none, no auth: loopback --host only"),
        # gateway.tls.server_credentials: no certificate is a plaintext port.
        ("--tls-cert-file", "default: none, plaintext"),
        ("--tls-client-ca-file", "default: none, no client certificate asked"),
        # retrieval.summary.factory.llm_from_settings: no endpoint, no LLM.
        ("--llm-base-url", "default: none, every summary is the marked fallback"),
        # gateway.settings.OtelPrometheusSource turns it on from the standard variable.
        ("--metrics-port", "default: none, no endpoint unless OTEL_METRICS_EXPORTER=prometheus"),
        ("--health-port", "default: none, off"),
    ],
)
def test_serve_says_what_an_unset_option_means(capsys, option: str, unset: str) -> None:
    name = option.removeprefix("--").replace("-", "_")
    assert Settings.model_fields[name].default is None
    assert unset in option_help(help_text(capsys, "serve"), option)


def test_serve_metrics_port_and_poll_secs_say_what_they_take(capsys) -> None:
    text = help_text(capsys, "serve")
    assert "0 picks one" in option_help(text, "--metrics-port")
    # Explicit mode reads the repository's control tables at this interval too.
    assert "in poll and explicit modes" in option_help(text, "--repository-poll-secs")


def test_score_reasons_says_what_zero_means(capsys) -> None:
    # The request's max_reasons 0 is the gateway's default, not "no reasons".
    reasons = option_help(help_text(capsys, "score"), "--reasons")
    assert "0: the gateway's default_max_reasons" in reasons


def test_models_timeout_names_the_actions_default(capsys) -> None:
    timeout = option_help(help_text(capsys, "models"), "--timeout")
    assert f"default {LIST_TIMEOUT_S:g}; {CONTROL_TIMEOUT_S:g} with an ACTION" in timeout


@pytest.mark.parametrize(
    ("action", "unset"),
    [
        ("load", "default: every version the model's policy selects"),
        ("unload", "default: every version, the whole model"),
        ("promote", "default: the canary or shadow"),
        ("shadow", "needed to start a shadow"),
        ("canary", "needed unless --weight 0"),
    ],
)
def test_models_version_says_what_unset_means(capsys, action: str, unset: str) -> None:
    assert unset in option_help(help_text(capsys, "models", action), "--version")


@pytest.mark.parametrize("action", ["snapshot", "restore", "reindex"])
def test_notes_data_dir_names_the_setting_and_its_default(capsys, action: str) -> None:
    data_dir = option_help(help_text(capsys, "notes", action), "--data-dir")
    assert f"data_dir setting, {Settings.model_fields['data_dir'].default} unless set" in data_dir


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
        if option == "--tls-key-file":
            continue  # goes with --tls-cert-file, whose help says what neither means
        # A setting that is None by default says what unset means (test below), in "default".
        assert "default" in described, described
        if field.default is None and field.default_factory is None:
            continue
        if isinstance(field.default, int | float | str) and not isinstance(field.default, bool):
            shown = f"{field.default:g}" if isinstance(field.default, float) else field.default
            assert str(shown) in described, (described, field.default)


def test_keys_create_says_its_defaults(capsys) -> None:
    text = help_text(capsys, "keys", "create")
    assert "(default: the tenant)" in option_help(text, "--name")
    assert "default: print it" in option_help(text, "--keys-file")
