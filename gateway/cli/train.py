"""``leadgw train``: generate prospects, train, calibrate, export and publish a lead model."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

ROUND_EVERY = 10  # boosting rounds between progress lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``leadgw train``'s options to ``parser``."""
    from gateway.settings import BUNDLED_MODELS
    from runtimes.training.train import TrainOptions

    defaults = TrainOptions()
    parser.add_argument(
        "--repository",
        type=Path,
        default=BUNDLED_MODELS,
        help="model repository folder (default: the bundled runtimes/bundled_models/)",
    )
    parser.add_argument("--model", default="lead_scorer", help="model name (default: %(default)s)")
    parser.add_argument(
        "--version", default=None, help="version folder to create (default: next free integer)"
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=defaults.rows,
        help="prospects to generate (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="generator seed (default: %(default)s)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the final summary line")


def run(args: argparse.Namespace) -> int:
    """Trains and writes ``<repository>/<model>/<version>/``; returns the exit code."""
    # onnx and tomli-w are train-time extras: import them only when training, so that
    # `leadgw` can build its parser (and serve) without them.
    from rich.console import Console

    from runtimes.training.publish import next_version, publish
    from runtimes.training.train import TrainOptions, train

    console = Console(stderr=True, highlight=False)
    repository: Path = args.repository
    problem = _check_arguments(args)
    if problem:
        _error(console, problem)
        return 2
    version = args.version or next_version(repository / args.model)
    command = _command(args, version)
    reporter = _ConsoleReporter(console, quiet=args.quiet)
    try:
        result = train(TrainOptions(rows=args.rows, seed=args.seed), reporter)
        reporter.stage(f"writing {repository / args.model / version}")
        published = publish(result, repository, args.model, version, command)
    except (ValueError, FileExistsError, OSError) as exc:
        _error(console, str(exc))
        return 1
    test = result.metrics["test"]
    print(
        f"{args.model} version {version}: test AUC {test['auc']:.4f} "
        f"(ceiling {result.metrics['ceiling']['auc']:.4f}), PR-AUC {test['pr_auc']:.4f}, "
        f"ECE {test['ece']:.4f}; bands hot>={result.bands['hot']} warm>={result.bands['warm']}; "
        f"wrote {published.version_dir} and {published.config_path}"
    )
    return 0


def _error(console: Console, text: str) -> None:
    # No markup (a path may hold "[") and no wrapping (the line may be grepped).
    console.print(f"leadgw train: {text}", style="red", markup=False, soft_wrap=True)


def _check_arguments(args: argparse.Namespace) -> str | None:
    repository: Path = args.repository
    if not repository.is_dir():
        return f"--repository {repository} is not an existing folder"
    if not args.model or "/" in args.model or args.model.startswith("."):
        return f"--model {args.model!r} is not a plain folder name"
    if args.version is not None and not (args.version.isdigit() and int(args.version) > 0):
        return f"--version {args.version!r} must be a positive integer"
    if args.version is not None and (repository / args.model / args.version).exists():
        return f"version {args.version} already exists in {repository / args.model}"
    if args.rows < 5_000:
        return f"--rows {args.rows} is too few; use at least 5000"
    return None


def _command(args: argparse.Namespace, version: str) -> str:
    words = ["leadgw", "train", "--model", args.model, "--version", version]
    words += ["--rows", str(args.rows), "--seed", str(args.seed)]
    return shlex.join(words)


class _ConsoleReporter:
    def __init__(self, console: Console, quiet: bool) -> None:
        self.console = console
        self.quiet = quiet
        self.stages = 0

    def stage(self, text: str) -> None:
        self.stages += 1
        if not self.quiet:
            self.console.print(f"[{self.stages}] {text}", markup=False, soft_wrap=True)

    def round(self, number: int, train_loss: float, valid_loss: float) -> None:
        if not self.quiet and number % ROUND_EVERY == 0:
            self.console.print(
                f"    round {number:4d}  train loss {train_loss:.5f}  valid loss {valid_loss:.5f}"
            )
