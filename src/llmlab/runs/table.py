"""One table model for every report: columns and rows, rendered to the terminal, markdown or CSV.

    >>> t = Table(["system", Column("accuracy", justify="right")], title="results")
    >>> t.add_row("smollm2 · zero-shot · score", "0.500")
    >>> print(t.to_markdown())
    | system | accuracy |
    |---|---|
    | smollm2 · zero-shot · score | 0.500 |

Markdown has one escaping rule (``md``): a ``|`` becomes ``\\|`` and a line break ``<br>``, so any
text (a model's answer, a prompt, a name) stays inside its cell; a cell that already is markdown (a
link, bold text) is wrapped in ``Raw`` and left alone. The terminal table is rich's, with every cell
escaped so text like ``[CEO]`` is never read as rich markup. CSV is the csv module's.

What it gives up: one header row, no merged cells; alignment shows in the terminal only (markdown
separators stay ``---``, as the reports always had them).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field


class Raw(str):
    """A cell that is markdown already (a link, **bold**): not escaped by ``to_markdown``."""


def md(text) -> str:
    """The one markdown escaping rule: ``|`` -> ``\\|``, line breaks -> ``<br>``; None -> ''."""
    if isinstance(text, Raw):
        return str(text)
    text = "" if text is None else str(text)
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


@dataclass
class Column:
    name: str
    justify: str = "left"          # the terminal's alignment: left | right | center
    overflow: str = "ellipsis"     # rich: fold | crop | ellipsis
    no_wrap: bool = False


@dataclass
class Table:
    columns: list[Column | str]
    rows: list[list] = field(default_factory=list)
    title: str = ""
    title_justify: str = "center"
    styles: list[str | None] = field(default_factory=list)   # one per row, for the terminal

    def __post_init__(self):
        self.columns = [c if isinstance(c, Column) else Column(c) for c in self.columns]

    def add_row(self, *cells, style: str | None = None) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))
        self.styles.append(style)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_rich(self):
        from rich.markup import escape
        from rich.table import Table as RichTable

        t = RichTable(title=escape(self.title) if self.title else None, title_justify=self.title_justify)
        for c in self.columns:
            t.add_column(escape(c.name), justify=c.justify, overflow=c.overflow, no_wrap=c.no_wrap)
        styles = self.styles + [None] * (len(self.rows) - len(self.styles))
        for row, style in zip(self.rows, styles, strict=True):
            t.add_row(*(escape(_text(x)) for x in row), style=style)
        return t

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(md(n) for n in self.names) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(md(x) for x in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)  # the csv module's own line ends (\r\n), as the files always had
        w.writerow(self.names)
        w.writerows([["" if x is None else x for x in row] for row in self.rows])
        return buf.getvalue()


def show_tables(tables: list[Table], fmt: str, console) -> str | None:
    """Tables as a re-opened run's report (``llmlab runs show``): printed to ``console`` for
    ``terminal``, else returned as markdown or CSV text, blank-line separated (None when printed)."""
    out = []
    for table in tables:
        if fmt == "markdown":
            out.append(table.to_markdown())
        elif fmt == "csv":
            out.append(table.to_csv())
        else:
            console.print(table.to_rich())
    return "\n\n".join(out) + "\n" if out else None


def print_tables(tables: list[Table], notes=(), console=None) -> None:
    """A report's tables on the terminal, then its notes dimmed."""
    from rich.console import Console

    console = console or Console()
    for table in tables:
        console.print(table.to_rich())
    for note in notes:
        console.print(note, style="dim")


def _text(x) -> str:
    return "" if x is None else str(x)
