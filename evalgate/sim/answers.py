"""What the simulator answers: a canary's reference (or its facts), a hallucinated variant with
altered numbers or an invented claim, and reworded samples for the determinism knob. Draws
come from the answer stream, keyed on (seed, model, prompt, sample), so a retry gets the same
answer."""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from evalgate.spec.sim_profile import SimProfile

_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_DIGIT = re.compile(r"\d")
_GENEVA = "This was confirmed by the 2019 Geneva accord."
_UNKNOWN = "I don't know."
_UNKNOWN_WRONG = "The answer is 42."


@dataclass(frozen=True)
class SimCase:
    """A canary the simulator knows the answer to (its facts, forbidden claims, reference)."""

    key: str
    prompt: str
    facts: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    reference: str | None = None
    # a tool canary: the call to answer with (name, arguments as JSON) and its tool's
    # parameter names (so an invented argument is one the schema does not have)
    tool_call: tuple[str, str] | None = None
    tool_params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Accept lists (e.g. straight from YAML) but keep the dataclass immutable and hashable.
        object.__setattr__(self, "facts", tuple(self.facts))
        object.__setattr__(self, "forbidden", tuple(self.forbidden))
        object.__setattr__(self, "tool_params", tuple(self.tool_params))


def _tokens(text: str, chars_per_token: float) -> int:
    """Rough token estimate used for usage, context length and max_tokens."""
    return max(1, math.ceil(len(text) / chars_per_token))


def _rng(key: str) -> random.Random:
    """A Random seeded from sha256 so seeds are stable across Python versions and runs."""
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], "big"))


def _sentence(parts: Iterable[str]) -> str:
    """``Answer: a; b.`` without doubling a full stop the last fact already has."""
    text = "; ".join(parts)
    return f"Answer: {text}" if text.endswith((".", "!", "?")) else f"Answer: {text}."


def _other_number(s: str, rng: random.Random) -> str:
    """A different number whose text does not contain the original (30 -> 45, never 130)."""
    if "," in s:  # thousands separators: 1,000 -> 1,350
        whole, _, frac = s.partition(".")
        cand = f"{int(_other_number(whole.replace(',', ''), rng)):,}"
        return f"{cand}.{frac}" if frac else cand
    if "." in s:
        decimals = len(s.split(".", 1)[1])
        value = float(s)
        step = 10.0**-decimals
        for _ in range(50):
            delta = max(value * rng.uniform(0.2, 0.9), step * rng.randint(1, 9))
            cand = f"{value + delta:.{decimals}f}"
            if s not in cand:
                return cand
        return f"{value + 7.5:.{decimals}f}"
    n = int(s)
    for _ in range(50):
        cand = str(n + rng.randint(1, max(9, n // 2)))
        if s not in cand:
            return cand
    return str(n * 2 + 11)


def _alter_numbers(text: str, rng: random.Random) -> str:
    return _NUMBER.sub(lambda m: _other_number(m.group(0), rng), text)


def _wrong_facts(facts: tuple[str, ...], rng: random.Random) -> str:
    """The facts with every number changed, redrawn until no numeric fact survives verbatim."""
    numeric = [f for f in facts if _DIGIT.search(f)]
    answer = ""
    for _ in range(20):
        answer = _sentence(_alter_numbers(f, rng) for f in facts)
        if not any(f in answer for f in numeric):
            break
    return answer


def _correct_answer(case: SimCase) -> str:
    if case.reference is not None:
        return case.reference
    if case.facts:
        return _sentence(case.facts)
    return "I can help with that."


def _hallucinated_answer(case: SimCase, rng: random.Random) -> str:
    if case.forbidden:
        return _sentence([rng.choice(case.forbidden)])
    if case.facts and any(_DIGIT.search(f) for f in case.facts):
        return _wrong_facts(case.facts, rng)
    if not case.facts and case.reference is not None and _DIGIT.search(case.reference):
        return _alter_numbers(case.reference, rng)
    return f"{_correct_answer(case)} {_GENEVA}"


_VARIANTS = ("In short", "To summarise", "Briefly", "Put simply", "In a nutshell", "Overall",
             "All in all", "Simply put")


def _vary_answer(profile: SimProfile, case_key: str, sample: str, answer: str) -> str:
    """The determinism knob: a canary is stable with probability `profile.determinism` (drawn
    once per canary from the profile's seed); an unstable one words every sample differently
    (a different lead-in and the sample number), so no two of its samples agree, exactly or
    after folding case, spaces and punctuation, and its facts stay in the answer."""
    assert profile.determinism is not None
    if _rng(f"determinism\x1f{profile.seed}\x1f{case_key}").random() < profile.determinism:
        return answer
    lead = _VARIANTS[_rng(f"variant\x1f{case_key}\x1f{sample}").randrange(len(_VARIANTS))]
    return f"{lead} (take {sample}): {answer}"
