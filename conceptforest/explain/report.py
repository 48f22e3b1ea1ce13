"""A chainable report builder: sections of text, metrics, tables and figures, saved as a self-contained
``index.html`` (images inline, no external requests), ``report.md``, ``report.json``, ``tables/*.csv`` and
``figures/*.png``. Every piece of text is HTML-escaped by the template engine.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from conceptforest.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

MAX_HTML_ROWS = 25

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} td,th{border:1px solid #ddd;padding:3px 8px}
th{background:#f4f4f4;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
.banner{background:#b71c1c;color:#fff;padding:.8em 1em;font-weight:bold;border-radius:4px}
.note{color:#555;font-size:.9em} nav a{margin-right:1em} img{max-width:100%;border:1px solid #eee}
figure{margin:1em 0} figcaption{color:#555;font-size:.9em}
</style></head><body>
{% if banner %}<div class="banner">{{ banner }}</div>{% endif %}
<h1>{{ title }}</h1>
<nav>{% for s in sections %}<a href="#{{ s.anchor }}">{{ s.title }}</a>{% endfor %}</nav>
{% for s in sections %}
<section id="{{ s.anchor }}"><h2>{{ s.title }}</h2>
{% for item in s.items %}
{% if item.kind == "text" %}<p>{{ item.text }}</p>
{% elif item.kind == "note" %}<p class="note">{{ item.text }}</p>
{% elif item.kind == "metrics" %}<table>{% for k, v in item.pairs %}<tr><th>{{ k }}</th>
<td class="num">{{ v }}</td></tr>{% endfor %}</table>
{% elif item.kind == "table" %}{% if item.caption %}<p><b>{{ item.caption }}</b>
{% if item.truncated %}<span class="note">(first {{ item.shown }} of {{ item.total }} rows; all in
tables/{{ item.name }}.csv)</span>{% endif %}</p>{% endif %}
<table><tr>{% for c in item.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in item.rows %}<tr>{% for cell in row %}<td{% if cell.num %} class="num"{% endif %}>{{ cell.text }}</td>
{% endfor %}</tr>{% endfor %}</table>
{% elif item.kind == "figure" %}<figure><img alt="{{ item.caption }}" src="data:{{ item.mime }};base64,{{ item.data }}">
<figcaption>{{ item.caption }}</figcaption></figure>
{% endif %}{% endfor %}</section>
{% endfor %}
</body></html>
"""


def plain(value: Any) -> Any:
    """JSON-ready copies of numpy scalars and arrays, pandas objects, tuples and nested containers."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return plain(value.to_dict(orient="records"))
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def markdown_table(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = [
        "| " + " | ".join(_cell(v)["text"].replace("|", "\\|") for v in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def _cell_text(value: Any) -> str:
    if isinstance(value, list | tuple) and all(isinstance(v, float | int) for v in value):
        return " – ".join(_cell(v)["text"] for v in value)
    return str(_cell(value)["text"])


def _cell(value: Any) -> dict[str, Any]:
    if isinstance(value, float | np.floating):
        return {"text": f"{value:.4g}", "num": True}
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return {"text": str(value), "num": True}
    return {"text": str(value), "num": False}


@dataclass
class _Section:
    title: str
    anchor: str
    items: list[dict[str, Any]] = field(default_factory=list)


class Report:
    """Build a report section by section, then ``save(folder)``.

    Examples
    --------
    >>> import pandas as pd, tempfile
    >>> report = Report("demo").add_text("Summary", "hello").add_table("Summary", "t", pd.DataFrame({"a": [1]}))
    >>> path = report.save(tempfile.mkdtemp())
    >>> path.name
    'index.html'
    """

    def __init__(self, title: str, *, banner: str | None = None, provenance: dict[str, Any] | None = None) -> None:
        self.title = title
        self.banner = banner
        self.provenance = provenance or {}
        self._sections: dict[str, _Section] = {}
        self._tables: dict[str, pd.DataFrame] = {}
        self._figures: dict[str, tuple[bytes, str]] = {}
        self._json: dict[str, Any] = {}

    def _section(self, title: str) -> _Section:
        if title not in self._sections:
            anchor = "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-") or "section"
            self._sections[title] = _Section(title=title, anchor=anchor)
        return self._sections[title]

    def add_text(self, section: str, text: str, *, note: bool = False) -> Report:
        self._section(section).items.append({"kind": "note" if note else "text", "text": text})
        return self

    def add_metrics(self, section: str, name: str, values: dict[str, Any]) -> Report:
        shown = {k: _cell_text(v) for k, v in values.items()}
        self._section(section).items.append({"kind": "metrics", "pairs": list(shown.items())})
        self._json[name] = values
        return self

    def add_table(
        self, section: str, name: str, table: pd.DataFrame, *, caption: str = "", max_rows: int = MAX_HTML_ROWS
    ) -> Report:
        self._tables[name] = table
        shown = table.head(max_rows)
        self._section(section).items.append(
            {
                "kind": "table",
                "name": name,
                "caption": caption or name,
                "columns": [str(c) for c in table.columns],
                "rows": [[_cell(v) for v in row] for row in shown.itertuples(index=False)],
                "truncated": len(table) > max_rows,
                "shown": len(shown),
                "total": len(table),
            }
        )
        return self

    def add_figure(self, section: str, name: str, figure: Any, *, caption: str = "") -> Report:
        """A matplotlib figure (saved as PNG, then closed) or ready image bytes (PNG, or SVG if they start '<')."""
        if isinstance(figure, bytes):
            data, mime = figure, "image/svg+xml" if figure.lstrip().startswith(b"<") else "image/png"
        else:
            import matplotlib.pyplot as plt

            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
            plt.close(figure)
            data, mime = buffer.getvalue(), "image/png"
        self._figures[name] = (data, mime)
        self._section(section).items.append(
            {"kind": "figure", "caption": caption or name, "mime": mime, "data": base64.b64encode(data).decode("ascii")}
        )
        return self

    def add_json(self, name: str, value: Any) -> Report:
        self._json[name] = value
        return self

    @property
    def section_titles(self) -> list[str]:
        return list(self._sections)

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        if self.banner:
            lines += [f"> **{self.banner}**", ""]
        for section in self._sections.values():
            lines += [f"## {section.title}", ""]
            for item in section.items:
                if item["kind"] in ("text", "note"):
                    lines += [item["text"], ""]
                elif item["kind"] == "metrics":
                    lines += [f"- {k}: {v}" for k, v in item["pairs"]] + [""]
                elif item["kind"] == "table":
                    table = self._tables[item["name"]].head(MAX_HTML_ROWS)
                    lines += [f"**{item['caption']}** (tables/{item['name']}.csv)", "", markdown_table(table), ""]
                elif item["kind"] == "figure":
                    lines += [f"*{item['caption']}* (see index.html / figures)", ""]
        return "\n".join(lines) + "\n"

    def save(self, folder: str | Path) -> Path:
        """Write every file of the report atomically; returns the path of ``index.html``."""
        folder = Path(folder)
        for name, table in self._tables.items():
            atomic_write_text(folder / "tables" / f"{name}.csv", table.to_csv(index=False))
        for name, (data, mime) in self._figures.items():
            atomic_write_bytes(folder / "figures" / f"{name}.{'svg' if mime == 'image/svg+xml' else 'png'}", data)
        atomic_write_json(
            folder / "report.json",
            plain(
                {
                    "title": self.title,
                    "banner": self.banner,
                    "provenance": self.provenance,
                    "sections": self.section_titles,
                    **self._json,
                }
            ),
        )
        atomic_write_text(folder / "report.md", self.to_markdown())
        environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        html = environment.from_string(_TEMPLATE).render(
            title=self.title, banner=self.banner, sections=list(self._sections.values())
        )
        return atomic_write_text(folder / "index.html", html)
