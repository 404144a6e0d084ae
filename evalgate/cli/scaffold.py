"""`evalgate init`: scaffold a runnable gate (simulator example, canaries, rubric, CI workflows)
into an existing repository, never overwriting a file unless forced."""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from evalgate import DISTRIBUTION, __version__

# Target path in the repository -> template file in evalgate/templates_init/.
TEMPLATES: dict[str, str] = {
    "evalgate.yaml": "evalgate.yaml",
    "models/candidate.yaml": "models_candidate.yaml",
    "models/baseline.yaml": "models_baseline.yaml",
    "prompts/system.txt": "prompts_system.txt",
    "rubrics/example.yaml": "rubrics_example.yaml",
    ".github/workflows/evalgate.yml": "workflow_evalgate.yml",
    ".github/workflows/evalgate-comment.yml": "workflow_evalgate_comment.yml",
}
CANARIES = "canaries/example.yaml"
# Lines init makes sure `.gitignore` has (appended to an existing one, never overwriting it).
GITIGNORE = (".evalgate/", "reports/")

# (topic, question, policy context, facts, forbidden); `{v}` and `{n}` come from each variant.
_TOPICS: list[tuple[str, str, str, list[str], list[str]]] = [
    ("return-window", "How many days do I have to return {v}?",
     "{V} can be returned within {n} days of delivery for a full refund.",
     ["{n} days"], ["no returns on {v}"]),
    ("warranty", "How long is the warranty on {v}?",
     "{V} carry a {n}-year warranty against manufacturing defects.",
     ["{n}-year warranty"], ["lifetime warranty"]),
    ("price-match", "Do you price match {v}?",
     "We match a lower advertised price on {v} within {n} days of purchase.",
     ["within {n} days"], ["we do not price match"]),
    ("shipping-time", "How long does standard shipping to {v} take?",
     "Standard shipping to {v} takes {n} business days after dispatch.",
     ["{n} business days"], ["overnight delivery"]),
    ("free-shipping", "What is the minimum order for free shipping to {v}?",
     "Orders to {v} over {n} USD ship free; smaller orders pay a flat fee.",
     ["over {n} USD"], ["shipping is always free"]),
    ("customs", "Do I pay import duties when ordering to {v}?",
     "Orders to {v} above {n} USD may be charged import duties by the carrier on delivery.",
     ["above {n} USD"], ["duties are included"]),
    ("seats", "How many users can the {v} plan have?",
     "The {v} plan includes up to {n} users; more users need an upgrade.",
     ["up to {n} users"], ["unlimited users"]),
    ("storage", "How much storage comes with the {v} plan?",
     "The {v} plan includes {n} GB of storage per workspace.",
     ["{n} GB"], ["unlimited storage"]),
    ("trial", "How long is the free trial of the {v} plan?",
     "The {v} plan has a {n}-day free trial and no card is needed to start it.",
     ["{n}-day free trial"], ["trial requires a credit card"]),
    ("refund-time", "How long does a refund to {v} take?",
     "Refunds to {v} arrive within {n} business days of the return being received.",
     ["{n} business days"], ["refunds are instant"]),
    ("points", "How many points do {v} members earn per dollar?",
     "{V} members earn {n} points per dollar spent; points expire after 12 months.",
     ["{n} points per dollar", "12 months"], ["points never expire"]),
    ("store-hours", "What time does the {v} store close on Saturdays?",
     "The {v} store is open on Saturdays from 9 am until {n} pm.",
     ["{n} pm"], ["open 24 hours"]),
    ("pickup", "How long is an order held for pickup at the {v} store?",
     "Pickup orders wait at the {v} store for {n} days, then they are refunded.",
     ["{n} days"], ["held indefinitely"]),
]
_VARIANTS: dict[str, list[tuple[str, int]]] = {
    "return-window": [("jackets", 30), ("shoes", 45), ("backpacks", 60), ("tents", 21),
                      ("gloves", 14)],
    "warranty": [("backpacks", 2), ("tents", 3), ("sleeping bags", 5), ("headlamps", 1),
                 ("trekking poles", 4)],
    "price-match": [("jackets", 14), ("boots", 10), ("stoves", 7), ("kayaks", 30),
                    ("helmets", 15)],
    "shipping-time": [("Canada", 5), ("Mexico", 8), ("the UK", 6), ("Germany", 7),
                      ("Japan", 9)],
    "free-shipping": [("Canada", 75), ("Mexico", 90), ("the UK", 60), ("Germany", 65),
                      ("Japan", 120)],
    "customs": [("Canada", 150), ("Mexico", 50), ("the UK", 135), ("Germany", 160),
                ("Japan", 100)],
    "seats": [("Starter", 3), ("Team", 10), ("Business", 50), ("Scale", 250),
              ("Nonprofit", 25)],
    "storage": [("Starter", 5), ("Team", 100), ("Business", 500), ("Scale", 2000),
                ("Nonprofit", 200)],
    "trial": [("Starter", 7), ("Team", 14), ("Business", 21), ("Scale", 30),
              ("Nonprofit", 45)],
    "refund-time": [("a credit card", 5), ("PayPal", 3), ("a gift card", 2),
                    ("a bank account", 8), ("store credit", 1)],
    "points": [("Basic", 1), ("Silver", 2), ("Gold", 3), ("Platinum", 5), ("Trail Club", 4)],
    "store-hours": [("Boston", 8), ("Denver", 7), ("Seattle", 9), ("Austin", 10),
                    ("Portland", 6)],
    "pickup": [("Boston", 7), ("Denver", 5), ("Seattle", 10), ("Austin", 3),
               ("Portland", 14)],
}


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def example_canaries() -> list[dict[str, Any]]:
    """65 support canaries: every topic template filled in with each of its variants."""
    cases: list[dict[str, Any]] = []
    for topic, question, context, facts, forbidden in _TOPICS:
        for value, number in _VARIANTS[topic]:
            def fill(text: str, value: str = value, number: int = number) -> str:
                cap = value[:1].upper() + value[1:]
                return text.format(v=value, V=cap, n=number)

            cases.append({"id": f"{topic}-{_slug(value)}", "prompt": fill(question),
                          "context": fill(context),
                          "expected": {"facts": [fill(f) for f in facts],
                                       "forbidden": [fill(f) for f in forbidden]},
                          "tags": [topic]})
    return cases


def canary_text() -> str:
    """The example canary set as YAML, with a short header."""
    body = {"description": "Example Outfitters support policies (generated by evalgate init)",
            "rubric": "example", "cases": example_canaries()}
    header = ("# Example canaries: real questions with the policy text the answer must rest on.\n"
              "# `facts` must be stated; `forbidden` statements are hallucinations.\n"
              "# Replace them with your own; keep at least ~60 so the statistics can decide.\n")
    return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)


def template_text(name: str) -> str:
    """One packaged template from evalgate/templates_init/."""
    return files("evalgate.cli").joinpath("templates_init", name).read_text(encoding="utf-8")


def planned_files() -> dict[str, str]:
    """Every file init writes, relative path -> content."""
    planned = {rel: template_text(name) for rel, name in TEMPLATES.items()}
    planned[CANARIES] = canary_text()
    return dict(sorted(planned.items()))


def init_project(target: Path, force: bool = False) -> list[Path]:
    """Write the scaffold into `target`; refuse (FileExistsError) if any file exists, unless
    `force`. Returns the written paths."""
    target = Path(target)
    if not target.is_dir():
        raise NotADirectoryError(f"{target}: not a directory")
    planned = planned_files()
    existing = [rel for rel in planned if (target / rel).exists()]
    if existing and not force:
        raise FileExistsError("evalgate init would overwrite existing files (use --force): "
                              + ", ".join(existing))
    written: list[Path] = []
    for rel, text in planned.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if update_gitignore(target / ".gitignore"):
        written.append(target / ".gitignore")
    return written


def update_gitignore(path: Path) -> bool:
    """Add the run's local state and reports to `.gitignore`, keeping what it has; True when
    the file changed."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    present = {line.strip() for line in text.splitlines()}
    missing = [entry for entry in GITIGNORE
               if entry not in present and entry.rstrip("/") not in present]
    if not missing:
        return False
    lead = "" if not text or text.endswith("\n") else "\n"
    block = "# evalgate: local cache, journal and run store; generated reports\n"
    path.write_text(text + lead + block + "".join(f"{e}\n" for e in missing), encoding="utf-8")
    return True


def install_line() -> str:
    """What to `pip install`: this project, pinned (not PyPI's unrelated `evalgate`)."""
    return f'pip install "{DISTRIBUTION}=={__version__}"'


def init_main(target: str, force: bool) -> int:
    """The `evalgate init` command: 0 when written, 1 when it refused."""
    root = Path(target)
    try:
        written = init_project(root, force=force)
    except (FileExistsError, NotADirectoryError) as exc:
        print(f"evalgate init: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path.relative_to(root).as_posix()}")
    print(f"\nnext:\n  {install_line()}\n  pytest --evalgate")
    return 0
