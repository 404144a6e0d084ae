"""Untrusted text as Markdown that renders literally: prose, inline code, code blocks, table
cells (the rules are in evalgate/report/markdown.py's docstring). The route, load and
determinism tables use them as the gate's Markdown does."""

from __future__ import annotations

import re
from collections.abc import Sequence

EXCERPT_CHARS = 200


CELL_CHARS = 200


PROSE_CHARS = 600


ZWSP = "\u200b"


# Characters XML/HTML cannot carry, and the C0/C1 controls a terminal would act on (ANSI colour).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


# Inline Markdown syntax, HTML, entities, GitHub math (`$`), and the `:`/`.` URL and www
# autolinks start from; `@` and `#` are handled apart (mentions, issue references).
_PUNCT = set("\\`*_{}[]()<>!|~:.&$")


_NUMERIC_PUNCT = set("\\`*_[]<>|$&")


def clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("\ufffd", text)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "\u2026"


def prose(text: str, limit: int = PROSE_CHARS) -> str:
    """Untrusted text as one line of Markdown prose that renders literally."""
    text = shorten(" ".join(clean(text).split()), limit)
    out = []
    if text[:1] in ("-", "+", "="):  # a list marker or heading underline at a line start
        out.append("\\")
    for ch in text:
        if ch in "@#":
            out.append("\\" + ch + ZWSP)
        elif ch in _PUNCT:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def cell(text: str) -> str:
    """A number evalgate formatted (a value, an interval): only what could form syntax."""
    return "".join("\\" + ch if ch in _NUMERIC_PUNCT else ch for ch in text)


def code(text: str, limit: int = CELL_CHARS, table: bool = True) -> str:
    """Untrusted text as an inline code span (safe inside a table row when `table`)."""
    text = shorten(" \u23ce ".join(clean(text).split("\n")), limit)
    if not text.strip():
        return "(empty)"
    if table:
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def code_block(text: str, limit: int = EXCERPT_CHARS) -> str:
    """Untrusted multi-line text as a fenced code block nothing inside can close."""
    text = shorten(clean(text), limit)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return lines
