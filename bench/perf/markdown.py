"""A benchmark's results as a Markdown file: a DataFrame as a table, the lines written."""

from pathlib import Path

import pandas as pd


def markdown_table(rows: pd.DataFrame) -> list[str]:
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(rows.columns) + " |", "|" + "---|" * len(rows.columns)]
    return lines + [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in rows.itertuples(False)
    ]


def write_markdown(out: str, lines: list[str]) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines))
    print(f"wrote {out}")
