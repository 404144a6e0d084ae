"""The holes an outside reliability check found, each closed and checked over real HTTP: a kill
while the reports are written, a key cut by truncation or echoed in an answer, a concurrency
below 1, a journal that cannot be written, a cache blind to headers and key variables, and the
small things (BOM in JSONL, default_rubric, control characters in HTML, rate intervals)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from evalgate.engine.executor import redactor
from evalgate.errors import ConfigError
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.report.html import render_html
from evalgate.sim import SimServer
from evalgate.stats import rate_cap
from tests.conftest import make_cases, read_json, sim_cases_from, sim_model, write_project
from tests.test_reliability import GATE, case_counts, journal_files, model_at, start_pytest

REPORTS = ("evalgate.json", "evalgate.html", "evalgate.xml", "evalgate.md")


@pytest.fixture
def server(sim_server: SimServer) -> SimServer:
    sim_server.add_cases(sim_cases_from(make_cases(200)))
    return sim_server


def run_ids(folder: Path) -> set[str]:
    """The run id each report of a set names (one id: a set from one run)."""
    run_id = read_json(folder / "evalgate.json")["run_id"]
    return {run_id if run_id in (folder / name).read_text() else f"not {run_id}: {name}"
            for name in REPORTS}


def wait_for(proc: subprocess.Popen[bytes], found: Any) -> Path:
    """Poll (no fixed sleep) until `found()` gives a path; the run must still be going."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        path = found()
        if path is not None:
            return path  # type: ignore[no-any-return]
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        time.sleep(0.001)
    raise AssertionError("never appeared")


# -- 1. a kill while the result and the reports are written ---------------------------------


def test_a_kill_while_the_reports_are_written_resumes_with_no_call_and_one_set(
        tmp_path: Path, server: SimServer) -> None:
    root = write_project(tmp_path / "p", model=model_at(server, "w", hallucination_rate=0.2,
                                                        seed=4),
                         cases=make_cases(200), gate={"concurrency": 8, **GATE})
    first = start_pytest(root)
    first.communicate(timeout=180)
    reports = root / "reports"
    before = run_ids(reports)
    assert len(before) == 1
    proc = start_pytest(root)  # the same run again: every call made, then killed at the write
    staged = wait_for(proc, lambda: next(iter(root.glob(".reports.*.tmp/evalgate.json")), None))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert staged.parent.exists()  # killed mid-publication, not after
    assert run_ids(reports) == before  # the previous set whole, no stray temp file in it
    assert sorted(p.name for p in reports.iterdir()) == sorted(REPORTS)
    assert journal_files(root)  # the finished calls are still journaled
    calls = sum(case_counts(server).values())
    resumed = start_pytest(root, "--evalgate-resume")
    out = resumed.communicate(timeout=180)[0].decode()
    assert sum(case_counts(server).values()) == calls, out[-2000:]  # 0 new calls
    result = read_json(reports / "evalgate.json")
    assert result["calls_from_journal"] == 200 and result["calls_made"] == 0
    assert len(run_ids(reports)) == 1 and run_ids(reports) != before
    assert not journal_files(root)  # gone once the set was written
    assert not list(root.glob(".reports.*"))  # the killed run's staging directory too


# -- 2. secrets: cut by truncation, echoed in an answer -------------------------------------

KEY = "sk-live-9f2c4e1a7b3d5f60a8c2e4b6d8f0a1c3"


class KeyLeakingServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that answers "offset N" with a 401 whose message holds
    the caller's key at character N, and anything else with an answer that echoes the
    Authorization header."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        prompt = body["messages"][-1]["content"]
        key = self.headers.get("authorization", "").removeprefix("Bearer ")
        if "offset" in prompt:
            at = int(prompt.split("offset ")[1].split()[0])
            message = ("x" * at + key + " is not a valid key for this project; " + "y" * 400)
            self.reply(401, {"error": {"message": message[:at + 60], "type": "auth"}})
        else:
            text = f"Sure. Your request had Authorization: Bearer {key} and the answer is 1 day."
            self.reply(200, {"choices": [{"message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 5, "completion_tokens": 9}})

    def reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def leaky_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), KeyLeakingServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()


def leaks(data: bytes, secret: str) -> list[str]:
    pieces = {secret[i:i + 12] for i in range(len(secret) - 11)}
    return sorted(p for p in pieces if p.encode() in data)


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_no_piece_of_a_key_reaches_any_file_or_the_terminal(
        tmp_path: Path, leaky_url: str, xdist: list[str]) -> None:
    # The answered call first, one call at a time: 71 auth failures in a row from the start
    # would (rightly) stop the run early after 20 of them.
    cases = [{"id": "echo", "prompt": "what is it", "expected": {"facts": ["1 day"]}}]
    cases += [{"id": f"o{at}", "prompt": f"offset {at} please",
               "expected": {"facts": ["1 day"]}} for at in range(250, 321)]
    model = {"provider": "openai", "base_url": leaky_url, "model": "m", "max_retries": 0,
             "api_key_env": "EVALGATE_LEAK_KEY", "timeout_s": 10,
             "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}}
    root = write_project(tmp_path, model=model, cases=cases,
                         gate={"canary_failures": "report", "concurrency": 1,
                               "gate": {"on_inconclusive": "pass",
                                                                     "metrics": {}}})
    summary = root / "summary.md"
    proc = start_pytest(root, "--junitxml=pytest-junit.xml", "--evalgate-autosave", "-vv",
                        *xdist, env={"EVALGATE_LEAK_KEY": KEY, "EVALGATE_CACHE": "on",
                                     "GITHUB_STEP_SUMMARY": str(summary)})
    out = proc.communicate(timeout=180)[0]
    result = read_json(root / "reports" / "evalgate.json")
    errors = [r for r in result["records"] if r["error_class"] == "auth"]
    assert len(errors) == 71 and all("[REDACTED]" in r["error_message"] for r in errors)
    echo = next(r for r in result["records"] if r["case_id"] == "echo")
    assert echo["ok"] and "Bearer [REDACTED] and" in echo["text"]
    written = [p for p in root.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert {"responses.sqlite3", "pytest-junit.xml", "summary.md", *REPORTS} <= names
    assert any(p.parent.name == "runs" for p in written)  # the autosaved run
    assert leaks(out, KEY) == []
    for path in written:
        assert leaks(path.read_bytes(), KEY) == [], path


def test_a_key_cut_off_at_either_end_of_a_text_is_blanked() -> None:
    redact = redactor([KEY])
    assert redact(f"bad key {KEY[:20]}") == "bad key [REDACTED]"
    assert redact(f"{KEY[-15:]} was refused") == "[REDACTED] was refused"
    assert redact(f"a {KEY} b {KEY}") == "a [REDACTED] b [REDACTED]"
    assert redact("no secret here sk-") == "no secret here sk-"  # too short to be one


# -- 3. concurrency below 1 ----------------------------------------------------------------


@pytest.mark.parametrize("option", ["--evalgate-concurrency=-3", "--evalgate-concurrency=0"])
def test_a_concurrency_below_one_is_a_usage_error_not_a_hang(
        tmp_path: Path, sim_server: SimServer, option: str) -> None:
    root = write_project(tmp_path, model=model_at(sim_server), cases=make_cases(4))
    proc = start_pytest(root, option)
    try:
        out = proc.communicate(timeout=60)[0].decode()
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"{option}: no exit within 60 s (a hang)") from None
    assert proc.returncode == 4, out
    assert "is not a concurrency: expected a whole number >= 1" in out
    assert sim_server.stats.total == 0


def test_a_concurrency_below_one_fails_in_the_config_and_the_engine(
        tmp_path: Path, sim_server: SimServer) -> None:
    root = write_project(tmp_path, model=model_at(sim_server), cases=make_cases(4),
                         gate={"concurrency": 0})
    proc = start_pytest(root)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 4 and "evalgate: evalgate.yaml" in out and "concurrency" in out
    (root / "evalgate.yaml").write_text(yaml.safe_dump(
        {"candidate": "models/candidate.yaml", "canaries": "canaries", "rubrics": "rubrics"}))
    with pytest.raises(ConfigError, match="concurrency"):
        run_project(load_project(root), concurrency=-3)
    assert sim_server.stats.total == 0


# -- 4. a journal that cannot be written -----------------------------------------------------

# Space comes back once the calls are done (a check the rubric runs while grading lifts the
# limit): the run must get there with the journal off, and then write its result.
FREE_SPACE_LATER = '''
import resource

def pytest_evalgate_register_checks(registry):
    def space_back(answer, params):
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        return True

    registry.add("space_back", space_back)
'''
FILE_LIMIT = 12_000  # bytes: the journal passes it after a few dozen calls


def test_a_journal_that_hits_a_file_size_limit_is_turned_off_and_the_run_goes_on(
        tmp_path: Path, server: SimServer) -> None:
    rubric = {"criteria": [{"id": "space", "check": "space_back"},
                           {"id": "states-facts", "check": "contains_all",
                            "values": "{{ case.expected.facts }}"}]}
    root = write_project(tmp_path, model=model_at(server, "disk"), cases=make_cases(120),
                         gate={"concurrency": 4, **GATE}, rubric=rubric)
    (root / "conftest.py").write_text(FREE_SPACE_LATER)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, resource.RLIM_INFINITY))

    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--evalgate", "-q", "-p", "no:cacheprovider"],
        cwd=root, env=os.environ.copy(), capture_output=True, preexec_fn=limit, timeout=180)
    out = proc.stdout.decode()
    assert proc.returncode in (0, 1), out[-3000:]
    result = read_json(root / "reports" / "evalgate.json")
    assert len(result["records"]) == 120 and result["calls_made"] == 120
    [warning] = [w for w in result["warnings"] if "could not be journaled" in w]
    assert warning.startswith("the run could not be journaled from call ")
    assert "on: resume will repeat those calls" in warning
    n = int(warning.split("from call ")[1].split()[0])
    assert 1 < n < 120
    for name in REPORTS[1:]:
        assert "could not be journaled from call" in (root / "reports" / name).read_text()
    assert "could not be journaled from call" in out


# -- 5. the cache key: headers and the key variable ------------------------------------------


def test_headers_and_the_key_variable_are_part_of_the_cache_key(
        tmp_path: Path, server: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_A", "sk-account-a-0000000001")
    monkeypatch.setenv("KEY_B", "sk-account-b-0000000002")
    model = model_at(server, "c")
    model["api_key_env"] = "KEY_A"
    root = write_project(tmp_path, model=model, cases=make_cases(10), gate=GATE)

    def calls_with(**change: Any) -> int:
        (root / "models" / "candidate.yaml").write_text(yaml.safe_dump({**model, **change}))
        before = server.stats.total
        run_project(load_project(root), cache="on")
        return server.stats.total - before

    assert calls_with() == 10
    assert calls_with() == 0
    assert calls_with(headers={"OpenAI-Organization": "org-one"}) == 10
    assert calls_with(headers={"OpenAI-Organization": "org-two"}) == 10
    assert calls_with(headers={"OpenAI-Organization": "org-two"}) == 0
    assert calls_with(api_key_env="KEY_B") == 10
    cache = b"".join(p.read_bytes() for p in (root / ".evalgate" / "cache").iterdir())
    for value in (b"org-one", b"org-two", b"sk-account-a", b"sk-account-b"):
        assert value not in cache


# -- 6. the small things ---------------------------------------------------------------------


def test_a_jsonl_canary_file_may_start_with_a_bom(tmp_path: Path) -> None:
    root = write_project(tmp_path, model=sim_model(), cases=[])
    (root / "canaries" / "set.yaml").unlink()
    rows = [json.dumps({"id": c["id"], "prompt": c["prompt"], "expected": c["expected"],
                        "rubric": "basic"}) for c in make_cases(3)]
    (root / "canaries" / "set.jsonl").write_bytes(b"\xef\xbb\xbf" + "\n".join(rows).encode())
    assert [e.case.id for e in load_project(root).entries] == ["c0", "c1", "c2"]


def test_a_missing_default_rubric_is_one_problem_on_that_field(tmp_path: Path) -> None:
    root = write_project(tmp_path, model=sim_model(), cases=make_cases(5))
    (root / "rubrics" / "other.yaml").write_text((root / "rubrics" / "basic.yaml").read_text())
    (root / "canaries" / "set.yaml").write_text(yaml.safe_dump({"cases": make_cases(5)}))
    (root / "evalgate.yaml").write_text("candidate: models/candidate.yaml\ncanaries: canaries\n"
                                        "rubrics: rubrics\ndefault_rubric: ghost\n")
    with pytest.raises(ConfigError) as caught:
        load_project(root)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.field) == ("evalgate.yaml", 4, "default_rubric")
    assert "'ghost'" in problem.message and "known: basic, other" in problem.message


def test_a_toml_error_read_by_evalgate_says_evalgate(tmp_path: Path) -> None:
    """pytest reads the rootdir's pyproject.toml itself, before any plugin loads; a gate
    config in TOML that evalgate reads names evalgate."""
    write_project(tmp_path, model=sim_model(), cases=make_cases(2))
    (tmp_path / "evalgate.yaml").unlink()
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "pyproject.toml").write_text("[tool.evalgate]\nsamples = = 2\n")
    proc = start_pytest(tmp_path, "--evalgate-config=conf/pyproject.toml")
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 4 and "ERROR: evalgate: " in out and "invalid TOML" in out


def test_control_characters_from_answers_and_tags_never_reach_the_html(tmp_path: Path) -> None:
    cases = make_cases(4)
    cases[0]["metadata"] = {"sim_answer": "nul \x00 bel \x07 esc \x1b[31m red \x9b del \x7f"}
    cases[0]["tags"] = ["t\x07a\x1bg\x00"]
    root = write_project(tmp_path, model=sim_model(), cases=cases,
                         gate={"canary_failures": "report"})
    html = render_html(run_project(load_project(root)))
    assert not [c for c in html if c in "\x00\x07\x1b\x7f\x9b"]
    assert "nul \ufffd bel \ufffd esc \ufffd[31m" in html


def test_a_rate_interval_stays_inside_zero_and_one() -> None:
    errors = np.zeros(60)
    errors[7] = 1 / 3  # 1 error in 60 canaries x 3 samples: the t bound alone goes below 0
    verdict = rate_cap(errors, guardrail="error_rate", cap=0.05, alpha=0.05, samples=3)
    assert verdict.ci_low is not None and verdict.ci_high is not None
    assert 0.0 <= verdict.ci_low <= verdict.estimate <= verdict.ci_high <= 1.0
    everything = rate_cap(np.ones(60), guardrail="error_rate", cap=0.05, alpha=0.05, samples=3)
    assert everything.ci_high is not None and everything.ci_high <= 1.0
