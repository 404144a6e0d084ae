"""Tolerant text matching: normalisation, numbers as values, reference facts, sentences.

Every equivalence applied here is listed in docs/rubrics.md ("Reference facts") and has a test
in tests/test_grading.py. Nothing beyond that list is treated as equal: no stemming, no
synonyms, no fuzzy distance.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NORMALISATIONS = ("case", "whitespace", "unicode", "punctuation")
DEFAULT_NORMALISE = ("case", "whitespace", "unicode")

# Dashes, minus signs and quotes folded to ASCII by the `unicode` normalisation (NFKC keeps them).
_FOLD = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-",
                       "\u2014": "-", "\u2212": "-", "\u2018": "'", "\u2019": "'",
                       "\u201c": '"', "\u201d": '"'})


def normalise_text(text: str, options: Iterable[str]) -> str:
    """Apply the chosen normalisations: NFKC + dash/quote folding, punctuation -> space,
    whitespace collapsed, case folded (in that order)."""
    opts = set(options)
    if "unicode" in opts:
        text = unicodedata.normalize("NFKC", text).translate(_FOLD)
    if "punctuation" in opts:
        text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    if "whitespace" in opts:
        text = " ".join(text.split())
    if "case" in opts:
        text = text.casefold()
    return text


# ----------------------------------------------------------------------------- numbers

_UNIT_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
               "fourteen fifteen sixteen seventeen eighteen nineteen")
_TEN_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety"
_UNITS = {w: i for i, w in enumerate(_UNIT_WORDS.split())}
_TENS = {w: 10 * i for i, w in enumerate(_TEN_WORDS.split(), start=2)}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
NUMBER_WORDS = frozenset([*_UNITS, *_TENS, "hundred", *_SCALES])

# A digit number: 1,000 / 1000 / 2.5 / .5, with its minus sign when the sign is not glued to a
# word or number before it ("-5" is minus five; "5-10" and "30-day" have no sign); a word; a
# percent sign; any other symbol is dropped.
_TOKEN = re.compile(r"(?P<num>(?:(?<![\w.])-)?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
                    r"|(?<!\d)\.\d+))|(?P<word>[^\W_]+)|(?P<pct>%)")


@dataclass(frozen=True)
class Token:
    """A word (casefolded) or a number (its value); `text` is what the answer said."""

    word: str | None
    number: float | None
    text: str


def _words_value(words: Sequence[str]) -> float | None:
    """The value of a run of number words ("two hundred and fifty", "one thousand two")."""
    total = current = 0
    seen = False
    for w in words:
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = (current or 1) * 100
        elif w in _SCALES:
            total += (current or 1) * _SCALES[w]
            current = 0
        else:
            continue
        seen = True
    return float(total + current) if seen else None


def _continues(last: str, word: str) -> bool:
    """Whether `word` extends the number phrase ending in `last` ("thirty" + "one" does,
    "two" + "three" starts a new number, "and" only follows "hundred" or a scale)."""
    if word == "and":
        return last == "hundred" or last in _SCALES
    if word in _UNITS:
        return (last in _TENS and 0 < _UNITS[word] < 10) or last in ("hundred", "and") \
            or last in _SCALES
    if word in _TENS:
        return last in ("hundred", "and") or last in _SCALES
    if word == "hundred":
        return last in _UNITS or last in _TENS
    return last in _UNITS or last in _TENS or last == "hundred"  # a scale word


def tokens(text: str) -> list[Token]:
    """Words and numbers of a text after NFKC + case folding; punctuation is dropped, so
    "30-day" gives [30, day]. Runs of number words become one number ("thirty" -> 30,
    "two hundred and fifty" -> 250); "%" becomes the word "percent"."""
    text = normalise_text(text, ("unicode", "case"))
    out: list[Token] = []
    run: list[str] = []

    def flush() -> None:
        trailing = 0
        while run and run[-1] == "and":  # "and" only joins number words
            run.pop()
            trailing += 1
        value = _words_value(run)
        if value is not None:
            out.append(Token(None, value, " ".join(run)))
        out.extend(Token("and", None, "and") for _ in range(trailing))
        run.clear()

    last_end = 0
    for m in _TOKEN.finditer(text):
        if run and text[last_end:m.start()].strip(" \t\n-"):  # "900, 3" are two numbers
            flush()
        last_end = m.end()
        if m.group("word") is not None:
            word = m.group("word")
            if word in NUMBER_WORDS or word == "and":
                if run and not _continues(run[-1], word):
                    flush()
                if word != "and" or run:
                    run.append(word)
                    continue
            flush()
            out.append(Token(word, None, word))
        elif m.group("num") is not None:
            flush()
            raw = m.group("num")
            out.append(Token(None, float(raw.replace(",", "")), raw))
        else:
            flush()
            out.append(Token("percent", None, "%"))
    flush()
    return out


def numbers_in(text: str) -> list[float]:
    return [t.number for t in tokens(text) if t.number is not None]


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 2 and word.endswith("s") and not word.endswith("ss") \
        else word


def _same(fact: Token, said: Token, after_number: bool) -> bool:
    if fact.number is not None or said.number is not None:
        return fact.number is not None and said.number is not None \
            and abs(fact.number - said.number) <= 1e-9 * max(1.0, abs(fact.number))
    if fact.word == said.word:
        return True
    # A unit right after a number may be singular or plural: "30 days" = "30-day".
    return after_number and _singular(fact.word or "") == _singular(said.word or "")


def find_fact(fact: str, answer_tokens: Sequence[Token]) -> tuple[int, int] | None:
    """Where the fact's tokens occur contiguously in the answer's tokens (start, end), else
    None. A fact with no words or numbers is never found."""
    want = tokens(fact)
    if not want:
        return None
    n = len(want)
    for start in range(len(answer_tokens) - n + 1):
        if all(_same(want[i], answer_tokens[start + i],
                     i > 0 and want[i - 1].number is not None) for i in range(n)):
            return start, start + n
    return None


def states(fact: str, answer: str) -> bool:
    """Whether the answer states the fact under the documented equivalences."""
    return find_fact(fact, tokens(answer)) is not None


# ----------------------------------------------------------------------------- claims

# A sentence ends at . ! ? or ; followed by whitespace ("2.1" does not end one), and at a line
# break; list bullets ("- ", "* ", "1. ") are not part of a claim.
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "approx.", "incl.", "no.")


def claims(answer: str) -> list[str]:
    """The answer split into claims: sentences and list items with some word or number."""
    out: list[str] = []
    for line in answer.splitlines():
        pieces = _SENTENCE_END.split(_BULLET.sub("", line).strip())
        merged: list[str] = []
        for piece in pieces:
            if merged and merged[-1].casefold().endswith(_ABBREVIATIONS):
                merged[-1] += " " + piece
            else:
                merged.append(piece)
        out += [p.strip() for p in merged if p.strip() and tokens(p)]
    return out


def estimate_tokens(text: str) -> int:
    """Rough token count (4 characters a token): for servers that report no usage, and for
    routing conditions on prompt length."""
    return max(1, math.ceil(len(text) / 4))
