"""Graded records -> verdicts: metrics, guardrails (each a test from `evalgate.stats`), the
overall verdict and whether it blocks, sequential looks, baseline sources (a live config, a
saved run, a git revision, the runs store), comparing two saved runs, and the production
guardrails (routes, load, determinism: imported only when configured)."""

from __future__ import annotations

from evalgate.gate.baseline import Baseline
from evalgate.gate.compare import compare_results
from evalgate.gate.guardrails import Guardrail, decide_gate, plan_guardrails
from evalgate.gate.metrics import compute_metrics
from evalgate.gate.sequential import SequentialGate
from evalgate.gate.verdicts import blocks, overall_verdict

__all__ = ["Baseline", "Guardrail", "SequentialGate", "blocks", "compare_results",
           "compute_metrics", "decide_gate", "overall_verdict", "plan_guardrails"]
