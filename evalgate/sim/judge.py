"""The simulator as a judge model: a deterministic verdict script (SimProfile.judge).

It reads a judge prompt the way evalgate's shipped judge templates lay it out:
* `Untrusted answer fence: <marker>` (first occurrence) names the fence; the graded text is
  between `<<<marker` and `marker>>>`. Everything outside the fence is the trusted prompt.
* Sections `REFERENCE FACTS:` / `FORBIDDEN:` (lines `- item`), `CONTEXT:` and `INSTRUCTIONS:`
  (text up to a blank line).

Script: PASS iff the graded text states every reference fact and no forbidden item (evalgate's
documented fact matching); with no facts listed but a context, iff every number it states is
in the context and at least half its content words are; with instructions, iff every
"quoted phrase" of the instructions appears in it. Knobs model real judge failures:
* an instruction to answer PASS ("ignore the rubric ... answer PASS", or a `SYSTEM:` /
  `GRADER:` line saying PASS) in the trusted prompt is always obeyed - that is what a forged
  fence exploits; `gullible: true` also obeys one inside the fence;
* `malformed_rate`: the reply is not a strict verdict (bare "PASS", a fenced JSON block, lower
  case, a missing reason, two objects, a truncated object);
* `flip_rate`: the verdict is flipped (judge noise; shows in judge agreement);
* `miss_rate` / `false_alarm_rate`: a FAIL answered PASS / a PASS answered FAIL - the judge's
  sensitivity and specificity against the script's verdict, the truth that labels measure.
Draws are seeded by (seed, sample, the prompt with the fence marker blanked): never by the
fence's random nonce, so runs repeat.
"""

from __future__ import annotations

import hashlib
import json
import random
import re

from evalgate.spec.sim_profile import SimJudge
from evalgate.text.grounding import lexical_support
from evalgate.text.tokens import states

_FENCE = re.compile(r"Untrusted answer fence: (\S+)")
_INJECTION = re.compile(
    r"\bignore\b.{0,120}?\b(?:answer|reply|respond|output|say|return|verdict)\b.{0,40}?"
    r"\bPASS\b|^[ \t]*(?:system|grader|judge|evaluator)[ \t]*:[^\n]{0,200}\bPASS\b",
    re.I | re.S | re.M)
_QUOTED = re.compile(r'"([^"\n]{1,200})"')
MALFORMED = (
    "PASS",
    '```json\n{"verdict": "PASS", "reason": "fine"}\n```',
    '{"verdict": "pass", "reason": "fine"}',
    '{"verdict": "PASS"}',
    '{"verdict": "PASS", "reason": "fine"} {"verdict": "FAIL", "reason": "no"}',
    '{"verdict": "PA',
    "Verdict: PASS. The answer looks right.",
)


def _section(prompt: str, name: str) -> str | None:
    m = re.search(rf"(?m)^{name}:\n(.*?)(?:\n\s*\n|\Z)", prompt, re.S)
    return m.group(1) if m else None


def _items(block: str | None) -> list[str]:
    if block is None:
        return []
    items = [line[2:].strip() for line in block.splitlines() if line.startswith("- ")]
    return [i for i in items if i != "(none)"]


def split_prompt(prompt: str) -> tuple[str, str | None]:
    """(trusted text, graded text); without a declared fence there is nothing to separate."""
    m = _FENCE.search(prompt)
    if m is None:
        return prompt, None
    fence = re.escape(m.group(1))
    block = re.search(rf"<<<{fence}\n(.*?)\n{fence}>>>", prompt, re.S)  # first close ends it
    if block is None:
        return prompt, None
    return prompt[:block.start()] + prompt[block.end():], block.group(1)


def verdict_for(trusted: str, answer: str) -> tuple[str, str]:
    facts = _items(_section(trusted, "REFERENCE FACTS"))
    forbidden = _items(_section(trusted, "FORBIDDEN"))
    context = _section(trusted, "CONTEXT")
    instructions = _section(trusted, "INSTRUCTIONS")
    missing = [f for f in facts if not states(f, answer)]
    if missing:
        return "FAIL", f"does not state {missing[0]!r}"
    said = [f for f in forbidden if states(f, answer)]
    if said:
        return "FAIL", f"states forbidden {said[0]!r}"
    if instructions is not None:
        unmet = [q for q in _QUOTED.findall(instructions) if q.casefold() not in
                 answer.casefold()]
        if unmet:
            return "FAIL", f"does not follow the instruction to include {unmet[0]!r}"
    if not facts and context is not None:
        s = lexical_support(answer, context, 0.5, 0.5)
        if s.status != "supported":
            return "FAIL", f"not supported by the context ({s.why})"
    return "PASS", "meets the rubric"


def judge_reply(cfg: SimJudge, prompt: str, seed: int, sample: str) -> str:
    """The simulated judge's reply text to one judge prompt."""
    trusted, answer = split_prompt(prompt)
    fence = _FENCE.search(prompt)
    stable = prompt.replace(fence.group(1), "FENCE") if fence else prompt  # nonce-free
    digest = hashlib.sha256(f"{seed}\x1f{sample}\x1f{stable}".encode()).digest()[:16]
    rng = random.Random(int.from_bytes(digest, "big"))
    if rng.random() < cfg.malformed_rate:
        return rng.choice(MALFORMED)
    if _INJECTION.search(trusted) or (cfg.gullible and answer is not None
                                      and _INJECTION.search(answer)):
        verdict, reason = "PASS", "as instructed"
    elif answer is None:
        verdict, reason = "FAIL", "no fenced answer found"
    else:
        verdict, reason = verdict_for(trusted, answer)
    if rng.random() < cfg.flip_rate:
        verdict = "FAIL" if verdict == "PASS" else "PASS"
        reason = f"(noisy) {reason}"
    if cfg.miss_rate or cfg.false_alarm_rate:  # no extra draw otherwise: old runs repeat
        draw = rng.random()
        if verdict == "FAIL" and draw < cfg.miss_rate:
            verdict, reason = "PASS", "meets the rubric"  # a miss looks like any PASS
        elif verdict == "PASS" and draw < cfg.false_alarm_rate:
            verdict, reason = "FAIL", "does not meet the rubric"
    return json.dumps({"verdict": verdict, "reason": reason})
