"""Tables for people that never cut what they copy.

Rich shrinks a table that is wider than the terminal (80 columns when output
is piped) by cutting cells with an ellipsis: an address or an IP would come
out as ``43ec477…``. `print_table` keeps such columns whole: when the table
does not fit it first drops the columns marked droppable (least useful first),
and if it still does not fit it prints the table at its natural width and lets
the terminal wrap the lines, cells intact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Col:
    """A column; `drop` > 0 marks it droppable, higher numbers going first."""

    name: str
    drop: int = 0


def build_table(title: str, cols: Sequence[Col], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for c in cols:
        table.add_column(c.name, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*row)
    return table


def fit_table(
    console: Console, title: str, cols: Sequence[Col], rows: Sequence[Sequence[str]]
) -> tuple[Table, int | None]:
    """The table to print and the width to print it at (None: the console's)."""
    keep = list(range(len(cols)))
    droppable = sorted((i for i, c in enumerate(cols) if c.drop > 0), key=lambda i: -cols[i].drop)
    while True:
        table = build_table(title, [cols[i] for i in keep], [[r[i] for i in keep] for r in rows])
        # Measured against an unbounded width: the console's own would cap the result.
        need = console.measure(table, options=console.options.update_width(1 << 16)).maximum
        if need <= console.width:
            return table, None
        if not droppable:
            return table, need
        keep.remove(droppable.pop(0))


def print_table(console: Console, title: str, cols: Sequence[Col], rows: Sequence[Sequence[str]]) -> None:
    table, width = fit_table(console, title, cols, rows)
    if width is None:
        console.print(table)
        return
    # Console.print never goes past the console's width, so a wider one renders it.
    wide = Console(
        file=console.file,
        width=width,
        force_terminal=console.is_terminal,
        color_system=console.color_system,
        highlight=False,
    )
    wide.print(table, crop=False)
