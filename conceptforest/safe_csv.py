"""Spreadsheet-safe CSV: every CSV file conceptforest writes (report tables, predictions.csv, compare -o,
skipped.csv) goes through :func:`csv_text`, so a label, file name or method name such as ``=HYPERLINK(...)`` or
``+cmd|' /C calc'!A0`` is text in a spreadsheet, never a formula (OWASP "CSV injection").

A module of its own, with no heavy import, so that every stage can use it.
"""

from __future__ import annotations

import csv
from typing import Any

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

__all__ = ["FORMULA_STARTS", "csv_safe", "csv_safe_table", "csv_text"]

# what spreadsheets read as the start of a formula (OWASP "CSV injection")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


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


def csv_text(table: pd.DataFrame) -> str:
    """``table`` as every CSV file the tool writes it: cells and names :func:`csv_safe`, text quoted (a line break
    inside a label stays inside its cell), no index."""
    return str(csv_safe_table(table).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC))
