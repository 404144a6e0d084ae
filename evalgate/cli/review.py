"""`evalgate review`: the shell around evalgate.curation.review (a local review page)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any


def _review(args: argparse.Namespace) -> int:
    from evalgate.cli.result_files import BadInput, load_result
    from evalgate.curation.review import (
        ReviewError,
        ReviewServer,
        ReviewSession,
        build_items,
        reviewer_name,
    )
    from evalgate.errors import ConfigError
    from evalgate.pipeline.project import load_project
    from evalgate.results import RESULT_FILE

    try:
        project = load_project(Path.cwd(), args.config)
        path = Path(args.result) if args.result else project.report_dir() / RESULT_FILE
        if not path.exists():
            raise ReviewError(f"no result at {path}: run the gate first (pytest --evalgate) "
                              "or pass --result")
        result = load_result(str(path))
        items = build_items(project.canary_sets, result, args.sample, args.seed)
        session = ReviewSession(items, project.gate.resolve(project.gate.config.labels),
                                reviewer_name(args.reviewer, project.gate.root))
        server = ReviewServer(session, args.port)
    except (ConfigError, ReviewError, BadInput, OSError, ValueError) as exc:
        print(f"evalgate review: {exc}", file=sys.stderr)
        return 4
    answers = sum(len(i.answers) for i in items)
    print(f"evalgate review: {len(items)} canaries, {answers} answers, reviewer "
          f"{session.reviewer}; labels go to {session.labels_path}")
    print(f"open {server.url}  (Ctrl-C to stop)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def add_parser(sub: Any) -> None:
    review = sub.add_parser("review", help="a local page (127.0.0.1, per-session token) to "
                            "label answers, fix references and mark canaries verified")
    review.add_argument("--result", help="a saved result (default: the report dir's "
                        "evalgate.json)")
    review.add_argument("--config", help="the gate config (default: found from here)")
    review.add_argument("--sample", type=int, metavar="N", help="a stratified audit sample "
                        "(by outcome and tag) of N candidate answers")
    review.add_argument("--seed", type=int, default=0)
    review.add_argument("--reviewer", help="default: git config user.name")
    review.add_argument("--port", type=int, default=0, help="default: an ephemeral port")
    review.set_defaults(func=_review)
