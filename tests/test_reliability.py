"""Nothing lost, nothing paid twice: the journal (resume after a real SIGKILL), the response
cache (a cached re-run makes zero calls), Ctrl-C (a real SIGINT gives a partial report), and
user-only files. pytest runs in real subprocesses against a simulator this test process runs,
so the simulator's per-canary call counts (GET /stats) survive the kill."""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from evalgate.engine.persist import (
    CACHE_DIR,
    CACHE_FILE,
    JOURNAL_DIR,
    STATE_DIR,
    Journal,
    ResponseCache,
    default_cache_mode,
    read_journal,
)
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.results import Record
from evalgate.sim import SimServer
from tests.conftest import make_cases, read_json, sim_cases_from, sim_model, write_project

pytest_plugins = ["pytester"]

GATE = {"gate": {"metrics": {"pass_rate": {"min": 0.4}, "hallucination_rate": {"max": 0.6},
                             "latency_p50_ms": {"max": 60000}}},
        "canary_failures": "report"}
NON_LATENCY = ("pass_rate", "hallucination_rate", "error_rate")


def model_at(server: SimServer, name: str = "ext", **profile: Any) -> dict[str, Any]:
    """A provider-openai model config pointing at the test's simulator (counts survive kills)."""
    server.add_profile(name, {"latency_ms": 1, **profile})
    return {"provider": "openai", "base_url": f"{server.base_url}/v1", "model": name,
            "timeout_s": 10, "max_retries": 1,
            "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}


def case_counts(server: SimServer) -> dict[str, int]:
    """Answered requests per canary, read over HTTP like any client would."""
    return dict(httpx.get(f"{server.base_url}/stats", timeout=5).json()["cases"])


def journal_files(root: Path) -> list[Path]:
    return sorted((root / STATE_DIR / JOURNAL_DIR).glob("*.jsonl"))


def journal_records(root: Path) -> int:
    """Complete record lines in the run's journal (0 while it does not exist)."""
    files = journal_files(root)
    if not files:
        return 0
    return sum(1 for line in files[0].read_bytes().split(b"\n")[1:] if line.endswith(b"}"))


def start_pytest(root: Path, *args: str, env: dict[str, str] | None = None,
                 new_session: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "--evalgate", "-q", "-p", "no:cacheprovider", *args],
        cwd=root, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=new_session)


def run_pytest(root: Path, *args: str, env: dict[str, str] | None = None
               ) -> tuple[int, str]:
    proc = start_pytest(root, *args, env=env)
    out, _ = proc.communicate(timeout=180)
    return proc.returncode, out.decode()


def wait_for_records(proc: subprocess.Popen[bytes], root: Path, at_least: int) -> int:
    """Poll the journal until it holds `at_least` records (no fixed sleep)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        n = journal_records(root)
        if n >= at_least:
            return n
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.005)
    raise AssertionError("the journal never filled")


def answers(result: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {f"{r['key']}#{r['sample']}": (r["ok"], r["text"], r["passed"], r["hallucination"],
                                         [c["passed"] for c in r["criteria"]])
            for r in result["records"]}


def verdicts(result: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {v["guardrail"]: (v["verdict"], v["value"]) for v in result["verdicts"]
            if not v["metric"].startswith("latency")}


def assert_no_secret(root: Path, secret: str) -> list[Path]:
    written = [p for p in root.rglob("*") if p.is_file()]
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
    return written


@pytest.fixture
def server(sim_server: SimServer) -> SimServer:
    sim_server.add_cases(sim_cases_from(make_cases(200)))
    return sim_server


def test_sigkill_then_resume_makes_only_the_missing_calls(
        tmp_path: Path, server: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 100
    secret = f"sk-test-{secrets.token_hex(12)}"
    model = model_at(server, "slow", latency_ms=60, hallucination_rate=0.3, seed=3)
    model["api_key_env"] = "EVALGATE_TEST_KEY"
    env = {"EVALGATE_TEST_KEY": secret}
    killed = write_project(tmp_path / "killed", model=model, cases=make_cases(n),
                           gate={"concurrency": 2, **GATE})
    proc = start_pytest(killed, env=env)
    wait_for_records(proc, killed, 10)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    server.add_profile("slow", {"latency_ms": 1, "hallucination_rate": 0.3, "seed": 3})
    before = case_counts(server)  # latency does not change answers: the rest may go fast
    [journal] = journal_files(killed)
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    assert stat.S_IMODE(journal.parent.stat().st_mode) == 0o700
    # A kill that lands mid-write leaves a torn last line; its timing cannot be forced, so
    # the test tears one itself (appended whole, like the first bytes of a record).
    with journal.open("ab") as f:
        f.write(b'{"key":"set/c99","set":"set","case_id":"c9')
    finished, torn = read_journal(journal, json.loads(journal.read_text().split("\n")[0])
                                  ["run_key"])
    assert torn >= 1 and 10 <= len(finished) < n
    done = {r.record_id for r in finished}
    assert_no_secret(killed, secret)  # the journal holds no trace of the key

    code, out = run_pytest(killed, "--evalgate-resume", env=env)
    assert code == 0, out
    after = case_counts(server)
    resumed = read_json(killed / "reports" / "evalgate.json")
    # Finished calls were not made again; every other canary was called once more.
    for record_id in done:
        assert after[record_id] == before[record_id] == 1, record_id
    new = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert set(new) == {f"set/c{i}#0" for i in range(n)} - done
    assert set(new.values()) == {1}
    assert resumed["calls_from_journal"] == len(done)
    assert not resumed["partial"]
    assert any("resumed:" in w and "torn journal line" in w for w in resumed["warnings"])
    assert not journal_files(killed)  # a finished run removes its journal
    assert_no_secret(killed, secret)
    assert secret not in out

    whole = write_project(tmp_path / "whole", model=model, cases=make_cases(n),
                          gate={"concurrency": 2, **GATE})
    monkeypatch.setenv("EVALGATE_TEST_KEY", secret)  # the reference run: the engine, here
    uninterrupted = run_project(load_project(whole), concurrency=2).model_dump(mode="json")
    assert answers(resumed) == answers(uninterrupted)
    assert len(answers(resumed)) == n
    assert {k: resumed["metrics"][k] for k in NON_LATENCY} == \
        {k: uninterrupted["metrics"][k] for k in NON_LATENCY}
    assert verdicts(resumed) == verdicts(uninterrupted)
    assert resumed["verdict"] == uninterrupted["verdict"] == "PASS"


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_ctrl_c_stops_cleanly_with_a_partial_report(tmp_path: Path, server: SimServer,
                                                    xdist: list[str]) -> None:
    n = 100
    model = model_at(server, f"slower{len(xdist)}", latency_ms=600)
    root = write_project(tmp_path, model=model, cases=make_cases(n),
                         gate={"concurrency": 2, **GATE})
    proc = start_pytest(root, *xdist, new_session=True)
    wait_for_records(proc, root, 4)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    out, _ = proc.communicate(timeout=60)
    stopped_in = time.monotonic() - t0
    # The rest of the calls would take >= (n - 4) * 0.6 / 2 = 28.8 s: stopping well inside
    # that means no further call was awaited (the simulator's counts below say it exactly).
    assert stopped_in < 20, stopped_in
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out.decode()
    text = out.decode()
    assert "PARTIAL run" in text
    result = read_json(root / "reports" / "evalgate.json")
    assert result["partial"] is True
    assert result["verdict"] != "PASS"
    assert 4 <= len(result["records"]) < n
    assert any(w.startswith("PARTIAL run") for w in result["warnings"])
    # The journal is consistent: flushed, every line whole, exactly the finished calls.
    [journal] = journal_files(root)
    key = json.loads(journal.read_text().split("\n")[0])["run_key"]
    records, torn = read_journal(journal, key)
    assert torn == 0 and journal.read_bytes().endswith(b"\n")
    assert {r.record_id for r in records} == {f"{r['key']}#{r['sample']}"
                                              for r in result["records"]}
    # No call was started after the interrupt: at most the two in flight were not journaled.
    assert sum(case_counts(server).values()) <= len(records) + 2
    assert "PARTIAL run" in (root / "reports" / "evalgate.md").read_text()
    assert 'id="partial"' in (root / "reports" / "evalgate.html").read_text()
    assert 'name="partial" value="True"' in (root / "reports" / "evalgate.xml").read_text()

    server.add_profile(f"slower{len(xdist)}", {"latency_ms": 1})
    before = case_counts(server)
    code, out2 = run_pytest(root, "--evalgate-resume")
    assert code == 0, out2
    finished = read_json(root / "reports" / "evalgate.json")
    assert not finished["partial"] and finished["verdict"] == "PASS"
    assert finished["calls_from_journal"] == len(records)
    made = sum(case_counts(server).values()) - sum(before.values())
    assert made == n - len(records)


def test_a_cached_rerun_makes_zero_calls_and_says_so(
        pytester: pytest.Pytester, server: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVALGATE_CACHE")
    monkeypatch.delenv("CI", raising=False)
    model = model_at(server, "cachy", latency_ms=5, latency_sigma=0.5, hallucination_rate=0.2)
    write_project(pytester.path, model=model, cases=make_cases(12), gate=GATE)
    first_run = pytester.runpytest_subprocess("--evalgate")  # default locally: cache on
    first = read_json(pytester.path / "reports" / "evalgate.json")
    assert server.stats.total == 12 and first["calls_from_cache"] == 0
    server.stats.reset()
    second_run = pytester.runpytest_subprocess("--evalgate")
    second = read_json(pytester.path / "reports" / "evalgate.json")
    assert server.stats.total == 0
    assert second["calls_from_cache"] == 12 and second["calls_made"] == 0
    assert all(r["cached"] and r["cached_at"] and not r["attempts"] for r in second["records"])
    assert answers(second) == answers(first)
    assert second["verdict"] == first["verdict"] == "PASS"
    assert second_run.ret == first_run.ret == 0
    # Latency is the one measured when each answer was made, and every report says so.
    assert [r["latency_ms"] for r in second["records"]] == \
        [r["latency_ms"] for r in first["records"]]
    [p50] = [v for v in second["verdicts"] if v["metric"] == "latency_p50_ms"]
    assert "latency from cache for 12 of 12 answers (measured at" in p50["note"]
    assert second["total_cost_usd"] == 0.0  # nothing was spent in this run
    assert "12 answers from cache (their latency from cache)" in second_run.stdout.str()
    assert "12 answers from cache (latency measured when cached)" in \
        (pytester.path / "reports" / "evalgate.md").read_text()
    assert "their latency: measured when cached" in \
        (pytester.path / "reports" / "evalgate.html").read_text()
    junit = (pytester.path / "reports" / "evalgate.xml").read_text()
    assert 'name="calls_from_cache" value="12"' in junit
    assert 'name="latency_from_cache" value="True"' in junit
    # In CI the default is off: every call is made again.
    server.stats.reset()
    monkeypatch.setenv("CI", "true")
    pytester.runpytest_subprocess("--evalgate")
    assert server.stats.total == 12


def engine_run(root: Path, cache: str) -> Any:
    return run_project(load_project(root), cache=cache)


def test_cache_modes_and_what_makes_a_new_entry(tmp_path: Path, server: SimServer) -> None:
    model = model_at(server, "modes")
    root = write_project(tmp_path, model=model, cases=make_cases(5), gate=GATE)
    assert engine_run(root, "off").calls_from_cache == 0
    assert not (root / STATE_DIR / CACHE_DIR).exists()
    assert engine_run(root, "read").calls_from_cache == 0  # nothing written yet
    server.stats.reset()
    engine_run(root, "write")
    assert engine_run(root, "write").calls_from_cache == 0  # write never reads
    assert server.stats.total == 10
    server.stats.reset()
    assert engine_run(root, "read").calls_from_cache == 5 and server.stats.total == 0
    # A changed param, system prompt or sample count is another request: a cache miss.
    write_project(root, model={**model, "params": {"temperature": 0.3}}, cases=make_cases(5),
                  gate=GATE)
    assert engine_run(root, "on").calls_from_cache == 0 and server.stats.total == 5
    write_project(root, model={**model, "params": {"temperature": 0.3}}, cases=make_cases(5),
                  gate={**GATE, "samples": 2})
    result = engine_run(root, "on")
    assert result.calls_from_cache == 5 and server.stats.total == 10  # sample 1 is new
    cache = root / STATE_DIR / CACHE_DIR
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache / CACHE_FILE).stat().st_mode) == 0o600
    assert {p.name for p in cache.iterdir()} == {CACHE_FILE}  # no stray sqlite side files
    resumed = run_project(load_project(root), resume=True)
    assert any("no journal of this run" in w for w in resumed.warnings)


def test_cache_files_are_user_only_while_open(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache", "on")
    cache.put("k1", Record(key="s/c", set="s", case_id="c", ok=True, text="an answer"))
    cache.put("k2", Record(key="s/d", set="s", case_id="d", ok=False, error_class="timeout"))
    cache.flush()
    files = list((tmp_path / "cache").iterdir())
    assert {p.name for p in files} >= {CACHE_FILE, f"{CACHE_FILE}-wal"}
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700
    assert cache.get("k1") is not None and cache.get("k1")["text"] == "an answer"  # type: ignore[index]
    assert cache.get("k2") is None  # errors are never stored
    cache.close()


def test_errors_are_never_cached(tmp_path: Path, server: SimServer) -> None:
    model = {**model_at(server, "flaky", error_500_rate=0.5, seed=11), "max_retries": 0}
    root = write_project(tmp_path, model=model, cases=make_cases(20), gate=GATE)
    first = engine_run(root, "on")
    failed = {r.record_id for r in first.records if not r.ok}
    assert 0 < len(failed) < 20
    server.stats.reset()
    second = engine_run(root, "on")
    assert second.calls_from_cache == 20 - len(failed)
    assert server.stats.total == len(failed)  # only the failed calls are made again
    assert {r.record_id for r in second.records if not r.cached} == failed


def test_default_cache_mode() -> None:
    assert default_cache_mode({}) == "on"
    assert default_cache_mode({"CI": "true"}) == "off"
    assert default_cache_mode({"CI": "true", "EVALGATE_CACHE": "read"}) == "read"
    with pytest.raises(ValueError, match="EVALGATE_CACHE='sometimes' is not a cache mode"):
        default_cache_mode({"EVALGATE_CACHE": "sometimes"})


def test_a_bad_cache_option_is_a_usage_error(
        pytester: pytest.Pytester, server: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(pytester.path, model=model_at(server), cases=make_cases(2), gate=GATE)
    result = pytester.runpytest_subprocess("--evalgate", "--evalgate-cache=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--evalgate-cache" in result.stderr.str()
    monkeypatch.setenv("EVALGATE_CACHE", "sometimes")
    result = pytester.runpytest_subprocess("--evalgate")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "EVALGATE_CACHE='sometimes'" in result.stderr.str()
    assert server.stats.total == 0


def test_journal_tolerates_a_torn_line_and_is_rewritten_whole(tmp_path: Path) -> None:
    path = tmp_path / "j" / "run.jsonl"
    records = [Record(key=f"s/c{i}", set="s", case_id=f"c{i}", ok=True, text=f"answer {i}")
               for i in range(3)]
    journal = Journal(path, "k1")
    for record in records:
        journal.append(record)
    journal.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with path.open("ab") as f:
        f.write(records[0].model_dump_json().encode()[:25])
    got, torn = read_journal(path, "k1")
    assert [r.text for r in got] == ["answer 0", "answer 1", "answer 2"] and torn == 1
    assert read_journal(path, "another-run") == ([], 0)  # never mixes runs
    Journal(path, "k1", got).close()  # resumed: rewritten whole before new lines
    assert read_journal(path, "k1") == (got, 0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_live_baseline_is_cached_and_resumed_per_config(tmp_path: Path,
                                                          server: SimServer) -> None:
    """Both configs of a job go through the journal and the cache, each under its own key."""
    import yaml

    from evalgate.gate.baseline import resolve

    root = write_project(tmp_path, model=model_at(server, "cand", hallucination_rate=0.3),
                         cases=make_cases(8), gate=GATE)
    (root / "models" / "base.yaml").write_text(yaml.safe_dump(model_at(server, "base")))

    def run(cache: str) -> Any:
        project = load_project(root)
        return run_project(project, baseline=resolve("models/base.yaml", project.gate),
                           cache=cache)

    first = run("on")
    assert server.stats.models == {"cand": 8, "base": 8}
    server.stats.reset()
    second = run("on")
    assert server.stats.total == 0 and second.calls_from_cache == 16
    assert [r.text for r in second.baseline_records] == [r.text for r in first.baseline_records]
    assert [r.text for r in second.records] == [r.text for r in first.records]
    assert any(r.text != b.text for r, b in zip(second.records, second.baseline_records,
                                                strict=True))  # two configs, two entries


def test_a_partial_result_never_passes_in_compare_or_merge(tmp_path: Path,
                                                           server: SimServer) -> None:
    from evalgate.gate.compare import compare_results
    from evalgate.pipeline.merge import merge_results

    off = dict.fromkeys(("hallucination_rate", "pass_rate", "error_rate", "cost_ratio",
                         "latency_ratio", "p95_ratio"))
    gate = {**GATE, "gate": {**GATE["gate"], "vs_baseline": off}}  # type: ignore[dict-item]
    root = write_project(tmp_path, model=model_at(server, "parts"), cases=make_cases(10),
                         gate=gate)
    whole = run_project(load_project(root))
    assert whole.verdict == "PASS" and not whole.partial
    partial = whole.model_copy(update={"partial": True, "shard": "1/1"})
    assert compare_results(whole, whole).verdict == "PASS"
    compared = compare_results(whole, partial)
    assert compared.verdict == "INCONCLUSIVE" and compared.partial
    merged = merge_results([partial])
    assert merged.verdict == "INCONCLUSIVE" and merged.partial


def test_an_unusable_cache_or_journal_costs_calls_not_the_run(tmp_path: Path,
                                                              server: SimServer) -> None:
    # 5 canaries: 3 of 3 passing is no proof of a 40% floor under the exact bound (issue 17)
    root = write_project(tmp_path, model=model_at(server, "nocache"), cases=make_cases(5),
                         gate=GATE)
    (root / STATE_DIR).mkdir()
    for name in (CACHE_DIR, JOURNAL_DIR):
        (root / STATE_DIR / name).write_text("a file where a directory should be")
    result = run_project(load_project(root), cache="on")
    assert server.stats.total == 5 and result.verdict == "PASS"
    assert any("response cache (.evalgate/cache) could not be used" in w
               for w in result.warnings)
    assert any("run journal (.evalgate/journal) could not be written" in w
               for w in result.warnings)


def test_a_fallback_answer_is_never_cached(tmp_path: Path) -> None:
    """Also not when it comes back from a resumed journal: the cache would replay it later as
    the primary's answer, at the primary's price, with no fallback warning."""
    cache = ResponseCache(tmp_path / "cache", "on")
    primary = Record(key="s/a", set="s", case_id="a", ok=True, text="from primary")
    backup = Record(key="s/b", set="s", case_id="b", ok=True, text="from backup",
                    answered_by="backup")
    cache.put("k-primary", primary)
    cache.put("k-backup", backup)
    cache.close()
    again = ResponseCache(tmp_path / "cache", "read")
    assert again.get("k-primary") is not None and again.get("k-backup") is None
    again.close()


def test_ctrl_c_while_grading_keeps_the_journal_for_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal outlives the calls: a Ctrl-C after them (grading, the judge, the load
    profile) loses no answer, and a resume makes no call at all."""
    import evalgate.pipeline.run as run_mod

    root = write_project(tmp_path, model=sim_model(latency_ms=1), cases=make_cases(6),
                         gate=GATE)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(run_mod, "grading_phase", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_project(load_project(root))
    assert len(journal_files(root)) == 1
    resumed = run_project(load_project(root), resume=True)
    assert resumed.calls_from_journal == 6 and resumed.calls_made == 0
    assert resumed.verdict == "PASS" and not journal_files(root)  # finished: removed


def evalgate_cli(*args: str, cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "evalgate.cli", *args], cwd=cwd,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_cache_can_be_inspected_pruned_by_age_and_cleared(
        tmp_path: Path, server: SimServer) -> None:
    """`evalgate cache`: nothing else ever removes an answer, and a model name re-pointed
    upstream keeps its old answers, so age-based pruning and clearing are the user's tools."""
    import sqlite3

    model = model_at(server, "prunable", latency_ms=1)
    write_project(tmp_path, model=model, cases=make_cases(6), gate=GATE)
    assert "no response cache under" in evalgate_cli("cache", cwd=tmp_path)
    run_project(load_project(tmp_path), cache="on")
    assert server.stats.total == 6
    assert ": 6 answer(s)," in evalgate_cli("cache", str(tmp_path), cwd=tmp_path.parent)
    # Two answers measured 30 days ago (as a month-old cache would have them).
    db = sqlite3.connect(tmp_path / ".evalgate" / "cache" / "responses.sqlite3")
    keys = [k for (k,) in db.execute("SELECT key FROM answers ORDER BY key LIMIT 2")]
    db.executemany("UPDATE answers SET measured_at = '2026-01-01T00:00:00+00:00' "
                   "WHERE key = ?", [(k,) for k in keys])
    db.commit()
    db.close()
    out = evalgate_cli("cache", "--prune-older-than", "7", cwd=tmp_path)
    assert "removed 2 cached answer(s) measured more than 7 day(s) ago" in out
    assert ": 4 answer(s)," in out
    server.stats.reset()
    run_project(load_project(tmp_path), cache="on")
    assert server.stats.total == 2  # only the pruned answers were asked for again
    out = evalgate_cli("cache", "--clear", cwd=tmp_path)
    assert "removed 6 cached answer(s)" in out and ": 0 answer(s)," in out
    for path in (tmp_path / ".evalgate" / "cache").iterdir():  # still private after VACUUM
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # A file that is not a cache: a clear error and exit 4, never a traceback.
    (tmp_path / ".evalgate" / "cache" / "responses.sqlite3").write_bytes(b"not sqlite" * 100)
    broken = subprocess.run([sys.executable, "-m", "evalgate.cli", "cache", "--clear"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 4 and "not a usable cache" in broken.stderr
    assert "Traceback" not in broken.stderr
    server.stats.reset()
    run_project(load_project(tmp_path), cache="on")
    assert server.stats.total == 6
