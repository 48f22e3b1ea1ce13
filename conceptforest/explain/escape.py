"""Make user and LLM text inert wherever the report shows it: Markdown, CSV cells and matplotlib figures.

Labels, file names and concept values come from users, folders and language models; none of them may turn into
HTML in a Markdown viewer, a formula in a spreadsheet or TeX in a figure.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

# characters that start Markdown inline syntax or split a table row
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
# what spreadsheets read as the start of a formula (OWASP "CSV injection")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


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


def csv_safe(value: Any) -> Any:
    """A text value that a spreadsheet would run as a formula, prefixed with ``'``; anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_safe_table(table: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells and column names are :func:`csv_safe`; numeric and boolean columns untouched."""
    safe = table.copy()
    for position in range(safe.shape[1]):
        column = safe.iloc[:, position]
        if not (is_numeric_dtype(column.dtype) or is_bool_dtype(column.dtype)):
            safe.isetitem(position, column.astype(object).map(csv_safe))
    safe.columns = pd.Index([csv_safe(name) for name in safe.columns])
    return safe


def plot_text(text: Any) -> str:
    """``text`` for a matplotlib Text: every ``$`` escaped, so nothing is parsed as mathtext.

    matplotlib draws ``\\$`` as a plain ``$`` in non-math text, so labels such as ``$x^$`` show as written.
    """
    return str(text).replace("$", r"\$")
