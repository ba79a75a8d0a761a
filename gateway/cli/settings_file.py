"""``--config`` and the settings it feeds, for the commands that read the gateway's settings
(serve, notes): one behaviour for a bad settings file whichever command reads it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.settings import Settings


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML settings file, keys the setting names (default: $LEADGW_CONFIG_FILE)",
    )


def load_settings(command: str, config: Path | None, **overrides: Any) -> Settings | None:
    """The settings from ``overrides``, the environment and the config file; or None once the
    reason they cannot be built is printed (the caller exits 2)."""
    from pydantic import ValidationError

    from gateway.settings import ConfigFileError, Settings

    if config is not None:
        overrides["config_file"] = config
    try:
        return Settings(**overrides)
    except ConfigFileError as exc:
        print(f"leadgw {command}: {exc}", file=sys.stderr)
    except ValidationError as exc:
        print(f"leadgw {command}: invalid settings:\n{exc}", file=sys.stderr)
    return None
