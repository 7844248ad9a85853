"""The before/after table of a rebalancing: per class, real, synthetic, total and share."""

from __future__ import annotations

from rich.table import Table

from defectsynth.data.manifest import Row


def counts(rows: list[Row], classes: list[str]) -> dict[str, dict]:
    n = len(rows)
    out = {}
    for label in classes:
        real = sum(r.label == label and r.source == "real" for r in rows)
        synthetic = sum(r.label == label and r.source == "synthetic" for r in rows)
        out[label] = {"real": real, "synthetic": synthetic, "total": real + synthetic,
                      "share": round((real + synthetic) / n, 4) if n else 0.0}
    return out


def before_after(before: list[Row], after: list[Row], classes: list[str]) -> list[dict]:
    """One entry per class: {"class", "before": {real, synthetic, total, share}, "after": {...}}."""
    b, a = counts(before, classes), counts(after, classes)
    return [{"class": label, "before": b[label], "after": a[label]} for label in classes]


def render(table: list[dict], title: str = "") -> Table:
    """The table for the terminal; "before" is the train split, so it has no synthetic column."""
    columns = [("before", "total"), ("before", "share"), ("after", "real"), ("after", "synthetic"),
               ("after", "total"), ("after", "share")]
    out = Table(title=title or None)
    out.add_column("class", no_wrap=True)
    for when, col in columns:
        out.add_column(f"{when}\n{col}", justify="right", no_wrap=True)
    for entry in table:
        out.add_row(entry["class"], *(_cell(entry[when], col) for when, col in columns))
    out.add_section()
    out.add_row("all", *(_cell({col: sum(e[when][col] for e in table)}, col) if col != "share" else ""
                         for when, col in columns))
    return out


def _cell(counts: dict, col: str) -> str:
    return f"{counts[col]:.1%}" if col == "share" else str(counts[col])
