"""Make user and LLM text inert wherever the tool shows it: Markdown, CSV files and matplotlib figures.

Labels, file names and concept values come from users, folders and language models; none of them may turn into
HTML in a Markdown viewer, a formula in a spreadsheet or TeX in a figure.
"""

from __future__ import annotations

import html
import re
from typing import Any

from conceptforest.safe_csv import FORMULA_STARTS, csv_safe, csv_safe_table, csv_text

__all__ = ["FORMULA_STARTS", "csv_safe", "csv_safe_table", "csv_text", "markdown_escape", "plot_text"]

# characters that start Markdown inline syntax or split a table row
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def markdown_escape(text: Any, *, inline: bool = False) -> str:
    """``text`` as literal Markdown: HTML escaped (``& < >``) and inline syntax backslash-escaped.

    Parameters
    ----------
    text : Any
        Turned into ``str`` first.
    inline : bool
        Also turn line breaks into spaces (table cells, captions, list items).

    Examples
    --------
    >>> markdown_escape("<b>a|b</b>")
    '&lt;b&gt;a\\\\|b&lt;/b&gt;'
    """
    escaped = html.escape(_MARKDOWN_SPECIAL.sub(r"\\\1", str(text)), quote=False)
    return _LINE_BREAKS.sub(" ", escaped) if inline else escaped


def plot_text(text: Any) -> str:
    """``text`` for a matplotlib Text: every ``$`` escaped, so nothing is parsed as mathtext.

    matplotlib draws ``\\$`` as a plain ``$`` in non-math text, so labels such as ``$x^$`` show as written.
    """
    return str(text).replace("$", r"\$")
