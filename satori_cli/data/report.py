"""Rich tables for the data commands (kept apart from the work so the library stays UI-free)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from satori_cli.data.validate import REASONS

if TYPE_CHECKING:
    from rich.table import Table

    from satori_cli.data.prepare import PrepareResult


def prepare_table(result: PrepareResult) -> Table:
    """Rows in, written (train/val) and rejected by reason; in = written + rejected."""
    from rich.table import Table

    table = Table(title="satori data prepare", show_footer=False)
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_column("meaning", style="dim")
    table.add_row("in", str(result.rows_in), "records read")
    table.add_row("written", str(result.written), f"train {result.train_rows}, val {result.val_rows}")
    table.add_row("rejected", str(result.rejected_total), "see rejected.jsonl")
    for reason, count in result.rejected.most_common():
        table.add_row(f"  {reason}", str(count), REASONS[reason])
    return table
