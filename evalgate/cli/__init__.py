"""The `evalgate` command: the simulator, reports from a saved result, and the gate decided
from two saved runs (`compare`); only `sim` talks HTTP, and none calls a real model."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evalgate import __version__
from evalgate.cli.result_files import BadInput, load_result

if TYPE_CHECKING:
    from evalgate.results import RunResult


def _sim(args: argparse.Namespace) -> int:
    from evalgate.errors import ConfigError
    from evalgate.sim.answers import SimCase
    from evalgate.sim.server import SimServer
    from evalgate.spec.canaries import discover_canary_files, load_canary_file, set_name_for
    from evalgate.spec.config import load_model_config
    from evalgate.spec.sim_profile import SimProfile
    from evalgate.spec.yamlio import load_yaml

    try:
        profiles: dict[str, SimProfile] = {}
        for path in args.model_config:
            model = load_model_config(Path(path), Path.cwd())
            profiles[model.config.model or model.name] = model.config.sim or SimProfile()
        default = None
        if args.profile:
            data, _ = load_yaml(Path(args.profile))
            default = SimProfile.model_validate(data or {})
        elif not profiles:
            default = SimProfile()
        cases = []
        roots = [Path(p) for p in args.canaries]
        for file, root in discover_canary_files([r for r in roots if r.exists()]):
            cset = load_canary_file(file, set_name_for(file, root), str(file))
            cases += [SimCase(key=f"{cset.name}/{c.id}", prompt=c.user_text,
                              facts=tuple(c.expected.facts),
                              forbidden=tuple(c.expected.forbidden),
                              reference=c.expected.reference) for c in cset.cases]
    except (ConfigError, ValueError) as exc:
        print(f"evalgate sim: {exc}", file=sys.stderr)
        return 4
    server = SimServer(profiles=profiles, cases=cases, default_profile=default,
                       host=args.host, port=args.port)

    def announce(running: SimServer) -> None:
        models = ", ".join(profiles) or "any model (default profile)"
        print(f"evalgate sim listening on {running.base_url} ({len(cases)} canaries; "
              f"models: {models})", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve_forever(on_ready=announce))
    return 0


def _report(args: argparse.Namespace) -> int:
    """Re-render reports from a saved result (no model is called)."""
    from evalgate.report import DEFAULT_NAMES, write_reports

    try:
        result = load_result(args.result)
        chosen = {k: getattr(args, k) for k in DEFAULT_NAMES if getattr(args, k)}
        folder = Path(args.out) if args.out else Path(args.result).parent
        paths = ({k: Path(v) for k, v in chosen.items()} if chosen
                 else {k: folder / name for k, name in DEFAULT_NAMES.items()})
        written = write_reports(result, html=paths.get("html"), junit=paths.get("junit"),
                                markdown=paths.get("markdown"), step_summary=args.step_summary)
    except BadInput as exc:
        print(f"evalgate report: {exc}", file=sys.stderr)
        return 4
    print_verdict(result)
    for path in written:
        print(f"wrote {path}")
    return 0


def print_verdict(result: RunResult) -> None:
    """The gate's verdict and its summary, as the terminal shows them after a run."""
    from evalgate.report.summary import summary_lines

    print(f"evalgate gate: {result.verdict}")
    for line in summary_lines(result):
        print(line)


def _choose(args: argparse.Namespace) -> int:
    """Write the router; exit 4 for a result with no leaderboard or no possible choice."""
    from evalgate.report.router import NoChoice, router_yaml
    from evalgate.results import atomic_write

    try:
        result = load_result(args.result)
        out = Path(args.out)
        text = router_yaml(result, out, Path(args.root))
    except (BadInput, NoChoice) as exc:
        print(f"evalgate choose: {exc}", file=sys.stderr)
        return 4
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, text.encode())
    board = result.leaderboard
    assert board is not None
    print(f"evalgate choose: wrote {out} (default {board.overall.recommended or board.overall.best}"
          f"; {board.overall.verdict})")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Decide the gate from two saved runs; exit 1 when the verdict blocks."""
    from pydantic import ValidationError

    from evalgate.gate.compare import compare_results
    from evalgate.gate.verdicts import blocks
    from evalgate.report import write_all, write_reports
    from evalgate.results import RESULT_FILE

    try:
        baseline = load_result(args.baseline)
        candidate = load_result(args.candidate)
        try:
            result = compare_results(baseline, candidate, alpha=args.alpha,
                                     source=args.baseline)
            if args.more:
                from evalgate.gate.choice import compare_many
                from evalgate.gate.compare import gate_settings

                others = [load_result(p) for p in args.more]
                result = compare_many(result, baseline, others,
                                      gate_settings(candidate, args.alpha))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            what = "--alpha" if where == "alpha" and args.alpha is not None else \
                f"{args.candidate}: gate.{where}"
            raise BadInput(f"{what}: {error['msg']}") from None
        written: list[Path] = []
        if args.out:
            out = Path(args.out)
            written = [out / RESULT_FILE, *write_all(result, out, with_result=True,
                                                     step_summary=args.step_summary)]
        elif args.step_summary:
            write_reports(result, step_summary=True)
    except BadInput as exc:
        print(f"evalgate compare: {exc}", file=sys.stderr)
        return 4
    print_verdict(result)
    for path in written:
        print(f"wrote {path}")
    return 1 if blocks(result.verdict, result.on_inconclusive) else 0


def _merge(args: argparse.Namespace) -> int:
    """Join shard results and decide the gate once on the whole set."""
    from evalgate.pipeline.merge import merge_main

    return merge_main(args.paths, args.out)


def _init(args: argparse.Namespace) -> int:
    """Scaffold a gate into an existing repository, never overwriting without --force."""
    from evalgate.cli.scaffold import init_main

    return init_main(args.target, args.force)


def _paths(args: argparse.Namespace) -> int:
    """Print the files the gate reads; with --changed, only those among the paths on stdin."""
    from evalgate.cli.watch import changed_watched, watched_paths
    from evalgate.errors import ConfigError

    try:
        watched = watched_paths(Path(args.root), args.config)
    except ConfigError as exc:
        print(f"evalgate paths: {exc}", file=sys.stderr)
        return 4
    for path in changed_watched(sys.stdin, watched) if args.changed else watched:
        print(path)
    return 0


def _cache(args: argparse.Namespace) -> int:
    """Say what the response cache holds; with --prune-older-than or --clear, shrink it."""
    import sqlite3
    from datetime import timedelta

    from evalgate.engine.persist import cache_info, cache_path, prune_cache

    root = Path(args.root)
    if args.prune_older_than is not None and args.prune_older_than < 0:
        print("evalgate cache: --prune-older-than needs days >= 0", file=sys.stderr)
        return 4
    try:
        if args.clear or args.prune_older_than is not None:
            older = None if args.clear else timedelta(days=args.prune_older_than)
            removed = prune_cache(root, older)
            print(f"removed {removed} cached answer(s)"
                  + ("" if older is None else f" measured more than "
                     f"{args.prune_older_than:g} day(s) ago"))
        info = cache_info(root)
    except sqlite3.Error as exc:
        print(f"evalgate cache: {cache_path(root)}: not a usable cache ({exc}); delete it to "
              "start afresh", file=sys.stderr)
        return 4
    if info is None:
        print(f"no response cache under {root / '.evalgate'}")
        return 0
    span = f", measured {info.oldest} to {info.newest}" if info.answers else ""
    print(f"{info.path}: {info.answers} answer(s), {info.size_bytes / 1e6:.1f} MB{span}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalgate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"evalgate {__version__}")
    sub = parser.add_subparsers(dest="command")
    sim = sub.add_parser("sim", help="serve the local LLM simulator (OpenAI-compatible, "
                         "Anthropic messages, /generate) over HTTP")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    sim.add_argument("--canaries", action="append", default=None, metavar="PATH",
                     help="canary files or folders whose references answers are built from "
                          "(default: ./canaries)")
    sim.add_argument("--model-config", action="append", default=[], metavar="FILE",
                     help="a `provider: sim` model config: serves its profile under its model "
                          "name (repeatable)")
    sim.add_argument("--profile", metavar="FILE",
                     help="YAML simulator profile for any other model name")
    sim.set_defaults(func=_sim)

    report = sub.add_parser("report", help="re-render the HTML, JUnit XML and Markdown reports "
                            "from a saved result (no model is called)")
    report.add_argument("result", metavar="RESULT.json")
    report.add_argument("--html", metavar="FILE", help="write the HTML report here")
    report.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    report.add_argument("--markdown", metavar="FILE", help="write the Markdown summary here")
    report.add_argument("--out", metavar="DIR",
                        help="with no format option: write evalgate.html, evalgate.xml and "
                             "evalgate.md here (default: next to RESULT.json)")
    report.add_argument("--step-summary", action="store_true",
                        help="also append the Markdown to $GITHUB_STEP_SUMMARY when set")
    report.set_defaults(func=_report)

    compare = sub.add_parser("compare", help="decide the gate from two saved results: exit 0 "
                             "when it holds, 1 when it blocks, 4 for unusable input")
    compare.add_argument("baseline", metavar="BASELINE.json")
    compare.add_argument("candidate", metavar="CANDIDATE.json")
    compare.add_argument("more", nargs="*", metavar="MORE.json",
                         help="further candidates' results: each gated against BASELINE, all "
                              "ranked on one leaderboard (gate.require decides the exit)")
    compare.add_argument("--out", metavar="DIR",
                         help="write the comparison (evalgate.json) and its reports here")
    compare.add_argument("--alpha", type=float, metavar="A",
                         help="one-sided significance level (default: the candidate run's)")
    compare.add_argument("--step-summary", action="store_true",
                         help="also append the Markdown to $GITHUB_STEP_SUMMARY when set")
    compare.set_defaults(func=_compare)

    choose = sub.add_parser("choose", help="write the per-tag recommendations of an "
                            "N-candidate run as a router config (routes by tag; the decision "
                            "in YAML comments)")
    choose.add_argument("result", metavar="RESULT.json")
    choose.add_argument("-o", "--out", required=True, metavar="ROUTER.yaml")
    choose.add_argument("--root", default=".", metavar="DIR",
                        help="the project root the run's model config paths are relative to "
                             "(default: .)")
    choose.set_defaults(func=_choose)

    merge = sub.add_parser("merge", help="join the results of --evalgate-shard=I/N runs and "
                           "decide the gate once on the whole set")
    merge.add_argument("paths", nargs="+", metavar="SHARD.json")
    merge.add_argument("-o", "--out", required=True, metavar="RESULT.json")
    merge.set_defaults(func=_merge)

    cache = sub.add_parser("cache", help="what the response cache (.evalgate/cache) holds; "
                           "prune old answers or clear it")
    cache.add_argument("root", nargs="?", default=".", metavar="DIR",
                       help="the project root holding .evalgate/ (default: .)")
    what = cache.add_mutually_exclusive_group()
    what.add_argument("--prune-older-than", type=float, metavar="DAYS",
                      help="delete the answers measured more than DAYS days ago")
    what.add_argument("--clear", action="store_true", help="delete every cached answer")
    cache.set_defaults(func=_cache)

    paths = sub.add_parser("paths", help="list the files the gate reads (configs, prompts, "
                           "canaries, rubrics, conftest.py and the Python modules it imports, "
                           "`callable:` modules); CI runs the gate only when one changed")
    paths.add_argument("root", nargs="?", default=".", metavar="DIR")
    paths.add_argument("--config", metavar="FILE", help="the gate config (default: found in DIR)")
    paths.add_argument("--changed", action="store_true",
                       help="read changed paths (git diff --name-only) from stdin and print "
                            "those the gate reads")
    paths.set_defaults(func=_paths)

    init = sub.add_parser("init", help="scaffold evalgate.yaml, example (simulator) model "
                          "configs, canaries, a rubric and the CI workflows; never overwrites")
    init.add_argument("target", nargs="?", default=".", metavar="DIR")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.set_defaults(func=_init)

    from evalgate.cli import canaries_import, catalog, review

    canaries_import.add_parser(sub)
    review.add_parser(sub)
    catalog.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "sim" and args.canaries is None:
        args.canaries = ["canaries"]
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
