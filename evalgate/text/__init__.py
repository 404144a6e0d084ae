"""Pure text analysis shared by grading and the simulator's judge: normalisation, word and
number tokens, fact matching, claims (sentences), lexical grounding against a context, and the
4-characters-a-token estimate. No evalgate imports, no I/O."""

from __future__ import annotations

from evalgate.text.grounding import lexical_support, split_and_score
from evalgate.text.tokens import (
    claims,
    estimate_tokens,
    find_fact,
    normalise_text,
    numbers_in,
    states,
    tokens,
)

__all__ = ["claims", "estimate_tokens", "find_fact", "lexical_support", "normalise_text",
           "numbers_in", "split_and_score", "states", "tokens"]
