"""A small Dockerfile reader: enough of the syntax for the checks in test_dockerfile.py."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    """Upper case: FROM, RUN, COPY, ..."""
    arguments: str
    """The rest of the logical line, continuations joined."""

    def exec_form(self) -> list[str]:
        """``["a", "b"]`` (JSON) or shell words."""
        text = self.arguments.strip()
        if text.startswith("["):
            return list(json.loads(text))
        return shlex.split(text)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs of this stage (later ones win)."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.arguments):
                key, _, value = word.partition("=")
                values[key] = value
        return values


def read_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, each with its instructions."""
    stages: list[Stage] = []
    for instruction in _logical_lines(path.read_text()):
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif instruction.keyword != "ARG" or stages:
            assert stages, f"{instruction.keyword} before the first FROM"
            stages[-1].instructions.append(instruction)
    return stages


def _logical_lines(text: str) -> list[Instruction]:
    lines: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments (and parser directives) never continue a line
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = pending + stripped
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        lines.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return lines


def shell_commands(run: Instruction) -> list[list[str]]:
    """The simple commands of a shell-form RUN (split on &&, ;, ||)."""
    commands: list[list[str]] = []
    for part in re.split(r"&&|\|\||;", run.arguments):
        words = shlex.split(part)
        if words:
            commands.append(words)
    return commands


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether ``path`` (relative, /-separated) is left out of the build context.

    Docker's rules: the last matching pattern decides, ``!`` re-includes, ``**`` spans folders,
    and a pattern that matches a folder matches everything in it.
    """
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        if _matches(body.strip("/"), path):
            excluded = not negate
    return excluded


def _matches(pattern: str, path: str) -> bool:
    regex = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex += "(?:.*/)?"
            index += 3
        elif pattern.startswith("**", index):
            regex += ".*"
            index += 2
        elif pattern[index] == "*":
            regex += "[^/]*"
            index += 1
        elif pattern[index] == "?":
            regex += "[^/]"
            index += 1
        else:
            regex += re.escape(pattern[index])
            index += 1
    # A folder's pattern covers what is inside it.
    return re.fullmatch(regex + "(?:/.*)?", path) is not None


def read_dockerignore(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
