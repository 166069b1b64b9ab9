"""Run-id globs, with exactly the meaning of ``fnmatch.fnmatchcase``, as SQLite ``GLOB`` patterns.

A reader token grants runs by globs (``eventlog.http.auth.Access.can_read``), and listing runs
must filter by them *before* ``LIMIT/OFFSET``, so the filter runs in the query. Translating a
glob to SQLite's own ``GLOB`` keeps the query plain SQL: it runs in SQLite's C code with the GIL
released, where a Python SQL function would take the GIL back for every row of the scan.

The two dialects differ in details. The translation scans a glob the way ``fnmatch.translate``
does (a ``[`` without its ``]`` is a literal), reads each bracket expression back from
``fnmatch``'s own translation of it (so its quirks come along: reversed ranges drop out, an empty
set matches nothing), and writes each piece in a form whose meaning is the same in SQLite
(``[^...]`` negates; ``]`` goes first in a set and a literal ``-`` right after it; ``*``, ``?``
and ``[`` become one-character sets). A backend on another database (PostgreSQL's ``~`` or
``LIKE``) writes the same pieces in its own syntax.
NUL never occurs in a stored run id, so a glob piece that needs it matches nothing.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class CharSet:
    """One bracket expression: a character in (or, ``negated``, not in) the inclusive ranges."""

    ranges: tuple[tuple[str, str], ...]
    negated: bool


Piece = str | CharSet
"""``"*"`` (any run of characters), ``"?"`` (any one character), a ``CharSet``, or a literal
character given as a one-character ``CharSet`` range, so that only sets carry characters."""


def parse(glob: str) -> list[Piece]:
    """The pieces of ``glob``, scanned as ``fnmatch.translate`` scans it."""
    pieces: list[Piece] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            if not pieces or pieces[-1] != "*":
                pieces.append("*")
        elif c == "?":
            pieces.append("?")
        elif c == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                pieces.append(CharSet((("[", "["),), False))
            else:
                pieces.append(_bracket(glob[i - 1 : j + 1]))
                i = j + 1
        else:
            pieces.append(CharSet(((c, c),), False))
    return pieces


_TRANSLATED = re.compile(r"\(\?s:(.*)\)\\[Zz]", re.S)


def _bracket(expression: str) -> CharSet:
    """The set of one bracket expression, as ``fnmatch`` reads it.

    ``fnmatch.translate`` rewrites a bracket in ways no plain reading predicts (it drops reversed
    ranges, and a set left starting with ``!`` after that becomes a negated one), so the set is
    read back from its translation: a regular-expression class, or ``(?!)`` or ``.``."""
    found = _TRANSLATED.fullmatch(fnmatch.translate(expression))
    assert found is not None, expression
    regex = found.group(1)
    if regex == "(?!)":
        return CharSet((), negated=False)
    if regex == ".":
        return CharSet((), negated=True)
    body = regex[1:-1]
    negated = body.startswith("^")
    if negated:
        body = body[1:]
    ranges: list[tuple[str, str]] = []
    i = 0

    def atom() -> str:
        nonlocal i
        escaped = body[i] == "\\"
        i += 2 if escaped else 1
        return body[i - 1]

    while i < len(body):
        low = atom()
        if i + 1 < len(body) and body[i] == "-":  # a "-" before the end joins a range
            i += 1
            ranges.append((low, atom()))
        else:
            ranges.append((low, low))
    return CharSet(tuple(ranges), negated)


def _normalized(ranges: tuple[tuple[str, str], ...]) -> list[tuple[int, int]]:
    """Sorted, merged code-point ranges, without NUL (see the module docstring)."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted((max(ord(a), 1), ord(b)) for a, b in ranges if ord(b) >= 1):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _without(ranges: list[tuple[int, int]], code: int) -> tuple[list[tuple[int, int]], bool]:
    """``ranges`` less the one character ``code``, and whether it was in them."""
    out, found = [], False
    for low, high in ranges:
        if low <= code <= high:
            found = True
            out += [r for r in ((low, code - 1), (code + 1, high)) if r[0] <= r[1]]
        else:
            out.append((low, high))
    return out, found


def _sqlite_set(charset: CharSet) -> str | None:
    """``charset`` in SQLite's syntax; None when it matches no character."""
    ranges = _normalized(charset.ranges)
    if not ranges:
        return "?" if charset.negated else None
    if not charset.negated and len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        char = chr(ranges[0][0])
        return f"[{char}]" if char in "*?[" else char
    ranges, bracket = _without(ranges, ord("]"))
    ranges, dash = _without(ranges, ord("-"))
    ranges, caret = _without(ranges, ord("^"))
    # "]" is a member only first, "-" is literal where no range precedes it, and "^" anywhere
    # but first; a set of "^" alone is the plain character, which needs no brackets.
    members = ["]"] * bracket + ["-"] * dash
    members += [chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges]
    members += ["^"] * caret
    if members == ["^"] and not charset.negated:
        return "^"
    return "[" + "^" * charset.negated + "".join(members) + "]"


@lru_cache(maxsize=1024)
def sqlite_glob(glob: str) -> str | None:
    """``glob`` as a SQLite ``GLOB`` pattern matching exactly what ``fnmatchcase`` matches;
    None when it matches nothing."""
    out = []
    for piece in parse(glob):
        if isinstance(piece, CharSet):
            text = _sqlite_set(piece)
            if text is None:
                return None
            out.append(text)
        else:
            out.append(piece)
    return "".join(out)


def _postgres_set(charset: CharSet) -> str | None:
    """``charset`` as a PostgreSQL (ARE) bracket expression; None when it matches no
    character. Every character is written as a ``\\U`` escape, which AREs read alike inside
    and outside brackets, so no character needs a rule of its own."""
    ranges = _normalized(charset.ranges)
    if not ranges:
        return "." if charset.negated else None
    members = "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)
    return "[" + "^" * charset.negated + members + "]"


@lru_cache(maxsize=1024)
def postgres_regex(glob: str) -> str | None:
    """``glob`` as an anchored PostgreSQL regular expression (for ``~``) matching exactly what
    ``fnmatchcase`` matches; None when it matches nothing."""
    out = ["^"]
    for piece in parse(glob):
        if isinstance(piece, CharSet):
            text = _postgres_set(piece)
            if text is None:
                return None
            out.append(text)
        else:
            out.append({"*": ".*", "?": "."}[piece])
    return "".join(out + ["$"])
