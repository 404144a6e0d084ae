"""`evalgate canaries import LOGS`: the shell around evalgate.curation.logs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _import(args: argparse.Namespace) -> int:
    from evalgate.curation.logs import Mapping, import_logs, lock_path
    from evalgate.curation.pii import parse_pattern
    from evalgate.errors import ConfigError

    try:
        patterns = [parse_pattern(p) for p in args.pii_pattern]
        mapping = Mapping(prompt=args.prompt_field, answer=args.answer_field, id=args.id_field,
                          context=args.context_field, tag=args.tag_field,
                          route=args.route_field)
        if args.stratify in ("tag", "route") and not getattr(mapping, args.stratify):
            raise ValueError(f"--stratify {args.stratify} needs --{args.stratify}-field")
        out = Path(args.out)
        report = import_logs(Path(args.logs), out, mapping=mapping, fmt=args.format,
                             sample=args.sample, seed=args.seed, stratify=args.stratify,
                             threshold=args.similarity, scrub=not args.no_scrub,
                             patterns=patterns)
    except (ConfigError, ValueError) as exc:
        print(f"evalgate canaries import: {exc}", file=sys.stderr)
        return 4
    for line in report.lines():
        print(line)
    print(f"wrote {out} and {lock_path(out)}")
    return 0


def add_parser(sub: Any) -> None:
    canaries = sub.add_parser("canaries", help="build canary sets from real traffic")
    verbs = canaries.add_subparsers(dest="canaries_command", required=True)
    imp = verbs.add_parser(
        "import", help="JSONL/CSV request logs to a canary file: PII scrubbed, near duplicates "
        "removed, a seeded stratified sample, a lock file")
    imp.add_argument("logs", metavar="LOGS")
    imp.add_argument("--out", default="canaries/imported.yaml")
    imp.add_argument("--format", choices=["jsonl", "csv"], help="default: from the suffix")
    imp.add_argument("--prompt-field", default="prompt", help="dotted path, e.g. request.text")
    imp.add_argument("--answer-field", help="default: 'answer' when rows have it")
    imp.add_argument("--id-field")
    imp.add_argument("--context-field")
    imp.add_argument("--tag-field")
    imp.add_argument("--route-field")
    imp.add_argument("--sample", type=int, metavar="N", help="canaries to keep (default: all)")
    imp.add_argument("--seed", type=int, default=0)
    imp.add_argument("--stratify", choices=["none", "tag", "length", "route"], default="none")
    imp.add_argument("--similarity", type=float, default=0.8, metavar="T",
                     help="near-duplicate threshold: shingle Jaccard similarity (0-1]")
    imp.add_argument("--no-scrub", action="store_true", help="keep PII (not recommended)")
    imp.add_argument("--pii-pattern", action="append", default=[], metavar="NAME=REGEX",
                     help="another pattern to replace by [NAME]; repeatable")
    imp.set_defaults(func=_import)
