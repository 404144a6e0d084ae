"""`evalgate catalog`: the shell around evalgate.catalog (render the page, add saved results,
export and import JSON lines). Unusable input exits 4 with `file: reason`."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

PAGES = ("catalog.html", "catalog.md")


def _open(args: argparse.Namespace, create: bool) -> Any:
    from evalgate.catalog.store import Catalog

    return Catalog(Path(args.catalog), create=create)


def _render(args: argparse.Namespace) -> int:
    from evalgate.catalog.render import write_pages

    with _open(args, create=False) as catalog:
        snapshots = catalog.snapshots()
    out = Path(args.out)
    html = Path(args.html) if args.html else None
    markdown = Path(args.markdown) if args.markdown else None
    if html is None and markdown is None:
        html, markdown = out / PAGES[0], out / PAGES[1]
    for path in write_pages(snapshots, html, markdown):
        print(f"wrote {path}")
    return 0


def _add(args: argparse.Namespace) -> int:
    from evalgate.catalog.snapshot import snapshots_of
    from evalgate.cli.result_files import load_result

    snapshots = [s for path in args.results for s in snapshots_of(load_result(path))]
    with _open(args, create=True) as catalog:
        added = catalog.add(snapshots)
    print(f"{args.catalog}: {added} snapshot(s) added, {len(snapshots) - added} already there")
    return 0


def _export(args: argparse.Namespace) -> int:
    from evalgate.catalog.store import export_lines

    with _open(args, create=False) as catalog:
        n = export_lines(catalog, Path(args.file))
    print(f"wrote {n} snapshot(s) to {args.file}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from evalgate.catalog.store import import_lines

    with _open(args, create=True) as catalog:
        added, skipped = import_lines(catalog, Path(args.file))
    print(f"{args.catalog}: {added} snapshot(s) imported from {args.file}, {skipped} already "
          "there")
    return 0


def _main(args: argparse.Namespace) -> int:
    from evalgate.catalog.store import DEFAULT_PATH, CatalogError
    from evalgate.cli.result_files import BadInput

    args.catalog = getattr(args, "catalog", DEFAULT_PATH)
    try:
        return int(args.action(args))
    except (CatalogError, BadInput) as exc:
        print(f"evalgate catalog: {exc}", file=sys.stderr)
    except (sqlite3.Error, OSError) as exc:
        print(f"evalgate catalog: {args.catalog}: {exc}", file=sys.stderr)
    return 4


def add_parser(sub: Any) -> None:
    from evalgate.catalog.store import DEFAULT_PATH

    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--catalog", metavar="PATH", default=argparse.SUPPRESS,
                       help=f"the catalog database (default: {DEFAULT_PATH})")
    catalog = sub.add_parser(
        "catalog", parents=[where],
        help="the model catalog: with no action, render it (HTML and Markdown); add, "
             "export, import snapshots")
    catalog.add_argument("--out", metavar="DIR", default="reports",
                         help=f"where {PAGES[0]} and {PAGES[1]} go (default: reports)")
    catalog.add_argument("--html", metavar="FILE", help="write only the HTML page, here")
    catalog.add_argument("--markdown", metavar="FILE", help="write only the Markdown, here")
    # no `catalog=` default here: set_defaults would change the shared `--catalog` action's
    # SUPPRESS default, and an action's default would then undo `catalog --catalog X add`
    catalog.set_defaults(func=_main, action=_render)
    actions = catalog.add_subparsers(dest="catalog_action")
    add = actions.add_parser("add", parents=[where],
                             help="add the snapshots of saved results (evalgate.json)")
    add.add_argument("results", nargs="+", metavar="RESULT.json")
    add.set_defaults(action=_add)
    export = actions.add_parser("export", parents=[where],
                                help="write every snapshot as JSON lines (a CI artifact)")
    export.add_argument("file", metavar="FILE.jsonl")
    export.set_defaults(action=_export)
    imp = actions.add_parser("import", parents=[where],
                             help="add the snapshots of a JSON lines export; duplicates "
                                  "are skipped")
    imp.add_argument("file", metavar="FILE.jsonl")
    imp.set_defaults(action=_import)
