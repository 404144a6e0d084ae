"""Routed model configs: ordered routes (a condition and a target model config), a default and
an optional fallback, evaluated per canary; per-route metrics, guardrails and blended cost.

A router file is a model config whose only content is `router:` (and optionally `name:`):

    router:
      routes:
        - {name: fast, when: "prompt_tokens < 120", model: fast.yaml}
        - {name: strong, when: "'reasoning' in tags", model: strong.yaml}
      default: strong.yaml
      fallback: backup.yaml      # answers when the routed model's call fails

Conditions are compiled by evalgate/expr.py at load time (never Python eval). Target paths are
relative to the router file. The LoadedModel of a router carries its default target's config,
so everything that only needs "a model" keeps working; the executor asks the router per call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from evalgate.errors import ConfigError, Problem
from evalgate.spec.canaries import Case
from evalgate.spec.expr import ExprError, Node, compile_condition, evaluate
from evalgate.spec.yamlio import LineMap, parse_yaml

ROUTE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
DEFAULT_ROUTE = "default"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RouteSpec(_Strict):
    name: str | None = None
    when: str
    model: str


class RouterSpec(_Strict):
    routes: list[RouteSpec] = Field(default_factory=list, max_length=64)
    default: str
    fallback: str | None = None


class RouterFile(_Strict):
    name: str | None = None
    router: RouterSpec


@dataclass(frozen=True)
class Route:
    name: str
    when: str
    condition: Node
    model: Any  # LoadedModel


@dataclass(frozen=True)
class Router:
    routes: tuple[Route, ...]
    default: Any  # LoadedModel
    fallback: Any | None

    def select(self, set_name: str, case: Case) -> tuple[str, Any]:
        """The first route whose condition holds for the case, else the default."""
        env = case_fields(set_name, case)
        for route in self.routes:
            if evaluate(route.condition, env):
                return route.name, route.model
        return DEFAULT_ROUTE, self.default

    def targets(self) -> list[Any]:
        """Every distinct target model (routes, default, fallback), in config order."""
        seen: dict[Path, Any] = {}
        for model in [*(r.model for r in self.routes), self.default, self.fallback]:
            if model is not None:
                seen.setdefault(model.path.resolve(), model)
        return list(seen.values())

    def route_names(self) -> list[str]:
        return [r.name for r in self.routes] + [DEFAULT_ROUTE]

    def describe(self, name: str) -> dict[str, Any]:
        return {
            "name": name, "provider": "router",
            "routes": [{"name": r.name, "when": r.when, "model": r.model.describe()}
                       for r in self.routes],
            "default": self.default.describe(),
            **({"fallback": self.fallback.describe()} if self.fallback is not None else {}),
        }

    def fingerprint(self) -> str:
        from evalgate.spec.config import _digest

        return _digest({
            "routes": [[r.name, r.when, r.model.fingerprint()] for r in self.routes],
            "default": self.default.fingerprint(),
            "fallback": self.fallback.fingerprint() if self.fallback is not None else None})


def estimate_tokens(text: str) -> int:
    """Same rough estimate as the executor's (4 characters a token)."""
    return max(1, -(-len(text) // 4))


def case_fields(set_name: str, case: Case) -> dict[str, Any]:
    """The names a condition can use, for one canary (prompt = the last user turn)."""
    text = case.user_text
    return {"prompt_chars": len(text), "prompt_words": len(text.split()),
            "prompt_tokens": estimate_tokens(text), "tags": list(case.tags), "set": set_name,
            "id": case.id, "metadata": case.metadata}


def load_router(data: dict[str, Any], lines: LineMap, path: Path, root: Path,
                reader: Callable[[Path, str], str], shown: str) -> Any:
    """A router file -> a LoadedModel (its default's config) carrying the Router."""
    from evalgate.spec.config import LoadedModel, load_model_config, validate

    spec: RouterFile = validate(RouterFile, data, shown, lines)
    problems: list[Problem] = []
    loaded: dict[str, Any] = {}

    def target(relative: str, loc: tuple[Any, ...], label: str) -> Any:
        if relative in loaded:
            return loaded[relative]
        where = lines.line_of(loc)
        target_path = path.parent / relative
        try:
            # Routers do not nest: look before loading, so a router naming itself (or a
            # router that names it back) is an error, not an endless recursion.
            raw, _ = parse_yaml(reader(target_path, relative), relative)
            if isinstance(raw, dict) and "router" in raw:
                problems.append(Problem(shown, f"{label}: {relative!r} is itself a router; "
                                        "routers do not nest", where, ".".join(map(str, loc))))
                return None
            model = load_model_config(target_path, root, reader)
        except ConfigError as exc:
            problems.extend(exc.problems)
            problems.append(Problem(shown, f"{label}: model {relative!r} could not be loaded "
                                    "(see above)", where, ".".join(map(str, loc))))
            return None
        loaded[relative] = model
        return model

    routes: list[Route] = []
    names: set[str] = {DEFAULT_ROUTE}
    for i, r in enumerate(spec.router.routes):
        name = r.name or f"route{i + 1}"
        label = f"route {name!r}"
        field = f"router.routes[{i}]"
        if not ROUTE_NAME.match(name):
            problems.append(Problem(shown, f"{label}: a route name uses letters, digits, _ . - "
                                    "(at most 64)", lines.line_of(("router", "routes", i, "name")),
                                    f"{field}.name"))
        elif name in names:
            problems.append(Problem(shown, f"{label}: the name is already used"
                                    + (" (reserved for the default route)"
                                       if name == DEFAULT_ROUTE else ""),
                                    lines.line_of(("router", "routes", i, "name")),
                                    f"{field}.name"))
        names.add(name)
        try:
            condition = compile_condition(r.when)
        except ExprError as exc:
            problems.append(Problem(shown, f"{label}: bad condition {r.when!r}: {exc}",
                                    lines.line_of(("router", "routes", i, "when")),
                                    f"{field}.when"))
            condition = None
        model = target(r.model, ("router", "routes", i, "model"), label)
        if condition is not None and model is not None:
            routes.append(Route(name, r.when, condition, model))
    default = target(spec.router.default, ("router", "default"), "default route")
    fallback = (target(spec.router.fallback, ("router", "fallback"), "fallback")
                if spec.router.fallback else None)
    if problems:
        raise ConfigError(problems)
    router = Router(tuple(routes), default, fallback)
    return LoadedModel(default.config, path, spec.name or path.stem, default.system_prompt,
                       default.prompt_template, router=router)


def check_route_guardrails(gate: Any, candidate: Any) -> list[Problem]:
    """`gate.routes` must name routes of the candidate's router."""
    wanted = gate.config.gate.routes
    if not wanted:
        return []
    router = getattr(candidate, "router", None) if candidate is not None else None
    known = router.route_names() if router is not None else []
    line = None
    if gate.path.suffix in (".yaml", ".yml"):
        from evalgate.spec.yamlio import load_yaml

        _, lines = load_yaml(gate.path, gate.path.name)
        line = lines.line_of(("gate", "routes"))
    if router is None:
        return [Problem(gate.path.name, "per-route guardrails need a router candidate (a model "
                        "config with 'router:')", line, "gate.routes")]
    return [Problem(gate.path.name, f"route {name!r} is not a route of the candidate's router "
                    f"(known: {', '.join(known)})", line, f"gate.routes.{name}")
            for name in wanted if name not in known]


# -- executing routed calls --------------------------------------------------------------------

class RoutedExecutor:
    """Quacks like an Executor (`call`): picks the route per call, builds that target's
    messages, runs its Executor, and retries once on the fallback when the call failed."""

    def __init__(self, model: Any, make: Callable[[Any], Any]) -> None:
        from evalgate.pipeline.project import build_messages

        self.model = model
        self.router: Router = model.router
        self.executors = {t.path.resolve(): make(t) for t in self.router.targets()}
        self._build = build_messages
        self._messages: dict[tuple[Path, str], list[dict[str, str]]] = {}

    def _planned(self, target: Any, call: Any) -> Any:
        from evalgate.pipeline.project import PlannedCall

        key = (target.path.resolve(), call.entry.key)
        if key not in self._messages:
            self._messages[key] = self._build(target, call.entry.case)
        return PlannedCall(call.entry, call.sample, self._messages[key])

    async def call(self, client: Any, call: Any, label: str, t0: float) -> Any:
        route, target = self.router.select(call.entry.set_name, call.entry.case)
        record = await self.executors[target.path.resolve()].call(
            client, self._planned(target, call), label, t0)
        record.route, record.model = route, target.name
        fallback = self.router.fallback
        if record.ok or fallback is None or fallback.path.resolve() == target.path.resolve() \
                or (not record.retryable and record.error_class != "deadline_exceeded"):
            return record  # as falls_back(): a config's own error (auth, bad request) stays
        second = await self.executors[fallback.path.resolve()].call(
            client, self._planned(fallback, call), label, t0)
        offset = len(record.attempts)
        for a in second.attempts:
            a.n += offset
            a.fallback = True
        second.attempts = record.attempts + second.attempts
        second.started_s = record.started_s
        # As for a model's own `fallback:`: latency is the answering attempt's own time, the
        # time lost on the routed model is throttled/failed time, and the answer is marked so
        # the fallback warning, the fallback_rate guardrail and the cache (never stored) see it.
        second.throttled_ms += record.throttled_ms
        second.route, second.model = route, f"{fallback.name} (fallback)"
        second.answered_by = second.answered_by or fallback.name
        return second


def executor_for(model: Any, make: Callable[[Any], Any]) -> Any:
    """The model's Executor, or a RoutedExecutor for a router config."""
    return RoutedExecutor(model, make) if model.router is not None else make(model)


def with_targets(models: Sequence[Any]) -> list[Any]:
    """The models plus every router's targets (what the simulator must serve)."""
    out = []
    for m in models:
        out += m.router.targets() if m.router is not None else [m]
    return out


# -- per-route metrics, guardrails, blended cost -----------------------------------------------

ROUTE_METRICS = ("latency_p50_ms", "latency_p95_ms", "cost_per_request_usd", "cost_per_1k_usd",
                 "hallucination_rate", "pass_rate", "error_rate")


def route_breakdown(records: Sequence[Any]) -> list[Any]:
    """Share of traffic and the main metrics per route (records without a route: none)."""
    from evalgate.gate.metrics import compute_metrics
    from evalgate.results import RouteStats

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
    from evalgate.gate.guardrails import evaluate as evaluate_guardrails
    from evalgate.gate.guardrails import plan_guardrails
    from evalgate.gate.metrics import compute_metrics

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
    from evalgate.results import BlendedCost

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
