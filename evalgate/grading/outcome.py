"""A check's outcome (its own module so the check families can share it without a cycle)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    detail: str
