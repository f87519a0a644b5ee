"""Options every `hub` command group shares, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

# `--json`: one plain JSON document on stdout, for scripts; without it, tables for people.
JsonOpt = Annotated[bool, typer.Option("--json", help="print one plain JSON document (for scripts) instead of tables")]
