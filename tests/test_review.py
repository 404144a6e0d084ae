"""`evalgate review` for real: the page served on 127.0.0.1 with its token, driven in headless
Chromium (Playwright on the system's /usr/bin/chromium; nothing downloads a browser) that
clicks and types; then the canary YAML (comments, order kept) and the labels on disk."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from evalgate.curation.review import (
    ReviewError,
    ReviewServer,
    ReviewSession,
    audit_sample,
    build_items,
)
from evalgate.curation.yamledit import EditError, edit_case
from evalgate.gate.judge_calibration import review_inputs
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.results import RunResult
from evalgate.spec.labels import answer_hash, load_labels
from tests.conftest import sim_model, write_project

CHROMIUM = "/usr/bin/chromium"
EVIL = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
CANARIES = f"""\
# Support canaries: edited by hand and by evalgate review.
rubric: basic   # the shared rubric
cases:
  # refunds first: the most asked
  - id: refund
    prompt: "How many days do I have for a refund?"   # asked daily
    expected:
      facts: ["30 days"]
      forbidden: ["90 days"]
    tags: [billing]
  - id: html
    prompt: Show me the markup
    expected: {{facts: ["markup"]}}
    metadata: {{sim_answer: {json.dumps(EVIL)}}}
  - id: shipping
    prompt: How long does shipping take?
    expected:
      facts: ["5 days"]
"""


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, RunResult]:
    write_project(tmp_path, model=sim_model(), canary_text=CANARIES)
    result = run_project(load_project(tmp_path))
    return tmp_path, result


@pytest.fixture
def server(project: tuple[Path, RunResult]) -> Iterator[ReviewServer]:
    root, result = project
    loaded = load_project(root)
    session = ReviewSession(build_items(loaded.canary_sets, result), root / "labels", "Ann Lee")
    running = ReviewServer(session).start()
    try:
        yield running
    finally:
        running.stop()


def test_requests_without_the_token_get_403(server: ReviewServer,
                                            project: tuple[Path, RunResult]) -> None:
    root, result = project
    base = server.url.split("?")[0]
    assert base.startswith("http://127.0.0.1:") and not base.endswith(":0/")
    assert httpx.get(base).status_code == 403
    assert httpx.get(base + "?token=wrong").status_code == 403
    answer = answer_hash(result.records[0].text)
    denied = httpx.post(base + "api/label", json={"canary": "set/refund", "answer": answer,
                                                  "label": "correct"})
    assert denied.status_code == 403 and "token" in denied.json()["error"]
    assert not (root / "labels").exists()  # nothing written
    page = httpx.get(server.url)
    assert page.status_code == 200 and "script-src 'nonce-" in page.headers[
        "content-security-policy"]


def test_bad_requests_are_clear_and_write_nothing(server: ReviewServer,
                                                  project: tuple[Path, RunResult]) -> None:
    root, result = project
    token = {"X-Evalgate-Token": server.session.token}
    base = server.url.split("?")[0]
    before = (root / "canaries" / "set.yaml").read_text()
    for body, message in (
        ({"canary": "set/nope", "answer": "x", "label": "correct"}, "unknown canary"),
        ({"canary": "set/refund", "answer": "0" * 16, "label": "correct"}, "no answer with"),
        ({"canary": "set/refund", "answer": answer_hash(result.records[0].text),
          "label": "great"}, "label must be one of"),
    ):
        r = httpx.post(base + "api/label", json=body, headers=token)
        assert r.status_code == 400 and message in r.json()["error"]
    r = httpx.post(base + "api/canary", json={"canary": "set/refund", "facts": "30 days"},
                   headers=token)
    assert r.status_code == 400 and "list of strings" in r.json()["error"]
    r = httpx.post(base + "api/label", content=b"{not json", headers=token)
    assert r.status_code == 400
    assert not (root / "labels").exists()
    assert (root / "canaries" / "set.yaml").read_text() == before


def test_review_in_a_real_browser(server: ReviewServer, project: tuple[Path, RunResult]) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    root, result = project
    refund = next(r for r in result.records if r.case_id == "refund")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url)
            expect = sync_api.expect
            # the answer carrying HTML is shown as text, and its script never ran
            evil = page.locator("section[data-canary='set/html'] pre.text")
            expect(evil).to_have_text(EVIL)
            assert page.title() == "evalgate review"
            assert page.locator("section[data-canary='set/html'] img").count() == 0
            # label the refund answer, then change the references and verify the canary
            section = page.locator("section[data-canary='set/refund']")
            answer = section.locator(f"[data-answer='{answer_hash(refund.text)}']")
            answer.locator("button[data-label='hallucination']").click()
            expect(answer.locator(".status")).to_have_text("labelled hallucination")
            facts = section.locator("textarea[name=facts]")
            facts.fill("")
            facts.type("30 days\nfull refund")
            section.locator("textarea[name=forbidden]").fill("90 days\nstore credit only")
            section.locator("input[name=verified]").check()
            section.locator("button.save").click()
            expect(section.locator("button.save + .status")).to_have_text("saved, verified")
            # a bad write shows its error on the page: the canary vanished from the file
            (root / "canaries" / "set.yaml").write_text(
                (root / "canaries" / "set.yaml").read_text().replace("id: shipping",
                                                                     "id: shipped"))
            other = page.locator("section[data-canary='set/shipping']")
            other.locator("button.save").click()
            expect(other.locator("button.save + .status")).to_contain_text(
                "not saved: set.yaml has no case 'shipping'")
            assert errors == []
        finally:
            browser.close()
    text = (root / "canaries" / "set.yaml").read_text()
    assert text.startswith("# Support canaries: edited by hand and by evalgate review.\n"
                           "rubric: basic   # the shared rubric\n")
    assert "  # refunds first: the most asked\n  - id: refund\n" in text
    assert '"How many days do I have for a refund?"   # asked daily' in text
    assert text.index("id: refund") < text.index("id: html") < text.index("id: shipped")
    case = yaml.safe_load(text)["cases"][0]
    assert case["expected"] == {"facts": ["30 days", "full refund"],
                                "forbidden": ["90 days", "store credit only"]}
    assert case["verified"]["by"] == "Ann Lee" and case["verified"]["at"]
    assert list(case) == ["id", "prompt", "expected", "tags", "verified"]
    [label] = load_labels(root / "labels")
    assert (label.canary, label.answer, label.label, label.reviewer, label.config) == (
        "set/refund", answer_hash(refund.text), "hallucination", "Ann Lee", "candidate")
    assert (root / "labels" / "Ann-Lee.jsonl").exists()
    # the gate sees both: one verified canary, one labelled answer
    project_now = load_project(root)
    inputs = review_inputs(project_now.entries, load_labels(root / "labels"))
    assert inputs.verified == {"set/refund"} and len(inputs.labels) == 1


def test_audit_sample_is_stratified_by_outcome(project: tuple[Path, RunResult]) -> None:
    _, result = project
    records = [r.model_copy(update={"key": f"k{i}", "hallucination": i < 30,
                                    "passed": i >= 30}) for i, r in
               enumerate(result.records[:1] * 100)]
    picked = audit_sample(records, 10, seed=1)
    assert sum(bool(r.hallucination) for r in picked) == 3
    assert picked == audit_sample(records, 10, seed=1)


def test_round_trip_edit_refuses_jsonl_and_unknown_cases(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text('{"id": "a", "prompt": "p"}\n')
    with pytest.raises(EditError, match="not a YAML canary set"):
        edit_case(path, "a", facts=["x"])
    yml = tmp_path / "set.yaml"
    yml.write_text("- id: a  # first\n  prompt: p\n")
    with pytest.raises(EditError, match="no case 'b'"):
        edit_case(yml, "b", facts=["x"])
    edit_case(yml, "a", facts=["x"], verified={"by": "r", "at": "t"})
    assert yml.read_text() == ("- id: a  # first\n  prompt: p\n  expected:\n    facts:\n"
                               "    - x\n  verified:\n    by: r\n    at: t\n")
    edit_case(yml, "a", unverify=True)
    assert "verified" not in yml.read_text()


def test_review_command_needs_a_reviewer_and_a_result(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    from evalgate.cli import main

    write_project(tmp_path, model=sim_model(), canary_text=CANARIES)
    monkeypatch.chdir(tmp_path)
    assert main(["review", "--reviewer", "x"]) == 4
    assert "no result at" in capsys.readouterr().err
    with pytest.raises(ReviewError, match="no reviewer name"):
        from evalgate.curation.review import reviewer_name

        if shutil.which("git"):
            monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "none"))
            monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        reviewer_name(None, tmp_path)
