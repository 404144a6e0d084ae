"""The `evalgate` console script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from evalgate import __version__
from tests.conftest import make_cases, sim_model, write_project


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "evalgate.cli", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"evalgate {__version__}"


def test_sim_serves_a_model_config_profile_over_http(tmp_path: Path) -> None:
    write_project(tmp_path, model=sim_model(hallucination_rate=0.0), cases=make_cases(3))
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalgate.cli", "sim", "--port", "0", "--canaries", "canaries",
         "--model-config", "models/candidate.yaml"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+) \(3 canaries; models: m\)",
                          line)
        assert match, line
        base = match.group(1)
        assert httpx.get(f"{base}/health", timeout=5).json() == {"status": "ok"}
        reply = httpx.post(f"{base}/v1/chat/completions", timeout=5, json={
            "model": "m", "messages": [{"role": "user", "content": make_cases(3)[2]["prompt"]}]})
        assert reply.json()["choices"][0]["message"]["content"] == "Answer: 2 days."
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sim_reports_a_broken_canary_file(tmp_path: Path) -> None:
    (tmp_path / "canaries").mkdir()
    (tmp_path / "canaries" / "x.yaml").write_text("cases:\n  - id: a\n    promt: typo\n")
    out = subprocess.run([sys.executable, "-m", "evalgate.cli", "sim", "--port", "0"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.returncode == 4
    assert "canaries/x.yaml:3: cases.0.promt: unknown field" in out.stderr
