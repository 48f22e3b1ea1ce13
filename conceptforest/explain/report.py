"""A chainable report builder: sections of text, metrics, tables and figures, saved as a self-contained
``index.html`` (images inline, no external requests), ``report.md``, ``report.json``, ``tables/*.csv`` and
``figures/*.png``.

Every piece of text is inert where it lands: HTML-escaped by the template engine, Markdown-escaped in
``report.md``, and formula-neutralised in the CSV tables (see :mod:`conceptforest.explain.escape`). A save locks the
folder, first removes the files an earlier report left there (``index.html`` first; only files its ``report.json``
proves it wrote: :mod:`conceptforest.explain.report_files`) and writes ``index.html`` last, so a folder never holds
an old page beside new tables.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from conceptforest._version import package_version
from conceptforest.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from conceptforest.explain.escape import csv_text, markdown_escape
from conceptforest.explain.report_files import (
    REPORT_FILES,
    recorded_model_sha256,
    remove_report_files,
    retire_report,
)
from conceptforest.explain.report_template import COLLAPSE_ROWS, TEMPLATE

__all__ = [
    "MAX_HTML_ROWS",
    "REPORT_FILES",
    "Report",
    "markdown_escape",
    "recorded_model_sha256",
    "remove_report_files",
    "retire_report",
    "section_anchor",
]

MAX_HTML_ROWS = 25


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
    """A GitHub-style Markdown table; every header and cell escaped and kept on one line."""
    header = "| " + " | ".join(markdown_escape(c, inline=True) for c in table.columns) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = [
        "| " + " | ".join(markdown_escape(_cell(v)["text"], inline=True) for v in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def _cell_text(value: Any) -> str:
    if isinstance(value, list | tuple) and all(isinstance(v, float | int) for v in value):
        return " – ".join(_cell(v)["text"] for v in value)
    return str(_cell(value)["text"])


def _cell(value: Any) -> dict[str, Any]:
    if isinstance(value, float | np.floating):
        return {"text": "—" if np.isnan(value) else f"{value:.4g}", "num": True}
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return {"text": str(value), "num": True}
    return {"text": str(value), "num": False}


def section_anchor(title: str) -> str:
    """The id of a section's heading on the page (what a link to that section points at)."""
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-") or "section"


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

    def __init__(
        self,
        title: str,
        *,
        banner: str | None = None,
        provenance: dict[str, Any] | None = None,
        made_by: Mapping[str, Any] | None = None,
    ) -> None:
        self.title = title
        self.banner = banner
        self.provenance = provenance or {}
        self.made_by: dict[str, Any] = {"program": "conceptforest", "version": package_version(), **(made_by or {})}
        # files written beside the report by a section (tree pictures): relative path -> sha256
        self.extra_files: dict[str, str] = {}
        self._sections: dict[str, _Section] = {}
        self._tables: dict[str, pd.DataFrame] = {}
        self._figures: dict[str, tuple[bytes, str]] = {}
        self._json: dict[str, Any] = {}

    def _section(self, title: str) -> _Section:
        if title not in self._sections:
            self._sections[title] = _Section(title=title, anchor=section_anchor(title))
        return self._sections[title]

    def add_text(self, section: str, text: str, *, note: bool = False) -> Report:
        self._section(section).items.append({"kind": "note" if note else "text", "text": text})
        return self

    def add_finding(self, section: str, text: str, anchor: str, *, warning: bool = False) -> Report:
        """One sentence with a link to the section (``anchor``) that holds its evidence."""
        self._section(section).items.append({"kind": "finding", "text": text, "anchor": anchor, "warning": warning})
        return self

    def add_example(self, section: str, caption: str, thumbnail: str | None) -> Report:
        """An image example: a small inline thumbnail (a ``data:image/...;base64`` URI, or None) and its caption."""
        if thumbnail is not None and not thumbnail.startswith("data:image/"):
            raise ValueError("a thumbnail must be an inline data:image/ URI")
        self._section(section).items.append({"kind": "example", "caption": caption, "thumbnail": thumbnail})
        return self

    def add_gallery(self, section: str, images: list[tuple[str | None, str]]) -> Report:
        """A row of small inline thumbnails: (``data:image/...`` URI or None, caption) pairs."""
        if any(uri is not None and not uri.startswith("data:image/") for uri, _ in images):
            raise ValueError("a thumbnail must be an inline data:image/ URI")
        shown = [{"thumbnail": uri, "caption": caption} for uri, caption in images]
        self._section(section).items.append({"kind": "gallery", "images": shown})
        return self

    def add_legend(self, section: str, low: str, high: str) -> Report:
        """A colour legend: the white-to-red shading of the tree pictures, from ``low`` to ``high``."""
        self._section(section).items.append({"kind": "legend", "low": low, "high": high})
        return self

    def begin_group(self, section: str, summary: str, *, collapsed: bool = False, anchor: str = "") -> Report:
        """Start a foldable block (``<details>``; a ``###`` heading in report.md) closed by :meth:`end_group`."""
        item = {"kind": "group_start", "summary": summary, "open": not collapsed, "anchor": anchor}
        self._section(section).items.append(item)
        return self

    def end_group(self, section: str) -> Report:
        self._section(section).items.append({"kind": "group_end"})
        return self

    def move_to_front(self, title: str) -> Report:
        """Show section ``title`` first (the findings, computed last, open the page)."""
        if title in self._sections:
            self._sections = {title: self._sections[title], **self._sections}
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

    def add_figure(self, section: str, name: str, figure: Any, *, caption: str = "", embed: bool = True) -> Report:
        """A matplotlib figure (saved as PNG, then closed) or ready image bytes (PNG, or SVG if they start '<').

        With ``embed=False`` the figure is only written to ``figures/`` (the page says where, not shows it)."""
        if isinstance(figure, bytes):
            data, mime = figure, "image/svg+xml" if figure.lstrip().startswith(b"<") else "image/png"
        else:
            import matplotlib.pyplot as plt

            from conceptforest.explain.plots import plain_text_rc

            buffer = io.BytesIO()
            with plain_text_rc():
                figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
            plt.close(figure)
            data, mime = buffer.getvalue(), "image/png"
        self._figures[name] = (data, mime)
        if not embed:
            return self
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
        """The report as Markdown; all text is escaped, so no label or file name becomes HTML or syntax."""
        lines = [f"# {markdown_escape(self.title, inline=True)}", ""]
        if self.banner:
            lines += [f"> **{markdown_escape(self.banner, inline=True)}**", ""]
        for section in self._sections.values():
            lines += [f"## {markdown_escape(section.title, inline=True)}", ""]
            for item in section.items:
                lines += self._markdown_item(item)
        lines += ["---", "", markdown_escape(f"Made by {_made_by_text(self.made_by)}", inline=True)]
        return "\n".join(lines) + "\n"

    def _markdown_item(self, item: dict[str, Any]) -> list[str]:
        if item["kind"] in ("text", "note"):
            return [markdown_escape(item["text"]), ""]
        if item["kind"] == "finding":
            marker = "**Warning:** " if item["warning"] else ""
            return [f"- {marker}{markdown_escape(item['text'], inline=True)} ([evidence](#{item['anchor']}))", ""]
        if item["kind"] == "example":
            shown = " (thumbnail in index.html)" if item["thumbnail"] else ""
            return [f"- {markdown_escape(item['caption'], inline=True)}{shown}", ""]
        if item["kind"] == "gallery":
            images = [(markdown_escape(i["caption"], inline=True), i["thumbnail"]) for i in item["images"]]
            return [f"- {caption}{' (thumbnail in index.html)' if uri else ''}" for caption, uri in images] + [""]
        if item["kind"] == "legend":
            low, high = markdown_escape(item["low"], inline=True), markdown_escape(item["high"], inline=True)
            return [f"Shading: white = {low}, red = {high}", ""]
        if item["kind"] == "group_start":
            return [f"### {markdown_escape(item['summary'], inline=True)}", ""]
        if item["kind"] == "group_end":
            return []
        if item["kind"] == "metrics":
            pairs = item["pairs"]
            return [f"- {markdown_escape(k, inline=True)}: {markdown_escape(v, inline=True)}" for k, v in pairs] + [""]
        if item["kind"] == "table":
            table = self._tables[item["name"]].head(item["shown"])
            caption, name = markdown_escape(item["caption"], inline=True), markdown_escape(item["name"], inline=True)
            cut = f"; first {item['shown']} of {item['total']} rows" if item["truncated"] else ""
            return [f"**{caption}** (tables/{name}.csv{cut})", "", markdown_table(table), ""]
        return [f"*{markdown_escape(item['caption'], inline=True)}* (see index.html / figures)", ""]

    def save(self, folder: str | Path) -> Path:
        """Write every file of the report atomically; returns the path of ``index.html``.

        The files of an earlier report in ``folder`` are removed first (``index.html`` before anything else) and
        ``index.html`` is written last: a save cut short leaves no page, never an old page beside new tables.
        ``report.json`` records what made the report and the sha256 of every table and figure. The folder is
        locked while it is written (:func:`~conceptforest.folder_lock.folder_lock`): a second process writing it
        at the same time is refused.
        """
        from conceptforest.folder_lock import folder_lock

        with folder_lock(folder) as locked:
            remove_report_files(locked)
            self.made_by.setdefault("created_at", datetime.now(UTC).isoformat(timespec="seconds"))
            files = self._write_files(locked)
            atomic_write_json(locked / "report.json", plain(self._record(files)))
            atomic_write_text(locked / "report.md", self.to_markdown())
            return atomic_write_text(locked / "index.html", self._html())

    def _write_files(self, folder: Path) -> dict[str, str]:
        """Write the tables and figures; returns every file beside the pages with its sha256."""
        files: dict[str, str] = dict(self.extra_files)
        for name, table in self._tables.items():
            files[f"tables/{name}.csv"] = _write(folder, f"tables/{name}.csv", csv_text(table).encode("utf-8"))
        for name, (data, mime) in self._figures.items():
            relative = f"figures/{name}.{'svg' if mime == 'image/svg+xml' else 'png'}"
            files[relative] = _write(folder, relative, data)
        return files

    def _record(self, files: dict[str, str]) -> dict[str, Any]:
        """What ``report.json`` holds."""
        return {
            "title": self.title,
            "banner": self.banner,
            "made_by": self.made_by,
            "provenance": self.provenance,
            "sections": self.section_titles,
            "files": files,
            **self._json,
        }

    def _html(self) -> str:
        environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        return environment.from_string(TEMPLATE).render(
            title=self.title,
            banner=self.banner,
            sections=list(self._sections.values()),
            collapse_rows=COLLAPSE_ROWS,
            made_by=[(k, _cell_text(v)) for k, v in self.made_by.items()],
        )


def _write(folder: Path, relative: str, data: bytes) -> str:
    """Write one file of the report; returns its sha256."""
    atomic_write_bytes(folder / relative, data)
    return hashlib.sha256(data).hexdigest()


def _made_by_text(made_by: Mapping[str, Any]) -> str:
    return "; ".join(f"{k}: {_cell_text(v)}" for k, v in made_by.items())
