"""PII scrubbing for imported traffic: emails, phone numbers, card numbers (Luhn-checked),
IBANs (mod-97 checked), IP addresses, plus configurable patterns.

The checksums keep order numbers and other long digit runs that are not cards or IBANs intact,
so a canary keeps the numbers its answer depends on."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ \t-]{0,3}){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ \t]{0,3}[A-Z0-9]{4}){2,7}(?:[ \t]{0,3}[A-Z0-9]{1,4})?\b")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?:::?[0-9A-Fa-f]{1,4})*"
                   r"(?![\w:])")
_PHONE = re.compile(r"(?<![\w+.,/-])\+?\(?\d[\d ().-]{5,18}\d(?![\w.,/-]*\d)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[./-]\d{2}[./-]\d{4}")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    s = re.sub(r"\s", "", text)
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _card(m: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", m.group())
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _ip(m: re.Match[str]) -> bool:
    try:
        ipaddress.ip_address(m.group())
    except ValueError:
        return False
    return True


def _phone(m: re.Match[str]) -> bool:
    """7 to 15 digits in groups (or after a + or an area code in brackets); not a date, not
    a plain number like 1234567 or 1,299.00."""
    text = m.group()
    digits = re.sub(r"\D", "", text)
    if not 7 <= len(digits) <= 15 or _DATE.fullmatch(text.strip()):
        return False
    grouped = len(re.findall(r"\d+", text)) >= 2
    return text.startswith(("+", "(")) or (grouped and not re.fullmatch(r"[\d.,]+", text))


Rule = tuple[str, re.Pattern[str], Callable[[re.Match[str]], bool] | None]

# Order matters: a card or IBAN is not also a phone number.
RULES: tuple[Rule, ...] = (
    ("EMAIL", _EMAIL, None),
    ("IBAN", _IBAN, lambda m: iban_ok(m.group())),
    ("CARD", _CARD, _card),
    ("IP", _IPV4, _ip),
    ("IP", _IPV6, _ip),
    ("PHONE", _PHONE, _phone),
)


@dataclass
class Scrubber:
    """Replaces each PII match by `[KIND]` and counts what it replaced."""

    extra: Sequence[tuple[str, re.Pattern[str]]] = ()
    counts: Counter[str] = field(default_factory=Counter)

    def __call__(self, text: str) -> str:
        rules = [*RULES, *((name, rx, None) for name, rx in self.extra)]
        for name, rx, check in rules:
            def replace(m: re.Match[str], name: str = name, check: Callable[..., bool] | None
                        = check) -> str:
                if check is not None and not check(m):
                    return m.group()
                self.counts[name] += 1
                return f"[{name}]"

            text = rx.sub(replace, text)
        return text


def parse_pattern(spec: str) -> tuple[str, re.Pattern[str]]:
    """`NAME=REGEX` from the command line."""
    name, sep, pattern = spec.partition("=")
    if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
        raise ValueError(f"--pii-pattern {spec!r}: give NAME=REGEX with NAME in capitals")
    try:
        return name, re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"--pii-pattern {spec!r}: {exc}") from None
