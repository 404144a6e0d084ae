"""Per-route metrics, guardrails and blended cost for a router candidate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalgate.errors import Problem
from evalgate.gate.guardrails import evaluate as evaluate_guardrails
from evalgate.gate.guardrails import plan_guardrails
from evalgate.gate.metrics import compute_metrics
from evalgate.results import BlendedCost, RouteStats
from evalgate.spec.yamlio import load_yaml


def check_route_guardrails(gate: Any, candidate: Any) -> list[Problem]:
    """`gate.routes` must name routes of the candidate's router."""
    wanted = gate.config.gate.routes
    if not wanted:
        return []
    router = getattr(candidate, "router", None) if candidate is not None else None
    known = router.route_names() if router is not None else []
    line = None
    if gate.path.suffix in (".yaml", ".yml"):
        _, lines = load_yaml(gate.path, gate.path.name)
        line = lines.line_of(("gate", "routes"))
    if router is None:
        return [Problem(gate.path.name, "per-route guardrails need a router candidate (a model "
                        "config with 'router:')", line, "gate.routes")]
    return [Problem(gate.path.name, f"route {name!r} is not a route of the candidate's router "
                    f"(known: {', '.join(known)})", line, f"gate.routes.{name}")
            for name in wanted if name not in known]


ROUTE_METRICS = ("latency_p50_ms", "latency_p95_ms", "cost_per_request_usd", "cost_per_1k_usd",
                 "hallucination_rate", "pass_rate", "error_rate")


def route_breakdown(records: Sequence[Any]) -> list[Any]:
    """Share of traffic and the main metrics per route (records without a route: none)."""
    groups: dict[str, list[Any]] = {}
    for r in records:
        if r.route is not None:
            groups.setdefault(r.route, []).append(r)
    if not groups:
        return []
    total = len(records)
    out = []
    for name, group in groups.items():
        metrics, counts = compute_metrics(group)
        models: dict[str, int] = {}
        for r in group:
            models[r.model or "?"] = models.get(r.model or "?", 0) + 1
        out.append(RouteStats(route=name, calls=len(group), share=len(group) / total,
                              canaries=counts["canaries"], models=models,
                              metrics={m: metrics[m] for m in ROUTE_METRICS}))
    return out


def route_guardrail_names(settings: Any) -> list[str]:
    return [f"route[{route}].{metric}" for route, thresholds in settings.routes.items()
            for metric in thresholds]


def route_verdicts(settings: Any, records: Sequence[Any], samples: int) -> list[Any]:
    """Per-route guardrails: the usual guardrail evaluation on each route's records alone."""
    out = []
    for route, thresholds in settings.routes.items():
        sub = settings.model_copy(update={"metrics": thresholds, "routes": {}})
        group = [r for r in records if r.route == route]
        plan = plan_guardrails(sub, False)
        verdicts = evaluate_guardrails(sub, plan, group, None, compute_metrics(group)[0],
                                       samples)
        for v in verdicts:
            name = f"route[{route}].{v.guardrail}"
            reason = v.reason if group else f"no call took route {route!r}: {v.reason}"
            out.append(v.model_copy(update={"guardrail": name,
                                            "reason": f"route {route}: {reason}"}))
    return out


def blended_cost(records: Sequence[Any], traffic: Any) -> Any:
    """Projected cost per request, per 1k and per month under the traffic mix: a weighted mean
    of the mean cost of each tag's answered calls (no weights: the canaries as they are)."""
    answered = [r for r in records if r.ok and r.cost_usd is not None]
    weights = dict(traffic.weights) if traffic is not None else {}
    monthly = traffic.monthly_requests if traffic is not None else 1_000_000
    missing: list[str] = []
    if not answered:
        return BlendedCost(monthly_requests=monthly, weights=weights)
    if not weights:
        per_request = sum(r.cost_usd for r in answered) / len(answered)
    else:
        total_w = 0.0
        acc = 0.0
        for tag, w in weights.items():
            costs = [r.cost_usd for r in answered if tag in r.tags]
            if not costs:
                missing.append(tag)
                continue
            acc += w * sum(costs) / len(costs)
            total_w += w
        per_request = acc / total_w if total_w > 0 else None
    if per_request is None:
        return BlendedCost(monthly_requests=monthly, weights=weights, missing_tags=missing)
    return BlendedCost(monthly_requests=monthly, weights=weights, missing_tags=missing,
                       per_request_usd=per_request, per_1k_usd=per_request * 1000,
                       per_month_usd=per_request * monthly)
