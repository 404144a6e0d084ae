"""Grounding: is each claim of the answer supported by the canary's context?

The lexical pass is deterministic and cheap: a claim's content words (stop words dropped,
singular/plural folded) and numbers are looked up in the context. A number the context does
not contain makes the claim unsupported outright (a changed figure is the typical
hallucination); otherwise support = share of content words found. At or above `supported_at`
the claim is supported, below `unsupported_below` unsupported, in between it is undecided and
goes to the judge (faithfulness template) when the criterion says `undecided: judge`.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalgate.text.tokens import claims, tokens

_STOPWORD_TEXT = """
a an the and or but if then so of to in on at by for with from as into onto about over under
is are was were be been being am do does did have has had can could will would shall should
may might must it its this that these those there here i you he she we they me him her us
them my your his our their not no yes any all each every some such than too very just also
only own same what which who whom whose when where why how up out off again further once
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# Words that turn a claim around. Word overlap cannot see them ("does not include refunds"
# shares every content word with "includes refunds"), so a claim with a negation the context
# does not have is never supported lexically: at best undecided (the judge, or `undecided:`).
# "t" is what "doesn't" / "isn't" leave after punctuation is dropped.
NEGATIONS = frozenset({"not", "no", "never", "none", "nor", "cannot", "without", "t"})


@dataclass(frozen=True)
class ClaimSupport:
    text: str
    support: float
    status: str  # supported | unsupported | undecided
    why: str


def _fold(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


@dataclass(frozen=True)
class Context:
    """A context tokenised once (an answer has many claims; a context may be long)."""

    words: frozenset[str]
    numbers: tuple[float, ...]

    @classmethod
    def of(cls, text: str) -> Context:
        toks = tokens(text)
        return cls(frozenset(_fold(t.word) for t in toks if t.word is not None),
                   tuple(t.number for t in toks if t.number is not None))


def lexical_support(claim: str, context: str | Context, supported_at: float,
                    unsupported_below: float) -> ClaimSupport:
    """Score one claim against the context (see the module docstring)."""
    ctx = context if isinstance(context, Context) else Context.of(context)
    ctx_words, ctx_numbers = ctx.words, ctx.numbers
    said = tokens(claim)
    numbers = [t for t in said if t.number is not None]
    missing_numbers = [t.text for t in numbers
                       if not any(abs(t.number - n) <= 1e-9 * max(1.0, abs(n))  # type: ignore[operator]
                                  for n in ctx_numbers)]
    words = [t.word for t in said if t.word is not None and t.word not in STOPWORDS
             and len(t.word) > 1]
    missing_words = [w for w in words if _fold(w) not in ctx_words]
    total = len(words) + len(numbers)
    if total == 0:
        return ClaimSupport(claim, 1.0, "supported", "no content words")
    found = total - len(missing_words) - len(missing_numbers)
    support = found / total
    if missing_numbers:
        return ClaimSupport(claim, support, "unsupported",
                            f"number(s) {', '.join(missing_numbers)} not in the context")
    why = f"{found}/{total} content words in the context"
    if missing_words:
        why += f"; not found: {', '.join(dict.fromkeys(missing_words))}"
    negated = sorted({t.word for t in said if t.word in NEGATIONS} - ctx_words)
    if negated and support >= unsupported_below:
        return ClaimSupport(claim, support, "undecided",
                            f"{why}; negation ({', '.join(negated)}) not in the context: word "
                            "overlap cannot tell a claim from its contrary")
    if support >= supported_at:
        return ClaimSupport(claim, support, "supported", why)
    if support < unsupported_below:
        return ClaimSupport(claim, support, "unsupported", why)
    return ClaimSupport(claim, support, "undecided", why)


def split_and_score(answer: str, context: str, supported_at: float,
                    unsupported_below: float) -> list[ClaimSupport]:
    ctx = Context.of(context)
    return [lexical_support(c, ctx, supported_at, unsupported_below) for c in claims(answer)]
