"""Rich tables for the data commands (kept apart from the work so the library stays UI-free)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from satori_cli.data.validate import REASONS

if TYPE_CHECKING:
    from rich.table import Table

    from satori_cli.data.inspect import Stats
    from satori_cli.data.prepare import PrepareResult


def printable(text: str) -> str:
    """User text made safe for the terminal: no control characters (escape sequences), no markup."""
    from rich.markup import escape

    return escape("".join(c if c.isprintable() or c == "\n" else "?" for c in text))


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


def inspect_table(stats: Stats, top: int = 6) -> Table:
    """One table: rows per file, source mix, boxes per row, image sizes, text lengths."""
    from rich.table import Table

    from satori_cli.data.inspect import summarize

    def mix(counter, fmt=str) -> str:
        total = sum(counter.values())
        items = [f"{printable(fmt(k))}: {v} ({100 * v / total:.0f}%)" for k, v in counter.most_common(top)]
        if len(counter) > top:
            items.append(f"... {len(counter) - top} more")
        return "\n".join(items)

    table = Table(title="satori data inspect")
    table.add_column("statistic")
    table.add_column("value")
    table.add_row(
        "rows", f"{stats.rows} ({printable(', '.join(f'{k}: {v}' for k, v in stats.files.items()))})"
    )
    if stats.bad_rows:
        table.add_row(
            "[yellow]rows with problems[/]",
            printable(
                "\n".join(
                    [f"{stats.bad_rows} of {stats.lines} lines (not counted above)"]
                    + [
                        f"{kind}: {count} (e.g. {'; '.join(stats.examples[kind])})"
                        for kind, count in stats.problems.most_common()
                    ]
                )
            ),
        )
    table.add_row("sources", mix(stats.sources))
    table.add_row("boxes per row", mix(stats.boxes_per_row))
    table.add_row("image sizes (w x h)", mix(stats.sizes, lambda wh: f"{wh[0]}x{wh[1]}"))
    table.add_row("question words (min / median / max)", summarize(stats.question_words))
    table.add_row("answer chars (min / median / max)", summarize(stats.answer_chars))
    table.add_row("caption words (min / median / max)", summarize(stats.caption_words))
    return table
