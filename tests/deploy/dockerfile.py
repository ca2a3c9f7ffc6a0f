"""Just enough of a Dockerfile parser for tests: stages, instructions, exec-form arrays, ENV.

Handles what our Dockerfile uses: comments, backslash continuations, `KEY=value` ENV pairs
(optionally double-quoted) and JSON exec form. Not a general implementation.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper-cased: FROM, RUN, ENV, ...
    args: str  # everything after the keyword, continuations joined


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [item for item in self.instructions if item.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        """ENV pairs in order; `${VAR}` references to earlier pairs are left as written."""
        values: dict[str, str] = {}
        for item in self.all("ENV"):
            for token in shlex.split(item.args):
                key, sep, value = token.partition("=")
                assert sep, f"ENV {item.args!r}: use the KEY=value form"
                values[key] = value
        return values

    def labels(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for item in self.all("LABEL"):
            for token in shlex.split(item.args):
                key, _, value = token.partition("=")
                values[key] = value
        return values


def instructions(text: str) -> list[Instruction]:
    joined: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    result = []
    for line in joined:
        keyword, _, args = line.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
    return result


def stages(text: str) -> list[Stage]:
    found: list[Stage] = []
    for item in instructions(text):
        if item.keyword == "FROM":
            parts = item.args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            found.append(Stage(base=parts[0], name=name))
        elif item.keyword in ("ARG", "#") and not found:
            continue  # global ARGs before the first FROM
        else:
            assert found, f"{item.keyword} before the first FROM"
            found[-1].instructions.append(item)
    return found


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction (fails on shell form)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def healthcheck_command(stage: Stage) -> list[str]:
    args = stage.last("HEALTHCHECK").args
    match = re.search(r"\bCMD\s+(\[.*\])\s*$", args)
    assert match, f"HEALTHCHECK is not in exec form: {args}"
    return exec_form(match.group(1))


def load() -> list[Stage]:
    return stages(DOCKERFILE.read_text())


# --- .dockerignore, with Docker's rules: last matching pattern wins, `!` re-includes, a
# pattern that matches a directory excludes what is below it.


def ignore_patterns(text: str) -> list[tuple[bool, str]]:
    """(excluded?, pattern) in file order."""
    result = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        result.append((not negated, pattern.strip("/")))
    return result


def _matches(pattern: str, path: str) -> bool:
    if pattern.startswith("**/"):
        rest = pattern[3:]
        parts = path.split("/")
        return any(_matches(rest, "/".join(parts[i:])) for i in range(len(parts)))
    pattern_parts = pattern.split("/")
    path_parts = path.split("/")
    if len(path_parts) < len(pattern_parts):
        return False
    # A match on a leading directory counts for everything below it.
    prefix = path_parts[: len(pattern_parts)]
    return all(fnmatch.fnmatchcase(p, q) for p, q in zip(prefix, pattern_parts, strict=True))


def is_excluded(path: str, patterns: list[tuple[bool, str]]) -> bool:
    excluded = False
    for exclude, pattern in patterns:
        if _matches(pattern, path):
            excluded = exclude
    return excluded


def build_context(root: Path = REPO_ROOT) -> list[str]:
    """Every file (relative path) Docker would send as the build context."""
    patterns = ignore_patterns(DOCKERIGNORE.read_text())
    reincluded = [pattern for exclude, pattern in patterns if not exclude]
    files = []
    for directory, subdirs, names in os.walk(root):
        base = Path(directory).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        # Prune excluded directories that no `!` pattern reaches into (.git, .venv...).
        subdirs[:] = [
            d
            for d in subdirs
            if not is_excluded(prefix + d, patterns)
            or any(p.startswith(prefix + d) for p in reincluded)
        ]
        for name in names:
            if not is_excluded(prefix + name, patterns):
                files.append(prefix + name)
    return sorted(files)
