"""`evalgate canaries import`: 5,000 generated requests with planted near duplicates and PII
give the asked sample, no planted PII, no duplicates, the same bytes under the same seed."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalgate.cli import main
from evalgate.curation.dedup import jaccard, near_duplicates, shingles
from evalgate.curation.logs import stratified_sample
from evalgate.curation.pii import Scrubber, iban_ok, luhn_ok
from evalgate.spec.canaries import load_canary_file

INTENTS = ("billing", "shipping", "account", "returns")


def luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    for check in range(10):
        if luhn_ok("".join(map(str, [*digits, check]))):
            number = "".join(map(str, [*digits, check]))
            return " ".join(number[i:i + 4] for i in range(0, 16, 4))
    raise AssertionError


def iban(rng: random.Random) -> str:
    bban = "".join(str(rng.randrange(10)) for _ in range(18))
    for check in range(2, 99):
        candidate = f"DE{check:02d}{bban}"
        if iban_ok(candidate):
            return " ".join(candidate[i:i + 4] for i in range(0, len(candidate), 4))
    raise AssertionError


def generate_logs(path: Path, n: int = 5000, dups: int = 1000, seed: int = 1
                  ) -> tuple[list[str], int]:
    """n rows, `dups` of them near copies of earlier rows; returns the planted PII strings."""
    rng = random.Random(seed)
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ra", "so", "tu", "vi", "ze")
             for b in ("bar", "cor", "den", "fis", "gol", "hum", "jat", "kes", "lim", "mor")
             for _ in range(1)] + [f"word{i}" for i in range(3000)]
    pii: list[str] = []
    rows: list[dict[str, Any]] = []
    for i in range(n - dups):
        words = " ".join(rng.choice(vocab) for _ in range(12))
        kind = i % 6
        if kind == 0:
            secret = f"user.{i}@mail{i % 97}.example.com"
        elif kind == 1:
            secret = luhn_card(rng)
        elif kind == 2:
            secret = iban(rng)
        elif kind == 3:
            secret = f"+1 415 555 {i % 10000:04d}"
        elif kind == 4:
            secret = f"10.{i % 250}.{(i * 7) % 250}.{(i * 13) % 250 + 1}"
        else:
            secret = ""
        if secret:
            pii.append(secret)
        prompt = f"Question about {words}" + (f" my detail is {secret} thanks" if secret else "")
        rows.append({"id": f"r{i}", "request": {"text": prompt},
                     "answer": f"Answer for {words}", "intent": INTENTS[i % 4]})
    originals = list(rows)
    for j in range(dups):
        original = originals[rng.randrange(len(originals))]
        text = original["request"]["text"]
        text = text.upper() + " ?!" if j % 2 else "  " + text.replace(" ", "  ") + " please"
        rows.insert(rng.randrange(len(rows) + 1),
                    {"id": f"d{j}", "request": {"text": text}, "answer": original["answer"],
                     "intent": original["intent"]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return pii, dups


def run_import(tmp: Path, logs: Path, *extra: str, out: str = "canaries/imported.yaml") -> int:
    return main(["canaries", "import", str(logs), "--out", str(tmp / out),
                 "--prompt-field", "request.text", "--tag-field", "intent", *extra])


def test_import_5000_requests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs.jsonl"
    pii, planted = generate_logs(logs)
    args = ("--sample", "300", "--seed", "7", "--stratify", "tag")
    assert run_import(tmp_path, logs, *args) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "canaries" / "imported.yaml"
    text = out.read_text()
    assert [s for s in pii if s in text] == []  # no planted PII string survives
    assert "[EMAIL]" in text and "[CARD]" in text and "[IBAN]" in text and "[PHONE]" in text
    cset = load_canary_file(out, "imported", str(out))  # a valid canary set
    assert len(cset.cases) == 300
    prompts = [c.user_text for c in cset.cases]
    assert near_duplicates(prompts, 0.8) == {}
    counts = {t: sum(t in c.tags for c in cset.cases) for t in INTENTS}
    assert counts == dict.fromkeys(INTENTS, 75)  # proportional strata
    assert all(c.metadata["source"].startswith("logs.jsonl:") for c in cset.cases)
    assert all(c.expected.reference for c in cset.cases)  # answers became references
    lock = json.loads((tmp_path / "canaries" / "imported.yaml.lock").read_text())
    assert lock["input_sha256"] == hashlib.sha256(logs.read_bytes()).hexdigest()
    assert (lock["seed"], lock["count"], lock["rows_read"]) == (7, 300, 5000)
    assert lock["duplicates_removed"] >= planted
    assert lock["pii_replaced"]["EMAIL"] >= sum("@" in s for s in pii)  # copies count too
    assert f"{lock['duplicates_removed']} near duplicates removed" in printed
    assert "PII replaced:" in printed
    # deterministic under the seed; another seed draws another sample
    assert run_import(tmp_path, logs, *args, out="again.yaml") == 0
    assert (tmp_path / "again.yaml").read_bytes() == out.read_bytes()
    assert run_import(tmp_path, logs, "--sample", "300", "--seed", "8", out="other.yaml") == 0
    assert (tmp_path / "other.yaml").read_bytes() != out.read_bytes()


def test_scrubber_checks_cards_and_ibans() -> None:
    scrub = Scrubber()
    text = ("card 4111 1111 1111 1111, order 4111 1111 1111 1112, iban GB82 WEST 1234 5698 "
            "7654 32, not DE00 1234 5678 9012 3456 78, mail a.b@c.io, 30 days, 2024-05-01")
    out = scrub(text)
    assert "4111 1111 1111 1111" not in out and "4111 1111 1111 1112" in out
    assert "GB82" not in out and "DE00 1234" in out
    assert "30 days" in out and "2024-05-01" in out
    assert scrub.counts == {"CARD": 1, "IBAN": 1, "EMAIL": 1}


def test_near_duplicates_follow_the_threshold() -> None:
    a = "where is my order it was placed last week and has not arrived"
    b = "Where is my ORDER?? It was placed last week and has not arrived!"
    c = a + " yet"
    assert jaccard(shingles(a), shingles(b)) == 1.0
    assert near_duplicates([a, b, c, "reset my password"], 0.8) == {1: 0, 2: 0}
    assert near_duplicates([a, c], 0.95) == {}
    with pytest.raises(ValueError, match="threshold"):
        near_duplicates([a], 1.5)


def test_stratified_sample_is_proportional_and_seeded() -> None:
    items = [("x", i) for i in range(70)] + [("y", i) for i in range(30)]
    got = stratified_sample(items, lambda t: t[0], 10, seed=3)
    assert sum(t[0] == "x" for t in got) == 7
    assert got == stratified_sample(items, lambda t: t[0], 10, seed=3)
    assert got == sorted(got, key=items.index)  # input order kept


def test_csv_logs_and_a_custom_pattern(tmp_path: Path) -> None:
    logs = tmp_path / "logs.csv"
    with logs.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["q", "a", "route"])
        w.writerow(["Ticket TK-123456: refund for bob@x.org?", "Yes, 30 days.", "fast"])
        w.writerow(["How long is shipping to Oslo?", "5 days.", "slow"])
    assert main(["canaries", "import", str(logs), "--out", str(tmp_path / "c.yaml"),
                 "--prompt-field", "q", "--answer-field", "a", "--route-field", "route",
                 "--pii-pattern", r"TICKET=TK-\d{6}", "--stratify", "route"]) == 0
    cases = yaml.safe_load((tmp_path / "c.yaml").read_text())["cases"]
    assert cases[0]["prompt"] == "Ticket [TICKET]: refund for [EMAIL]?"
    assert cases[0]["metadata"] == {"source": "logs.csv:2", "route": "fast"}


def test_bad_logs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs.jsonl"
    logs.write_text('{"prompt": "a"}\n{"prompt": \n[1, 2]\n')
    out = tmp_path / "c.yaml"
    assert main(["canaries", "import", str(logs), "--out", str(out)]) == 4
    err = capsys.readouterr().err
    assert f"{logs}:2" in err and "invalid JSON" in err
    assert f"{logs}:3" in err and "JSON object" in err
    assert not out.exists()  # nothing half-written
    logs.write_text('{"prompt": "a", "intent": "x"}\n')
    assert main(["canaries", "import", str(logs), "--out", str(out),
                 "--tag-field", "topic"]) == 4
    err = capsys.readouterr().err
    assert "no row has the field of --tag-field 'topic'" in err
    assert "fields of the first row: intent, prompt" in err
    assert main(["canaries", "import", str(logs), "--out", str(out),
                 "--stratify", "route"]) == 4
    assert "--stratify route needs --route-field" in capsys.readouterr().err
