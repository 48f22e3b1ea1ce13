"""Small text helpers for text that comes from users, files or an LLM.

- :func:`strip_control` removes what a terminal would interpret (control characters, ANSI/OSC escapes).
- :func:`safe_filename` turns a label into a file name that any common file system accepts.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = ["safe_filename", "strip_control"]

# CSI (ESC [ or 8-bit CSI) parameters, intermediates and a final byte.
_CSI = r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
# OSC, DCS, SOS, PM, APC strings (7- or 8-bit introducer), terminated by BEL or ST.
_STRING = r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
# Any other escape: ESC, intermediates, a final byte.
_OTHER_ESCAPE = r"\x1b[\x20-\x2f]*[\x30-\x7e]"
_ESCAPES = re.compile(f"{_CSI}|{_STRING}|{_OTHER_ESCAPE}")

# Line breaks of any kind and tabs become a space; the other control characters go.
_AS_SPACE = "\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029"
# Bidirectional embeddings, overrides and isolates reorder what a terminal shows (Trojan Source).
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

_WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(1, 10)}
_HASH_CHARS = 8
_KEPT_PUNCTUATION = "._-"


def _keep_char(char: str) -> bool:
    category = unicodedata.category(char)
    if char in _AS_SPACE:
        return True
    # Cc: C0/C1 controls and DEL; Cs: lone surrogates (unwritable as UTF-8).
    return category not in {"Cc", "Cs"} and char not in _BIDI


def strip_control(text: str) -> str:
    """Remove terminal control characters and escape sequences; turn tabs and line breaks into spaces.

    Parameters
    ----------
    text : str
        Any text, e.g. a label, an LLM answer or a file name.

    Returns
    -------
    str
        ``text`` without ANSI/OSC/DCS escape sequences, C0/C1 control characters, DEL, bidirectional
        override characters and lone surrogates. Tabs and line breaks (``\\n``, ``\\r``, NEL, U+2028/9) become
        one space each; other spaces and printable text are kept as they are.

    Examples
    --------
    >>> strip_control("\\x1b[31mred\\x1b[0m\\tdog\\x07")
    'red dog'
    >>> strip_control("\\x1b]0;pwned\\x07title")
    'title'
    """
    if text.isprintable():  # the common case: nothing to do
        return text
    text = _ESCAPES.sub("", text)
    kept = (" " if char in _AS_SPACE else char for char in text if _keep_char(char))
    return "".join(kept)


def _slug(name: str) -> str:
    """Letters, marks and digits of any script plus ``. _ -``; runs of anything else become one ``-``."""
    text = unicodedata.normalize("NFKC", strip_control(name)).strip().lower()
    pieces: list[str] = []
    for char in text:
        if unicodedata.category(char)[0] in "LMN" or char in _KEPT_PUNCTUATION:
            pieces.append(char)
        elif not pieces or pieces[-1] != "-":
            pieces.append("-")
    slug = re.sub(r"-{2,}", "-", "".join(pieces)).strip("-. ")
    if slug.split(".", 1)[0] in _WINDOWS_RESERVED:
        slug = f"{slug}_"
    return slug


def _cut_to_bytes(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 form fits in ``max_bytes`` (never splits a character)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def _name_hash(name: str, counter: int) -> str:
    data = name.encode("utf-8", errors="surrogatepass") + (f"\0{counter}".encode() if counter else b"")
    return hashlib.sha256(data).hexdigest()[:_HASH_CHARS]


def safe_filename(name: str, taken: set[str] | None = None, *, max_bytes: int = 120) -> str:
    """A file-name-safe slug of ``name``, bounded in UTF-8 bytes and unique within ``taken``.

    The slug is ``name`` NFKC-normalised and lower-cased, with control characters removed and every run of
    characters other than letters, marks and digits (of any script) and ``. _ -`` replaced by one ``-``.
    It never starts or ends with ``-`` or ``.``, is never empty, ``.`` or ``..``, and avoids Windows' reserved
    device names. When the slug is longer than ``max_bytes`` UTF-8 bytes, empty, or already in ``taken``
    (compared case-insensitively), it is cut and ``-`` plus 8 hex digits of the sha256 of the full ``name`` is
    appended, so two long labels that share a prefix still get different, stable names.

    Parameters
    ----------
    name : str
        The text to name a file after, e.g. a label.
    taken : set of str, optional
        Names already used in the same folder. The returned name is added to it, so calling this in a loop
        with one set gives distinct names.
    max_bytes : int, default 120
        The bound on the UTF-8 length of the result (file systems allow 255 bytes; keep room for a prefix,
        an extension and a temporary suffix). At least 16.

    Returns
    -------
    str
        The file name (no extension added).

    Examples
    --------
    >>> safe_filename("Chihuahua (long coat)")
    'chihuahua-long-coat'
    >>> used: set[str] = set()
    >>> safe_filename("a/b", used), safe_filename("a:b", used)
    ('a-b', 'a-b-6783a31e')
    """
    if max_bytes < 16:
        raise ValueError(f"max_bytes must be at least 16, not {max_bytes}")
    used = {t.casefold() for t in taken} if taken else set()
    slug = _slug(name)
    candidate = slug
    counter = 0
    while not candidate or len(candidate.encode("utf-8")) > max_bytes or candidate.casefold() in used:
        suffix = _name_hash(name, counter)
        stem = _cut_to_bytes(slug, max_bytes - len(suffix) - 1).rstrip("-. ") or "unnamed"
        candidate = f"{stem}-{suffix}"
        counter += 1
    if taken is not None:
        taken.add(candidate)
    return candidate
