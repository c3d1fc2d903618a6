"""How listings are printed: a table for a person, the whole table when piped, JSON with `--json`.

Rich lays a table out for an 80-column screen when stdout is not a terminal, folding cells into
unreadable stubs in `| less` or a log file; piped, the console is made wide enough that no
column is squeezed (a table never pads itself beyond its content)."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

JSON_OUT = typer.Option(False, "--json", help="print JSON instead of a table")
PIPED_WIDTH = 1000


def console() -> Any:
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH, soft_wrap=True)


def print_table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[("" if cell is None else str(cell)) for cell in row])
    console().print(table)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))
