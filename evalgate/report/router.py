"""`evalgate choose`: an N-candidate run's per-tag recommendations written as a router config
(the `router:` format evalgate/spec/routing.py reads), with the decision in YAML comments.

Why a file and not just a report: the choice should be reviewable and runnable. The router is a
model config like any other, so the next run can gate it as the candidate."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml

from evalgate.report.choice import figure_text
from evalgate.results import Choice, Leaderboard, RunResult


class NoChoice(ValueError):
    """The result has no leaderboard, or no config could be recommended."""


def _cost(choice: Choice, name: str | None) -> float | None:
    s = next((s for s in choice.standings if s.name == name), None)
    fig = s.figures.get("cost_per_1k_usd") if s is not None else None
    return fig.value if fig is not None else None


def routed(board: Leaderboard) -> tuple[str, list[Choice]]:
    """The default config and the tags whose own recommendation differs from it."""
    default = board.overall.recommended or board.overall.best
    if default is None:
        raise NoChoice(f"no config can be recommended: {board.overall.reason}")
    tags = [c for c in board.by_tag if c.verdict != "INCONCLUSIVE" and c.recommended
            and c.recommended != default and c.recommended in board.paths]
    return default, tags


def blended(board: Leaderboard, default: str, tags: list[Choice]
            ) -> tuple[dict[str, float], float | None, dict[str, float | None]]:
    """Cost per 1k requests under the traffic weights (else the canaries' tag counts): the
    router's, and each single config's for comparison. A tag without a cost counts as 0 weight."""
    weights = board.traffic_weights or {c.tag: float(c.n_canaries) for c in board.by_tag
                                        if c.tag}
    by_tag = {c.tag: c for c in board.by_tag}
    routes = {c.tag: c.recommended or default for c in tags}

    def mix(pick: Callable[[str], str]) -> float | None:
        total = used = 0.0
        for tag, w in weights.items():
            choice = by_tag.get(tag)
            cost = _cost(choice, pick(tag)) if choice is not None else None
            if cost is not None and w > 0:
                total, used = total + w * cost, used + w
        return total / used if used else None

    router = mix(lambda tag: routes.get(tag, default))
    singles = {s.name: mix(lambda _tag, n=s.name: n) for s in board.overall.standings
               if s.status == "ok"}
    return weights, router, singles


def router_yaml(result: RunResult, out: Path, root: Path) -> str:
    """The router file's text: comments with the decision record, then the `router:` block.
    Target paths are written relative to `out`'s folder (`root`: the project root the
    leaderboard's model config paths are relative to)."""
    board = result.leaderboard
    if board is None:
        raise NoChoice("the result has no leaderboard: run with several candidates "
                       "(candidates: [...] or --evalgate-candidates)")
    default, tags = routed(board)

    def target(name: str) -> str:
        path = board.paths.get(name)
        if not path:
            raise NoChoice(f"no model config file is recorded for {name!r}")
        return Path(os.path.relpath((root / path).resolve(), out.parent.resolve())).as_posix()

    spec = {"name": "chosen", "router": {
        "routes": [{"name": f"tag-{c.tag}", "when": f"{c.tag!r} in tags",
                    "model": target(c.recommended or default)} for c in tags],
        "default": target(default)}}
    weights, router_cost, singles = blended(board, default, tags)
    best = board.overall.best
    when = datetime.now(UTC).isoformat(timespec="seconds")
    commit = result.environment.git_commit or "unknown"
    notes = [
        f"Written by `evalgate choose` on {when} from run {result.run_id} "
        f"(started {result.started_at}, commit {commit}).",
        f"Overall: {board.overall.verdict}; {board.overall.reason}",
        f"alpha {board.alpha:g}; margins: " + ", ".join(
            f"{m} {v:.1%}" for m, v in board.margins.items() if v is not None),
        board.correction,
        "Figures (n canaries; estimate [interval]):",
    ]
    for s in board.overall.standings:
        notes.append(f"  {s.name}: n={s.n_canaries}, " + ", ".join(
            f"{m} {figure_text(m, f)}" for m, f in s.figures.items()) if s.status == "ok"
            else f"  {s.name}: no data")
    for c in board.by_tag:
        notes.append(f"Tag {c.tag} (n={c.n_canaries}): {c.verdict}"
                     + (f", {c.recommended}" if c.recommended else "")
                     + ("" if c in tags else f" (routed to the default, {default})"))
    mix = ", ".join(f"{t} {w:g}" for t, w in weights.items())
    source = "traffic.weights" if board.traffic_weights else "the canaries' tag counts"
    single = board.overall.recommended or best
    alone = singles.get(single) if single else None
    if router_cost is not None:
        versus = "" if alone is None else (
            f" against ${alone:.4g} for the best single model, {single}"
            + (f" ({1 - router_cost / alone:.0%} less)" if alone > 0 else ""))
        notes.append(f"Blended cost per 1k requests under {source} ({mix}): router "
                     f"${router_cost:.4g}{versus}")
    comment = "".join(f"# {line}\n" for note in notes for line in note.splitlines())
    return comment + yaml.safe_dump(spec, sort_keys=False)
