"""Reading concept tree files: bytes -> JSON/YAML data, with one clear error for whatever a file gets wrong.

A tree file may be hand-edited, truncated, saved in another encoding or made hostile on purpose. Everything that
can go wrong before validation (unreadable, not UTF-8, bad syntax, absurdly deep nesting, a YAML "bomb" of
aliases inside aliases) becomes a :class:`~conceptforest.errors.BadInputError` that names the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from conceptforest.errors import BadInputError
from conceptforest.text import strip_control

MAX_NESTING = 64
"""The deepest nesting a tree file may have; a real tree needs about 10 levels."""
MIN_ITEM_BUDGET = 1_000_000
"""A file may expand to at least this many items (more for large files: 10 per byte)."""
YAML_SUFFIXES = {".yaml", ".yml"}
_TREE_HINT = "give the path of a tree.json written by 'conceptforest concepts generate', or a hand-edited copy."


def one_line(text: str, limit: int = 300) -> str:
    """``text`` without control characters, on one line, cut to ``limit`` characters."""
    flat = " ".join(strip_control(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def read_tree_file(path: Path) -> Any:
    """The parsed content of a JSON or YAML tree file, checked for depth and size but not yet validated.

    Raises
    ------
    BadInputError
        The file cannot be read, is not UTF-8, is not valid JSON/YAML, is nested too deeply or expands to too
        many items. The message names the file.
    """
    name = str(path)
    try:
        raw = path.read_bytes()
    except (OSError, MemoryError) as exc:
        raise BadInputError(f"Concept tree file {name!r} could not be read: {exc}.", hint=_TREE_HINT) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(
            f"Concept tree file {name!r} is not UTF-8 text (byte {exc.start} is {raw[exc.start : exc.start + 1]!r}).",
            hint="save the file with UTF-8 encoding (your editor's 'save with encoding' option) and reload.",
        ) from exc
    data = _parse(name, text, yaml_syntax=path.suffix.lower() in YAML_SUFFIXES)
    check_tree_data(data, name, max_items=max(MIN_ITEM_BUDGET, 10 * len(text)))
    return data


def _parse(name: str, text: str, *, yaml_syntax: bool) -> Any:
    kind = "YAML" if yaml_syntax else "JSON"
    try:
        if not yaml_syntax:
            return json.loads(text)
        _check_yaml_nesting(name, text)
        return yaml.safe_load(text)
    except RecursionError as exc:
        raise _too_deep(name) from exc
    except MemoryError as exc:
        raise BadInputError(f"Concept tree file {name!r} is too large to read.", hint=_TREE_HINT) from exc
    except (ValueError, yaml.YAMLError) as exc:  # JSONDecodeError is a ValueError, so is a 5000-digit number
        raise BadInputError(
            f"Concept tree file {name!r} is not valid {kind}: {one_line(str(exc)).rstrip('.')}.",
            hint="fix the syntax (a trailing comma or a missing quote is the usual cause) and reload.",
        ) from exc


def _check_yaml_nesting(name: str, text: str) -> None:
    """Stop at the first collection nested too deeply, before PyYAML's slow deep scan and recursive composer."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                raise _too_deep(name)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _too_deep(name: str) -> BadInputError:
    return BadInputError(
        f"Concept tree file {name!r} is nested more than {MAX_NESTING} levels deep, which no concept tree is.",
        hint="check that this is a concept tree; parts nest at most 3 deep and values 4 levels below 'values'.",
    )


def check_tree_data(data: Any, source: str, *, max_items: int | None = None) -> None:
    """Refuse data nested deeper than :data:`MAX_NESTING` or (with ``max_items``) with more items than that.

    Items reached through a YAML alias count every time they are reached, so an alias bomb (and a YAML
    structure that contains itself) is caught here, before anything expands it.
    """
    stack: list[tuple[Any, int]] = [(data, 0)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if depth > MAX_NESTING:
            raise _too_deep(source)
        if max_items is not None and seen > max_items:
            raise BadInputError(
                f"Concept tree file {source!r} expands to more than {max_items:,} items "
                "(YAML anchors and aliases repeated inside each other).",
                hint="write the values out instead of nesting aliases, or save the tree as JSON.",
            )
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for pair in item.items() for child in pair)
        elif isinstance(item, list | tuple | set):
            stack.extend((child, depth + 1) for child in item)
