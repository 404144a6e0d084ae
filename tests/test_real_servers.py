"""The gate against servers it did not write: llama.cpp serving SmolLM2-135M-Instruct, and a
LiteLLM proxy (mock models, error mocks, and a gateway to the llama.cpp server). Marked
`real_server`: `pytest -m "not real_server"` skips them; CI runs them (`.ci/run` installs
both servers). One server of each kind per test session, started and stopped here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.results import RunResult
from tests.conftest import write_project
from tests.real_servers import MASTER_KEY, N_CTX, Server, litellm_proxy, llama_server

pytestmark = [pytest.mark.real_server, pytest.mark.xdist_group("real_servers")]

KEY_ENV = "EVALGATE_TEST_PROXY_KEY"

# Short questions with a one-word answer a 135M model often knows; the rubric is lenient:
# these tests check what the server sends and how evalgate reads it, not the model.
QUESTIONS = [
    ("capital of France", "Paris"), ("capital of Italy", "Rome"),
    ("capital of Japan", "Tokyo"), ("capital of Spain", "Madrid"),
    ("capital of Germany", "Berlin"), ("color of the sky on a clear day", "blue"),
    ("color of grass", "green"), ("opposite of hot", "cold"), ("opposite of up", "down"),
    ("number after one", "two"), ("first month of the year", "January"),
    ("largest ocean on Earth", "Pacific"), ("planet we live on", "Earth"),
    ("animal that says meow", "cat"), ("animal that barks", "dog"),
    ("day after Monday", "Tuesday"), ("color of snow", "white"),
    ("star at the center of our solar system", "Sun"), ("frozen water", "ice"),
    ("opposite of yes", "no"),
]
LENIENT = {"criteria": [{"id": "answers", "check": "regex", "pattern": r"\w"}]}


def cases(n: int = len(QUESTIONS)) -> list[dict[str, Any]]:
    return [{"id": f"q{i}", "prompt": f"In one word, what is the {q}?",
             "expected": {"facts": [a], "forbidden": []}}
            for i, (q, a) in enumerate(QUESTIONS[:n])]


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with llama_server(tmp_path_factory.mktemp("llama")) as server:
        yield server


@pytest.fixture(scope="session")
def proxy(tmp_path_factory: pytest.TempPathFactory, llama: Server) -> Iterator[Server]:
    with litellm_proxy(tmp_path_factory.mktemp("litellm"), llama.base_url) as server:
        yield server


@pytest.fixture
def proxy_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, MASTER_KEY)
    return KEY_ENV


def run(tmp_path: Path, model: dict[str, Any], case_list: list[dict[str, Any]],
        **gate: Any) -> RunResult:
    write_project(tmp_path, model={"timeout_s": 60, "max_retries": 1, **model},
                  cases=case_list, rubric=LENIENT, gate={"concurrency": 4, **gate})
    return run_project(load_project(tmp_path))


def smollm2(llama: Server, **params: Any) -> dict[str, Any]:
    """A short system prompt (the chat template's default one is 30 tokens) and few output
    tokens: with --n_batch 1 every token is a step, and the cores are shared."""
    return {"provider": "openai", "base_url": llama.base_url, "model": "smollm2",
            "max_concurrency": 1,  # llama.cpp's server answers one request at a time
            "system_prompt": "Answer briefly.",
            "params": {"temperature": 0, "max_tokens": 8, "seed": 1, **params}}


def test_llama_cpp_gate_run_is_real_text_with_usage_and_deterministic(
        tmp_path: Path, llama: Server) -> None:
    result = run(tmp_path, smollm2(llama), cases(),
                 determinism={"canaries": {"count": 3}, "repeats": 2, "agreement": "exact"})
    records = result.records
    # answered, or cut off at max_tokens (its text kept): nothing else goes wrong
    assert len(records) == 20 and all(r.ok or r.error_class == "max_tokens" for r in records)
    assert sum(r.ok for r in records) >= 5, [r.text for r in records]
    assert all(not r.usage_estimated and r.input_tokens and 0 < (r.output_tokens or 0) <= 8
               for r in records)
    assert len({r.text for r in records}) >= 10  # real model text, one per question
    assert "paris" in (records[0].text or "").lower()
    assert result.determinism is not None
    assert result.determinism.candidate.exact_agreement == 1.0  # temperature 0
    assert not [w for w in result.warnings if "max_concurrency" in w]


def test_llama_cpp_context_overflow_and_length(tmp_path: Path, llama: Server) -> None:
    long = [{"id": "long", "prompt": "word " * (N_CTX + 100),
             "expected": {"facts": [], "forbidden": []}}]
    [overflow] = run(tmp_path / "overflow", smollm2(llama), long).records
    assert (overflow.error_class, overflow.retryable) == ("context_length", False)
    assert "maximum context length" in (overflow.error_message or "")
    [cut] = run(tmp_path / "cut", smollm2(llama, max_tokens=2), cases(1)).records
    assert (cut.error_class, cut.finish_reason, cut.output_tokens) == ("max_tokens", "length", 2)
    assert cut.text  # the cut-off text is kept for reading


def test_litellm_openai_route_and_its_cost_header(tmp_path: Path, proxy: Server,
                                                  proxy_key: str) -> None:
    model = {"provider": "openai", "base_url": proxy.base_url, "model": "mock-gpt",
             "api_key_env": proxy_key,
             "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.60,  # gpt-4o-mini's
                         "from_header": "x-litellm-response-cost"}}
    result = run(tmp_path / "agree", model, cases(4))
    assert all(r.ok and r.text == "Answer: 0 days." for r in result.records)
    assert {r.cost_source for r in result.records} == {"header"}
    assert all(r.cost_usd == pytest.approx(r.table_cost_usd) for r in result.records)
    assert not [w for w in result.warnings if "cost header" in w]
    wrong = {**model, "pricing": {**model["pricing"], "output_per_mtok": 6.0}}
    result = run(tmp_path / "differ", wrong, cases(4))
    [warning] = [w for w in result.warnings if "cost header" in w]
    assert "the header's price is used" in warning


@pytest.mark.parametrize(("mock", "error_class", "attempts"), [
    ("mock-429", "rate_limited", 2), ("mock-500", "server_error", 2),
    ("mock-timeout", "timeout", 2), ("mock-context", "context_length", 1),
    ("mock-filter", "content_filter", 1)])
def test_litellm_error_mappings(tmp_path: Path, proxy: Server, proxy_key: str, mock: str,
                                error_class: str, attempts: int) -> None:
    model = {"provider": "openai", "base_url": proxy.base_url, "model": mock,
             "api_key_env": proxy_key}
    [record] = run(tmp_path, model, cases(1)).records
    assert (record.error_class, len(record.attempts)) == (error_class, attempts)
    assert "litellm" in (record.error_message or "").lower()


def test_litellm_anthropic_messages_route(tmp_path: Path, proxy: Server,
                                          proxy_key: str) -> None:
    model = {"provider": "anthropic", "base_url": proxy.base_url, "model": "mock-claude",
             "api_key_env": proxy_key}
    records = run(tmp_path, model, cases(2)).records
    assert all(r.ok and r.text == "Answer: 0 days." and r.finish_reason == "end_turn"
               and r.input_tokens for r in records)


def test_litellm_bad_key_shows_its_own_text(tmp_path: Path, proxy: Server,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-not-the-proxy-key")
    model = {"provider": "openai", "base_url": proxy.base_url, "model": "mock-gpt",
             "api_key_env": KEY_ENV}
    [record] = run(tmp_path, model, cases(1)).records
    assert record.error_class == "bad_request" and len(record.attempts) == 1
    assert "No connected db." in (record.error_message or "")


def test_litellm_as_a_gateway_to_llama_cpp(tmp_path: Path, proxy: Server,
                                           proxy_key: str) -> None:
    model = {"provider": "openai", "base_url": proxy.base_url, "model": "smollm2-gateway",
             "api_key_env": proxy_key, "max_concurrency": 1,
             "params": {"temperature": 0, "max_tokens": 24}}
    records = run(tmp_path, model, cases(2)).records
    assert any(r.ok for r in records), [r.error_message for r in records]
    assert all(r.input_tokens and not r.usage_estimated for r in records if r.ok)
    assert "paris" in (records[0].text or "").lower()
