"""Tests for the local LLM simulator, over real HTTP on 127.0.0.1 (no mocking).

The simulator is the test double for every wire-facing part of evalgate, so these tests pin
down the wire shapes, the fault injection and - above all - determinism.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pydantic
import pytest

from evalgate.sim import SimCase, SimProfile, SimServer

REFUND = SimCase(
    key="support/refund-window",
    prompt="What is the refund window?",
    facts=("Refunds are accepted within 30 days",),
    forbidden=("Refunds are accepted within 90 days", "Refunds are never accepted"),
)
SPIDER = SimCase(key="bio/spider", prompt="How many legs does a spider have?", facts=("8 legs",))
CAPITAL = SimCase(
    key="geo/capital", prompt="What is the capital of France?", facts=("Paris", "on the Seine")
)
HELLO = SimCase(key="chat/hello", prompt="Say hello", reference="Hello there!")
CASES = [REFUND, SPIDER, CAPITAL, HELLO]

PROFILES = {
    "good": SimProfile(latency_ms=0, seed=1),
    "liar": SimProfile(latency_ms=0, hallucination_rate=1.0),
    "h30": SimProfile(latency_ms=0, hallucination_rate=0.3, seed=7),
    "r429": SimProfile(latency_ms=0, error_429_rate=1.0, retry_after_s=2.0),
    "r429half": SimProfile(latency_ms=0, error_429_rate=1.0, retry_after_s=0.5),
    "r429none": SimProfile(latency_ms=0, error_429_rate=1.0, retry_after_s=None),
    "e500": SimProfile(latency_ms=0, error_500_rate=1.0),
    "flaky": SimProfile(latency_ms=0, error_500_rate=0.5, hallucination_rate=0.5, seed=3),
    "tiny": SimProfile(latency_ms=0, context_window=10),
    "broken": SimProfile(latency_ms=0, malformed_rate=1.0),
    "stall": SimProfile(latency_ms=0, timeout_rate=1.0, stall_s=0.5),
    "slow": SimProfile(latency_ms=50),
    "quiet": SimProfile(latency_ms=0, report_usage=False),
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    """One shared server: starting a thread per test would dominate the runtime."""
    with SimServer(PROFILES, CASES) as server:
        yield server


@pytest.fixture()
def client(sim: SimServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=5.0) as c:
        yield c


def chat(
    client: httpx.Client, model: str, text: str, sample: str | None = None, **params: Any
) -> httpx.Response:
    headers = {"X-Evalgate-Sample": sample} if sample is not None else {}
    body = {"model": model, "messages": [{"role": "user", "content": text}], **params}
    return client.post("/v1/chat/completions", json=body, headers=headers)


def answer_of(resp: httpx.Response) -> str:
    return str(resp.json()["choices"][0]["message"]["content"])


def toks(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


# ---------------------------------------------------------------------------- routes


def test_openai_success_shape_usage_and_fact_answer(client: httpx.Client) -> None:
    resp = chat(client, "good", REFUND.prompt)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert int(resp.headers["content-length"]) == len(resp.content)
    data = resp.json()
    assert data["id"].startswith("chatcmpl-sim-")
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "good"
    (choice,) = data["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Answer: Refunds are accepted within 30 days.",
    }
    assert data["usage"] == {
        "prompt_tokens": toks(REFUND.prompt),
        "completion_tokens": toks("Answer: Refunds are accepted within 30 days."),
        "total_tokens": toks(REFUND.prompt) + toks("Answer: Refunds are accepted within 30 days."),
    }


def test_reference_answer_and_no_usage(client: httpx.Client) -> None:
    assert answer_of(chat(client, "good", HELLO.prompt)) == "Hello there!"
    quiet = chat(client, "quiet", HELLO.prompt).json()
    assert "usage" not in quiet
    assert quiet["choices"][0]["message"]["content"] == "Hello there!"


def test_anthropic_messages_shape(client: httpx.Client) -> None:
    body = {
        "model": "good",
        "max_tokens": 256,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": CAPITAL.prompt}]}],
    }
    resp = client.post("/v1/messages", json=body)
    assert resp.status_code == 200
    data = resp.json()
    assert data["id"].startswith("msg_sim_")
    assert data["type"] == "message"
    assert data["role"] == "assistant"
    assert data["model"] == "good"
    assert data["content"] == [{"type": "text", "text": "Answer: Paris; on the Seine."}]
    assert data["stop_reason"] == "end_turn"
    # The system prompt counts towards input tokens.
    assert data["usage"]["input_tokens"] == toks("You are terse.\n" + CAPITAL.prompt)
    assert data["usage"]["output_tokens"] == toks("Answer: Paris; on the Seine.")


def test_generate_shape(client: httpx.Client) -> None:
    resp = client.post("/generate", json={"prompt": HELLO.prompt, "model": "good"})
    assert resp.status_code == 200
    assert resp.json() == {
        "output": {"text": "Hello there!"},
        "usage": {"in": toks(HELLO.prompt), "out": toks("Hello there!")},
    }


def test_case_lookup_header_substring_and_unknown(client: httpx.Client) -> None:
    # A prompt template around the canary still finds it (longest contained prompt wins).
    templated = f"Context: be nice.\nQuestion: {SPIDER.prompt}\nAnswer briefly."
    assert answer_of(chat(client, "good", templated)) == "Answer: 8 legs."
    by_header = client.post(
        "/v1/chat/completions",
        json={"model": "good", "messages": [{"role": "user", "content": "totally different"}]},
        headers={"X-Evalgate-Case": HELLO.key},
    )
    assert answer_of(by_header) == "Hello there!"
    assert answer_of(chat(client, "good", "What is the meaning of life?")) == "I don't know."
    assert answer_of(chat(client, "liar", "What is the meaning of life?")) == "The answer is 42."


def test_health_stats_and_unknown_path(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    snap = client.get("/stats").json()
    assert {"total", "routes", "models", "outcomes", "connections"} <= set(snap)
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert "error" in missing.json()
    assert client.get("/v1/chat/completions").status_code == 405


def test_bad_requests_are_400(client: httpx.Client) -> None:
    not_json = client.post(
        "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"
    no_messages = client.post("/v1/chat/completions", json={"model": "good"})
    assert no_messages.status_code == 400
    anthropic = client.post("/v1/messages", json={"model": "good", "max_tokens": 5})
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "invalid_request_error"
    assert client.post("/generate", json={"model": "good"}).status_code == 400


# ---------------------------------------------------------------------------- hallucination


def test_hallucination_rate_one_states_forbidden_and_zero_never(client: httpx.Client) -> None:
    for i in range(20):
        lie = answer_of(chat(client, "liar", REFUND.prompt, sample=str(i)))
        assert any(f in lie for f in REFUND.forbidden)
        assert REFUND.facts[0] not in lie
        truth = answer_of(chat(client, "good", REFUND.prompt, sample=str(i)))
        assert truth == "Answer: Refunds are accepted within 30 days."
        assert not any(f in truth for f in REFUND.forbidden)


def test_hallucinated_wrong_facts_change_numbers_or_add_a_claim(client: httpx.Client) -> None:
    for i in range(20):
        wrong = answer_of(chat(client, "liar", SPIDER.prompt, sample=str(i)))
        assert "8 legs" not in wrong
        assert wrong.startswith("Answer: ") and wrong.endswith(" legs.")
        assert any(ch.isdigit() for ch in wrong)
    geneva = answer_of(chat(client, "liar", CAPITAL.prompt))
    assert geneva == "Answer: Paris; on the Seine. This was confirmed by the 2019 Geneva accord."
    # A reference with no facts or numbers also gets the invented claim appended.
    assert "Geneva accord" in answer_of(chat(client, "liar", HELLO.prompt))


def test_hallucination_is_deterministic_per_sample_and_rate_is_about_right(
    client: httpx.Client,
) -> None:
    def lied(sample: str) -> bool:
        return answer_of(chat(client, "h30", REFUND.prompt, sample=sample)) != (
            "Answer: Refunds are accepted within 30 days."
        )

    draws = [lied(str(i)) for i in range(400)]
    # Same sample id -> same decision, however often it is asked (retries, reruns).
    assert [lied(str(i)) for i in range(40)] == draws[:40]
    # 400 Bernoulli(0.3) draws: mean 120, sd ~9.2; 4 sd either side.
    assert 83 <= sum(draws) <= 157
    # The body's `seed` param is the sample id when no header is given.
    by_seed = chat(client, "h30", REFUND.prompt, seed=5)
    assert answer_of(by_seed) == answer_of(chat(client, "h30", REFUND.prompt, sample="5"))


def test_same_seed_gives_same_answers_on_a_fresh_server(sim: SimServer) -> None:
    """Determinism across runs: a new server with the same profile answers identically."""
    with SimServer({"h30": PROFILES["h30"]}, CASES) as other:
        for base in (sim.base_url, other.base_url):
            assert base.startswith("http://127.0.0.1:")
        with httpx.Client() as c:
            for i in range(30):
                body = {"model": "h30", "messages": [{"role": "user", "content": SPIDER.prompt}]}
                hdr = {"X-Evalgate-Sample": str(i)}
                a = c.post(f"{sim.base_url}/v1/chat/completions", json=body, headers=hdr)
                b = c.post(f"{other.base_url}/v1/chat/completions", json=body, headers=hdr)
                assert answer_of(a) == answer_of(b)


def test_retries_draw_fresh_faults_but_keep_the_answer(client: httpx.Client) -> None:
    statuses: list[int] = []
    answers: set[str] = set()
    for _ in range(40):
        resp = chat(client, "flaky", SPIDER.prompt, sample="retry-me")
        statuses.append(resp.status_code)
        if resp.status_code == 200:
            answers.add(answer_of(resp))
    assert 200 in statuses and 500 in statuses
    assert len(answers) == 1


# ---------------------------------------------------------------------------- faults


def test_429_with_retry_after(client: httpx.Client) -> None:
    resp = chat(client, "r429", REFUND.prompt)
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "2"
    assert resp.json() == {
        "error": {
            "message": "Rate limit reached (simulated)",
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
        }
    }
    assert chat(client, "r429half", REFUND.prompt).headers["retry-after"] == "0.5"
    assert "retry-after" not in chat(client, "r429none", REFUND.prompt).headers
    anth = client.post(
        "/v1/messages",
        json={"model": "r429", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]},
    )
    assert anth.status_code == 429 and anth.headers["retry-after"] == "2"
    assert anth.json()["error"]["type"] == "rate_limit_error"
    gen = client.post("/generate", json={"model": "r429", "prompt": "x"})
    assert gen.status_code == 429 and isinstance(gen.json()["error"], str)


def test_500(client: httpx.Client) -> None:
    resp = chat(client, "e500", REFUND.prompt)
    assert resp.status_code == 500
    assert resp.json() == {"error": {"message": "simulated server error", "type": "server_error"}}
    anth = client.post(
        "/v1/messages",
        json={"model": "e500", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]},
    )
    assert anth.status_code == 500
    assert anth.json()["type"] == "error" and anth.json()["error"]["type"] == "api_error"


def test_context_length_400(client: httpx.Client) -> None:
    long = "word " * 20  # 100 chars -> 25 tokens > 10
    resp = chat(client, "tiny", long)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "context_length_exceeded"
    assert err["type"] == "invalid_request_error"
    assert err["message"].startswith("This model's maximum context length is 10 tokens")
    anth = client.post(
        "/v1/messages",
        json={"model": "tiny", "max_tokens": 9, "messages": [{"role": "user", "content": long}]},
    )
    assert anth.status_code == 400
    assert "prompt is too long" in anth.json()["error"]["message"]
    assert chat(client, "tiny", "short").status_code == 200


def test_malformed_body_is_invalid_json(client: httpx.Client) -> None:
    resp = chat(client, "broken", REFUND.prompt)
    assert resp.status_code == 200
    assert int(resp.headers["content-length"]) == len(resp.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.content)


def test_timeout_stall_makes_the_client_time_out(sim: SimServer) -> None:
    with httpx.Client(base_url=sim.base_url, timeout=0.1) as c, pytest.raises(httpx.ReadTimeout):
        chat(c, "stall", REFUND.prompt)


def test_stalled_request_eventually_answers(sim: SimServer) -> None:
    with httpx.Client(base_url=sim.base_url, timeout=5.0) as c:
        t0 = time.perf_counter()
        resp = chat(c, "stall", REFUND.prompt, sample="patient")
        assert time.perf_counter() - t0 >= 0.5
        assert resp.status_code == 200


def test_unknown_model_404_vs_default_profile(client: httpx.Client) -> None:
    resp = chat(client, "gpt-nope", REFUND.prompt)
    assert resp.status_code == 404
    assert resp.json() == {
        "error": {
            "message": "model 'gpt-nope' not found",
            "type": "invalid_request_error",
            "code": "model_not_found",
        }
    }
    fallback = SimServer(cases=CASES, default_profile=SimProfile(latency_ms=0))
    with fallback, httpx.Client(base_url=fallback.base_url) as c:
        ok = chat(c, "gpt-nope", REFUND.prompt)
        assert ok.status_code == 200
        assert answer_of(ok) == "Answer: Refunds are accepted within 30 days."
        # /generate without a model also falls back to the default profile.
        gen = c.post("/generate", json={"prompt": HELLO.prompt})
        assert gen.json()["output"]["text"] == "Hello there!"


def test_max_tokens_truncates_with_finish_reason_length(client: httpx.Client) -> None:
    resp = chat(client, "good", REFUND.prompt, max_tokens=3)
    data = resp.json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] <= 3
    assert "Answer: Refunds are accepted within 30 days.".startswith(answer_of(resp))
    newer = chat(client, "good", REFUND.prompt, max_completion_tokens=2).json()
    assert newer["choices"][0]["finish_reason"] == "length"
    roomy = chat(client, "good", REFUND.prompt, max_tokens=500).json()
    assert roomy["choices"][0]["finish_reason"] == "stop"
    anth = client.post(
        "/v1/messages",
        json={
            "model": "good",
            "max_tokens": 2,
            "messages": [{"role": "user", "content": REFUND.prompt}],
        },
    ).json()
    assert anth["stop_reason"] == "max_tokens"
    assert anth["usage"]["output_tokens"] <= 2


# ---------------------------------------------------------------------------- HTTP


def test_keep_alive_64_concurrent_requests() -> None:
    async def run(base: str) -> list[int]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64,
                              keepalive_expiry=60)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as c:
            codes: list[int] = []
            for _ in range(3):
                responses = await asyncio.gather(
                    *(
                        c.post(
                            "/v1/chat/completions",
                            json={
                                "model": "good",
                                "messages": [{"role": "user", "content": f"q{i}"}],
                            },
                        )
                        for i in range(64)
                    )
                )
                codes.extend(r.status_code for r in responses)
            return codes

    with SimServer({"good": SimProfile(latency_ms=5)}) as server:
        codes = asyncio.run(run(server.base_url))
        assert codes == [200] * 192
        # Without keep-alive 192 requests need 192 connections. httpcore's pool may replace
        # a connection now and then under CPU load (seen: 84-90), so the bound is "mostly
        # reused", not exactly 64.
        assert server.stats.connections <= 96


def test_fixed_latency_is_honoured() -> None:
    async def run(base: str) -> list[float]:
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:

            async def one(i: int) -> float:
                t0 = time.perf_counter()
                r = await c.post("/generate", json={"model": "slow", "prompt": f"p{i}"})
                assert r.status_code == 200
                return time.perf_counter() - t0

            return list(await asyncio.gather(*(one(i) for i in range(32))))

    with SimServer({"slow": PROFILES["slow"]}) as server:
        durations = asyncio.run(run(server.base_url))
    assert min(durations) >= 0.050


def test_connection_close_pipelining_and_100_continue(sim: SimServer) -> None:
    body = json.dumps({"model": "good", "prompt": HELLO.prompt}).encode()
    req = (
        b"POST /generate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as s:
        # Two pipelined requests in one write, the second asking to close.
        s.sendall(req + req.replace(b"host: x\r\n", b"host: x\r\nconnection: close\r\n"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.count(b"Hello there!") == 2
    assert b"connection: close" in data.lower()

    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as s:
        head = req.split(b"\r\n\r\n")[0] + b"\r\nexpect: 100-continue\r\n\r\n"
        s.sendall(head)
        assert s.recv(1024).startswith(b"HTTP/1.1 100")
        s.sendall(body)
        assert b"Hello there!" in s.recv(65536)


def test_http10_client_gets_connection_closed(sim: SimServer) -> None:
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert data.endswith(b'{"status":"ok"}')


# ---------------------------------------------------------------------------- stats, lifecycle


def test_stats_counts_and_reset() -> None:
    profiles = {"good": PROFILES["good"], "e500": PROFILES["e500"], "r429": PROFILES["r429"]}
    with SimServer(profiles, CASES) as server, httpx.Client(base_url=server.base_url) as c:
        for _ in range(3):
            chat(c, "good", REFUND.prompt)
        chat(c, "e500", REFUND.prompt)
        chat(c, "r429", REFUND.prompt)
        chat(c, "missing", REFUND.prompt)
        c.post("/generate", json={"model": "good", "prompt": "x"})
        c.get("/health")  # control-plane routes are not counted
        snap = server.stats.snapshot()
        assert snap["total"] == 7
        assert snap["routes"] == {"/v1/chat/completions": 6, "/generate": 1}
        assert snap["models"] == {"good": 4, "e500": 1, "r429": 1, "missing": 1}
        assert snap["outcomes"]["ok"] == 4
        assert snap["outcomes"]["500"] == 1
        assert snap["outcomes"]["429"] == 1
        assert snap["outcomes"]["model_not_found"] == 1
        assert c.get("/stats").json()["total"] == 7
        server.stats.reset()
        assert server.stats.total == 0
        assert server.stats.outcomes["ok"] == 0


def test_start_stop_twice_and_add_profile_later() -> None:
    server = SimServer(cases=CASES)
    for _ in range(2):
        server.start()
        assert server.start() is server  # already running: no second thread
        server.add_profile("late", SimProfile(latency_ms=0))
        with httpx.Client(base_url=server.base_url) as c:
            assert answer_of(chat(c, "late", HELLO.prompt)) == "Hello there!"
        port = server.port
        server.stop()
        server.stop()  # idempotent
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_serve_forever_can_be_cancelled() -> None:
    async def run() -> int:
        server = SimServer({"good": PROFILES["good"]}, CASES)
        ready = asyncio.Event()
        task = asyncio.create_task(server.serve_forever(on_ready=lambda _s: ready.set()))
        await asyncio.wait_for(ready.wait(), 5)
        async with httpx.AsyncClient(base_url=server.base_url) as c:
            r = await c.post("/generate", json={"model": "good", "prompt": HELLO.prompt})
            assert r.json()["output"]["text"] == "Hello there!"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return server.port

    port = asyncio.run(run())
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_profile_validation() -> None:
    with pytest.raises(pydantic.ValidationError):
        SimProfile(error_429_rate=1.5)
    with pytest.raises(pydantic.ValidationError):
        SimProfile(latency_ms=-1)
    with pytest.raises(pydantic.ValidationError):
        SimProfile.model_validate({"latency": 3})
    case = SimCase(key="k", prompt="p", facts=["a"])  # type: ignore[arg-type]
    assert case.facts == ("a",)
