"""Routed model configs: ordered routes (a condition and a target model config), a default and
an optional fallback, evaluated per canary; per-route metrics, guardrails and blended cost.

A router file is a model config whose only content is `router:` (and optionally `name:`):

    router:
      routes:
        - {name: fast, when: "prompt_tokens < 120", model: fast.yaml}
        - {name: strong, when: "'reasoning' in tags", model: strong.yaml}
      default: strong.yaml
      fallback: backup.yaml      # answers when the routed model's call fails

Conditions are compiled by evalgate/spec/expr.py at load time (never Python eval). Target paths are
relative to the router file. The LoadedModel of a router carries its default target's config,
so everything that only needs "a model" keeps working; the executor asks the router per call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from evalgate.errors import ConfigError, Problem
from evalgate.spec.canaries import Case, case_key
from evalgate.spec.expr import ExprError, Lit, Node, compile_condition, evaluate
from evalgate.spec.yamlio import LineMap, digest, parse_yaml, validate
from evalgate.text.tokens import estimate_tokens

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
        return digest({
            "routes": [[r.name, r.when, r.model.fingerprint()] for r in self.routes],
            "default": self.default.fingerprint(),
            "fallback": self.fallback.fingerprint() if self.fallback is not None else None})


LONG_ROUTE = "long_context"


@dataclass(frozen=True)
class OverflowRouter(Router):
    """A model config with `long_context:` as a router: the canaries too long for its window
    (their keys, decided before the run) go to the long-context model, the rest to the model
    itself; per-route metrics then show both."""

    overflow: frozenset[str] = frozenset()

    def select(self, set_name: str, case: Case) -> tuple[str, Any]:
        if case_key(set_name, case.id) in self.overflow:
            return LONG_ROUTE, self.routes[0].model
        return DEFAULT_ROUTE, self.default


def overflow_router(model: Any, long_model: Any, overflow: frozenset[str], why: str) -> Router:
    """The router for `model`'s overflowing canaries; `why` (the window and a digest of the
    keys) is the route's condition text, so the fingerprint changes with the canaries."""
    keys = digest(sorted(overflow))
    return OverflowRouter((Route(LONG_ROUTE, f"{why} [{keys}]", Lit(True, 0),
                                 long_model),), model, None, overflow)


def case_fields(set_name: str, case: Case) -> dict[str, Any]:
    """The names a condition can use, for one canary (prompt = the last user turn)."""
    text = case.user_text
    return {"prompt_chars": len(text), "prompt_words": len(text.split()),
            "prompt_tokens": estimate_tokens(text), "tags": list(case.tags), "set": set_name,
            "id": case.id, "metadata": case.metadata}


def load_router(data: dict[str, Any], lines: LineMap, path: Path, root: Path,
                reader: Callable[[Path, str], str], shown: str,
                load_model: Callable[[Path, Path, Callable[[Path, str], str]], Any]
                ) -> tuple[str | None, Router]:
    """A router file -> (its name, the Router). `load_model` loads a target model config:
    the model-config loader passes itself, so this module does not import it back."""
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
            model = load_model(target_path, root, reader)
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
    return spec.name, Router(tuple(routes), default, fallback)


# -- executing routed calls --------------------------------------------------------------------


# -- per-route metrics, guardrails, blended cost -----------------------------------------------


