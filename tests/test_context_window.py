"""The context window at the edge, against the simulator over real HTTP: canaries whose
prompt plus max_output_tokens overflow the candidate's window make no call and are errors,
or go to the long_context model; the count comes from the estimate, corrected by cached
answers' reported tokens, or from a local tokenizer file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalgate.errors import ConfigError
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.sim import SimCase, SimServer
from tests.conftest import make_cases, write_project

LONG = {"id": "long", "prompt": "Summarise this policy: " + "refunds take ten days. " * 30,
        "expected": {"facts": ["ten days"], "forbidden": []}}


def model_at(sim: SimServer, name: str = "m", **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "base_url": f"{sim.base_url}/v1", "model": name,
            "timeout_s": 5, "max_retries": 0, **extra}


def calls_made(sim: SimServer) -> int:
    return int(sim.stats.snapshot()["routes"].get("/v1/chat/completions", 0))


def test_overflowing_canaries_make_no_call_and_are_errors(tmp_path: Path,
                                                          sim_server: SimServer) -> None:
    sim_server.add_profile("m", {"latency_ms": 0})
    write_project(tmp_path, model=model_at(sim_server, context_window=150,
                                           max_output_tokens=20),
                  cases=[*make_cases(3), LONG], gate={"samples": 2})
    result = run_project(load_project(tmp_path))
    assert calls_made(sim_server) == 3 * 2  # the long canary's two samples made no call
    long = [r for r in result.records if r.case_id == "long"]
    assert len(long) == 2 and all(not r.ok and r.error_class == "context_overflow"
                                  and not r.attempts for r in long)
    assert "over candidate's context window of 150" in (long[0].error_message or "")
    verdict = next(v for v in result.verdicts if v.guardrail == "context_window")
    assert verdict.verdict == "FAIL" and verdict.value == 1
    assert verdict.reason.startswith("1 canaries exceed the candidate's window")
    assert result.metrics["error_rate"] == pytest.approx(1 / 4)  # it counts in error_rate


def test_overflowing_canaries_go_to_the_long_context_model(tmp_path: Path,
                                                           sim_server: SimServer) -> None:
    sim_server.add_profile("m", {"latency_ms": 0, "context_window": 150})
    sim_server.add_profile("m-long", {"latency_ms": 0})
    sim_server.add_cases([SimCase("set/long", LONG["prompt"], facts=("ten days",))])
    write_project(tmp_path, model=model_at(sim_server, context_window=150,
                                           max_output_tokens=20, long_context="long.yaml"),
                  cases=[*make_cases(3), LONG])
    (tmp_path / "models" / "long.yaml").write_text(yaml.safe_dump(model_at(sim_server,
                                                                           "m-long")))
    result = run_project(load_project(tmp_path))
    routes = {r.case_id: (r.route, r.model, r.ok) for r in result.records}
    assert routes["long"] == ("long_context", "long", True)
    assert all(routes[f"c{i}"] == ("default", "candidate", True) for i in range(3))
    by_route = {r.route: r for r in result.routes}
    assert by_route["long_context"].calls == 1 and by_route["default"].calls == 3
    verdict = next(v for v in result.verdicts if v.guardrail == "context_window")
    assert verdict.verdict == "PASS" and "sent to long" in verdict.reason
    stats = sim_server.stats.snapshot()
    assert stats["routes"]["/v1/chat/completions"] == 4
    assert stats["outcomes"]["ok"] == 4 and stats["outcomes"]["context_length"] == 0


def test_cached_answers_correct_the_estimate(tmp_path: Path, sim_server: SimServer) -> None:
    # the server counts 2 characters a token: twice the 4-characters-a-token estimate
    sim_server.add_profile("m", {"latency_ms": 0, "chars_per_token": 2.0})
    prompt_tokens = -(-len(LONG["prompt"]) // 4)
    write_project(tmp_path, model=model_at(sim_server), cases=[*make_cases(2), LONG])
    run_project(load_project(tmp_path), cache="on")  # fills the cache, no window yet
    before = calls_made(sim_server)
    window = prompt_tokens + 40  # fits by the estimate, not by the corrected count
    (tmp_path / "models" / "candidate.yaml").write_text(yaml.safe_dump(model_at(
        sim_server, context_window=window, max_output_tokens=10)))
    result = run_project(load_project(tmp_path), cache="read")
    [long] = [r for r in result.records if r.case_id == "long"]
    assert long.error_class == "context_overflow", long
    assert "cached answers" in (long.error_message or "")
    assert calls_made(sim_server) == before  # every other answer came from the cache


def _word_tokenizer(path: Path) -> Path:
    """A word-level tokenizer.json made here (nothing from a hub): one token per word."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = tokenizers.Tokenizer(WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(path))
    return path


def test_a_local_tokenizer_counts_exactly(tmp_path: Path, sim_server: SimServer) -> None:
    sim_server.add_profile("m", {"latency_ms": 0})
    (tmp_path / "models").mkdir()
    _word_tokenizer(tmp_path / "models" / "tok.json")
    words = {"id": "words", "prompt": " ".join(["a"] * 60),  # 119 chars: 30 by the estimate
             "expected": {"facts": [], "forbidden": []}}
    write_project(tmp_path, model=model_at(sim_server, context_window=50, max_output_tokens=5,
                                           tokenizer="tok.json"), cases=[*make_cases(2), words])
    result = run_project(load_project(tmp_path))
    [record] = [r for r in result.records if r.case_id == "words"]
    assert record.error_class == "context_overflow" and record.input_tokens == 60
    assert "tokenizer" in (record.error_message or "")
    assert calls_made(sim_server) == 2


def test_a_tokenizer_that_does_not_load_is_a_usage_error(tmp_path: Path) -> None:
    write_project(tmp_path, model={"provider": "sim", "model": "m", "context_window": 100,
                                   "tokenizer": "tok.json"})
    (tmp_path / "models" / "tok.json").write_text("{not a tokenizer")
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path)
    text = str(err.value)
    assert "models/candidate.yaml:" in text and "tokenizer" in text and "does not load" in text
    line = next(i for i, t in enumerate((tmp_path / "models" / "candidate.yaml").read_text()
                                        .splitlines(), 1) if t.startswith("tokenizer:"))
    assert f"models/candidate.yaml:{line}: tokenizer:" in text


def test_tokenizer_without_the_package_is_a_clear_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if not installed
    write_project(tmp_path, model={"provider": "sim", "model": "m", "context_window": 100,
                                   "tokenizer": "tok.json"})
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path)
    assert "needs the 'tokenizers' package" in str(err.value)
    assert "models/candidate.yaml:" in str(err.value)


def test_the_gate_item_fails_pytest_when_canaries_overflow(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import sim_model

    write_project(tmp_path, model={**sim_model(), "context_window": 150,
                                   "max_output_tokens": 20}, cases=[*make_cases(3), LONG])
    out = subprocess.run([sys.executable, "-m", "pytest", "--evalgate", "-p", "no:cacheprovider",
                          "-q", "-rf"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert "FAILED evalgate::gate[context_window]" in out.stdout
    assert "1 canaries exceed the candidate's window" in out.stdout
