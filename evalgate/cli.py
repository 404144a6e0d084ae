"""The `evalgate` command: the simulator now; report, compare and merge come later."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from evalgate import __version__


def _sim(args: argparse.Namespace) -> int:
    from evalgate.canaries import discover_canary_files, load_canary_file, set_name_for
    from evalgate.config import load_model_config
    from evalgate.errors import ConfigError
    from evalgate.sim import SimCase, SimProfile, SimServer
    from evalgate.yamlio import load_yaml

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
