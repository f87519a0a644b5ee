#!/usr/bin/env python3
"""Fails when hub code outside a transaction boundary commits (DESIGN §2, docs/architecture.md).

Services and routers never commit: the request dependency commits once per request, the consumer once
per batch, a job once per tick, a flow once per step after the commit it follows. So `.commit` may
appear only in the boundary modules below; anywhere else in hub/ it is an offence (ALLOWLIST, empty since
issue 8, could excuse a function as debt; it is exact: a function that gains a commit fails, and so does one
that lost its commits while its entry stayed). Any `.commit` attribute counts, called or passed on
(`callback=session.commit`).

Usage: python scripts/check_commits.py [--root DIR]   (DIR holds hub/; default: this repository)
Exit status 0 when clean, 1 with one line per finding.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Modules that own a unit of work, by path under the root, and why they may commit.
BOUNDARY_MODULES = {
    "hub/db.py": "the unit-of-work helpers",
    "hub/deps.py": "the request dependency: one commit per request, rolled back on error",
    "hub/worker.py": "the worker's loops: one commit per job tick",
}
# The same, by file name in any domain folder of hub/.
BOUNDARY_FILE_NAMES = {
    "consumer.py": "an AMQP consumer: one commit per batch of deliveries",
    "jobs.py": "a periodic job: one commit per tick",
    "flows.py": "work that follows a commit (deliveries, registry checks): one unit of work per step",
    "cli.py": "a command line command is its own unit of work",
}
SKIPPED_DIRS = {"migrations"}  # Alembic runs each migration in its own transaction

# Functions outside the boundaries allowed to commit: (module path, function qualname) -> how many `.commit`.
# Empty since issue 8: routers and services never commit. An entry would be debt to pay off; the check
# stays exact (a function that gains a commit fails, an entry whose commits are gone fails as stale).
ALLOWLIST: dict[tuple[str, str], int] = {}


@dataclass(frozen=True)
class Commit:
    path: str
    function: str  # qualified name inside the module; "<module>" at top level
    line: int


def find_commits(source: str, path: str) -> Iterator[Commit]:
    """Every `.commit` attribute read in the module, with the function that holds it."""

    def walk(node: ast.AST, scope: tuple[str, ...]) -> Iterator[Commit]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                yield from walk(child, (*scope, child.name))
                continue
            if isinstance(child, ast.Attribute) and child.attr == "commit" and isinstance(child.ctx, ast.Load):
                yield Commit(path, ".".join(scope) or "<module>", child.lineno)
            yield from walk(child, scope)

    yield from walk(ast.parse(source, filename=path), ())


def is_boundary(relative: Path) -> bool:
    return relative.as_posix() in BOUNDARY_MODULES or relative.name in BOUNDARY_FILE_NAMES


def hub_modules(root: Path) -> Iterator[Path]:
    for path in sorted((root / "hub").rglob("*.py")):
        relative = path.relative_to(root)
        if not SKIPPED_DIRS.intersection(relative.parts) and not is_boundary(relative):
            yield relative


def check(root: Path, allowlist: dict[tuple[str, str], int]) -> list[str]:
    """One message per finding: new commits with their file:line, and stale allowlist entries."""
    found: dict[tuple[str, str], list[Commit]] = defaultdict(list)
    for relative in hub_modules(root):
        for commit in find_commits((root / relative).read_text(encoding="utf-8"), relative.as_posix()):
            found[(commit.path, commit.function)].append(commit)

    problems = []
    for key, commits in sorted(found.items()):
        allowed = allowlist.get(key, 0)
        if len(commits) > allowed:
            lines = ", ".join(f"{c.path}:{c.line}" for c in commits)
            problems.append(f"{lines}: {key[1]} calls commit() {len(commits)}x, allowed {allowed}x — services and "
                            "routers never commit; let the request dependency (or a flow) own the transaction")
    for key, allowed in sorted(allowlist.items()):
        present = len(found.get(key, []))
        if present < allowed:
            problems.append(f"{key[0]}:{key[1]}: allowlist entry expects {allowed} commit() call(s), found {present} "
                            "— lower or delete the entry in scripts/check_commits.py")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    problems = check(args.root, ALLOWLIST)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"check_commits: {len(problems)} finding(s)", file=sys.stderr)
        return 1
    print(f"check_commits: no commit outside the transaction boundaries ({len(ALLOWLIST)} allowlisted functions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
