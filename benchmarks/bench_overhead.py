"""How much does evalgate cost on top of the HTTP calls it has to make anyway?

Why this exists: the engine's promise is "bounded concurrency over pooled clients, the wire is
the only cost". This script checks that promise against plain-httpx floors posting the same
bodies to the same simulator, in the same run, interleaved, so machine noise hits every
contestant alike. There are two floors: one client with ``concurrency`` connections behind an
``asyncio.Semaphore`` (the obvious code), and the executor's own layout of small clients
(httpcore's pool slows down badly with many connections in one client). Ratios use the
faster of the two.

What runs where (all traffic stays on 127.0.0.1):

* the simulator: ``python -m evalgate.cli sim --port 0`` in its own process, fixed latency, no
  faults, no hallucinations; its port is read from its "listening on" line;
* the raw floor and the engine: each round in a fresh child process (this file with
  ``--child``), so each reports its own peak RSS (``RUSAGE_SELF``) and no state leaks between
  rounds; imports happen before the clock starts;
* end to end: ``pytest --evalgate --evalgate-cache=off`` (and ``-n 2``) in a subprocess in the
  generated project, each run checked to have made all N calls; its peak RSS comes from
  ``os.wait4`` (the kernel's children accounting for that one subprocess and the xdist workers
  it reaped);
* for context, two figures that bound what any pytest-driven run can reach: the raw floor's
  child timed from outside (interpreter start and imports included, as pytest's rows are) and
  plain pytest over N empty tests (pytest's own cost per test, before any evalgate code).

With ``--streaming`` it measures the streaming row instead: the same engine run with the
model config's ``stream: true`` and without, interleaved, against one simulator profile that
takes the same time either way (TTFT = the latency, then ``STREAM_TOKENS_PER_S``): the wall
time ratio, and the client-side TTFT (request on the wire -> first content chunk read)
against the simulator's own (request's first bytes read -> first content chunk written, from
its ``/stats``), per call. Both sides run on this machine's cores: once they are saturated
(50 ms at concurrency 64 is ~1,000 calls/s asked of two Python processes on 2 cores), the
difference is mostly each event loop's queueing, so run it at ``--latency-ms 400`` too.

It prints figures and whether the targets are met; it always exits 0 - it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
MODEL = "bench"
MAX_TOKENS = 64
TIMEOUT_S = 30.0
MAX_N = 100_000
MAX_CONCURRENCY = 1024
MAX_ROUNDS = 10
RATIO_TARGET = 1.10
# Imported inside run_project on first use (numpy and scipy.special behind them; the
# `evalgate.stats` face imports each name on first use); the warm engine preloads them.
LAZY_MODULES = ("evalgate.stats.rates", "evalgate.stats.latency", "evalgate.stats.cost",
                "evalgate.stats.family", "evalgate.gate.guardrails")
WARM_ENGINE = "engine, lazy imports preloaded"
RSS_TARGET_MB = 300.0
SIM_START_TIMEOUT_S = 60.0
_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")
_PYTEST_ENGINE_S = re.compile(r"wall time ([0-9.]+)s")
_PYTEST_TOTALS = re.compile(r"(\d+) passed")
_PYTEST_CALLS = re.compile(r"calls: candidate (\d+) made")
NOOP = "pytest, no-op tests (pytest's own floor)"
STREAM_TOKENS_PER_S = 500.0
STREAM_WALL_TARGET = 1.05
TTFT_ERROR_TARGET_MS = 1.0


# ---------------------------------------------------------------------------------------------
# the generated project


def canary(i: int) -> dict[str, Any]:
    """One synthetic canary; the simulator's correct answer states both facts, never the lie."""
    return {
        "id": f"q{i:05d}",
        "prompt": f"Bench question {i}: what is the return window for item {i}?",
        "expected": {"facts": [f"{10 + i % 80} days", f"ticket T{i:05d}"],
                     "forbidden": ["lifetime guarantee"]},
    }


def write_project(root: Path, n: int, concurrency: int, latency_ms: float,
                  canary_format: str) -> Path:
    """Write gate config, rubric, canaries and the simulator profile; returns the canary file.

    The model config needs the simulator's port and is written by ``write_model`` later.
    """
    import yaml  # a dependency of evalgate, so present wherever evalgate is

    for sub in ("models", "canaries", "rubrics"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    gate = {
        "candidate": "models/candidate.yaml",
        "canaries": "canaries/",
        "rubrics": "rubrics/",
        "samples": 1,
        "concurrency": concurrency,
        "canary_failures": "report",
        "gate": {"on_inconclusive": "fail",
                 # lax on purpose: the gate must decide PASS even for a few hundred canaries
                 "metrics": {"error_rate": {"max": 0.5}, "pass_rate": {"min": 0.5},
                             "hallucination_rate": {"max": 0.5}}},
        "report": {"dir": "reports"},
    }
    (root / "evalgate.yaml").write_text(yaml.safe_dump(gate, sort_keys=False))
    (root / "pytest.ini").write_text("[pytest]\n")  # pins pytest's rootdir to the project
    rubric = {
        "description": "benchmark rubric",
        "criteria": [
            {"id": "states-facts", "check": "contains_all",
             "values": "{{ case.expected.facts }}"},
            {"id": "no-invented-policy", "kind": "hallucination", "check": "contains_none",
             "values": "{{ case.expected.forbidden }}"},
        ],
    }
    (root / "rubrics" / "bench.yaml").write_text(yaml.safe_dump(rubric, sort_keys=False))
    cases = [canary(i) for i in range(n)]
    if canary_format == "yaml":
        path = root / "canaries" / "bench.yaml"
        path.write_text(yaml.safe_dump({"rubric": "bench", "cases": cases}, sort_keys=False))
    else:
        path = root / "canaries" / "bench.jsonl"
        path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    profile = {"latency_ms": latency_ms, "latency_sigma": 0.0, "spike_prob": 0.0,
               "error_429_rate": 0.0, "error_500_rate": 0.0, "timeout_rate": 0.0,
               "malformed_rate": 0.0, "hallucination_rate": 0.0, "seed": 0}
    (root / "sim-profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return path


def write_model(root: Path, base_url: str) -> None:
    """The candidate: a plain OpenAI-compatible endpoint (the simulator), no API key."""
    import yaml

    model = {"provider": "openai", "base_url": f"{base_url}/v1", "model": MODEL,
             "params": {"max_tokens": MAX_TOKENS}, "timeout_s": TIMEOUT_S,
             "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}
    (root / "models" / "candidate.yaml").write_text(yaml.safe_dump(model, sort_keys=False))


# ---------------------------------------------------------------------------------------------
# child side: the measured workloads (run with --child, one per fresh process)


def child_raw(spec: dict[str, Any]) -> dict[str, Any]:
    """The floor: the same bodies, plain httpx, no engine.

    ``layout == "pool"`` is one client with ``concurrency`` connections behind an
    ``asyncio.Semaphore``; ``layout == "lanes"`` copies the executor's layout when it has one
    (``concurrency`` lanes pulling from one iterator, ``LANES_PER_CLIENT`` lanes sharing a
    small client), because httpcore's pool gets slow with many connections in one client.
    All clients share one TLS context, built inside the clock, as the executor does: a context
    per client would load the CA bundle 16 times (~0.3 s) and flatter the engine.
    """
    import ssl

    import certifi
    import httpx

    bodies: list[dict[str, Any]] = spec["bodies"]
    url: str = spec["url"]
    concurrency: int = spec["concurrency"]
    per_client: int = spec["per_client"]

    tls: list[ssl.SSLContext] = []

    def client(connections: int) -> httpx.AsyncClient:
        if not tls:
            tls.append(ssl.create_default_context(cafile=certifi.where()))
        limits = httpx.Limits(max_connections=connections,
                              max_keepalive_connections=connections)
        return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(TIMEOUT_S), verify=tls[0])

    async def post(c: httpx.AsyncClient, body: dict[str, Any]) -> str:
        response = await c.post(url, json=body)
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])

    async def pool() -> list[str]:
        semaphore = asyncio.Semaphore(concurrency)
        async with client(concurrency) as c:
            async def one(body: dict[str, Any]) -> str:
                async with semaphore:
                    return await post(c, body)

            return list(await asyncio.gather(*(one(b) for b in bodies)))

    async def lanes() -> list[str]:
        texts = [""] * len(bodies)
        pending = iter(enumerate(bodies))
        count = max(1, min(concurrency, len(bodies)))
        clients = [client(per_client) for _ in range(-(-count // per_client))]

        async def lane(c: httpx.AsyncClient) -> None:
            for i, body in pending:
                texts[i] = await post(c, body)

        try:
            await asyncio.gather(*(lane(clients[j // per_client]) for j in range(count)))
        finally:
            for c in clients:
                await c.aclose()
        return texts

    c0, t0 = time.process_time(), time.perf_counter()
    texts = asyncio.run(lanes() if spec["layout"] == "lanes" else pool())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "answered": sum(1 for t in texts if t)}


def child_engine(spec: dict[str, Any]) -> dict[str, Any]:
    """The engine as pytest drives it: load_project + run_project, nothing else.

    The executor entry point that ``evalgate.pipeline.run`` uses (``run_jobs`` or, in older trees,
    ``execute``) is wrapped - not changed - to time the executor on its own.
    """
    import evalgate.pipeline.run as run_mod
    from evalgate.pipeline.project import load_project

    spans: dict[str, float] = {}
    for name in ("run_jobs", "execute"):
        inner = getattr(run_mod, name, None)
        if inner is not None:
            setattr(run_mod, name, timed(inner, spans))
            break
    root = Path(spec["project"])
    c0, t0 = time.process_time(), time.perf_counter()
    project = load_project(root)
    t1 = time.perf_counter()
    # The response cache is off unless --engine-cache says otherwise ("write": every call is
    # made and stored, the cache's cost on the hot path; "on": later rounds read it).
    cache = spec.get("cache", "off")
    result = run_mod.run_project(project, **({"cache": cache} if cache != "off" else {}))
    t2 = time.perf_counter()
    cpu = time.process_time() - c0
    dump = result.model_dump_json(indent=1)  # what the pytest side writes; outside the clock
    t3 = time.perf_counter()
    out = {"wall_s": t2 - t0, "cpu_s": cpu, "load_s": t1 - t0, "run_s": t2 - t1,
           "exec_s": spans.get("exec_s", float("nan")), "dump_s": t3 - t2,
           "dump_mb": len(dump) / 1e6, "verdict": result.verdict,
           "answered": result.counts["answered"], "passed": result.counts["passed"]}
    if spec.get("ttft"):  # the streaming row compares each call's TTFT with the server's
        out["ttft"] = {f"{r.key}#{r.sample}": r.ttft_ms for r in result.records}
    return out


def timed(fn: Callable[..., Any], spans: dict[str, float]) -> Callable[..., Any]:
    """``fn`` (sync or async) that adds its wall time to ``spans["exec_s"]``."""
    if inspect.iscoroutinefunction(fn):
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                spans["exec_s"] = spans.get("exec_s", 0.0) + time.perf_counter() - t

        return timed_async

    def timed_sync(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spans["exec_s"] = spans.get("exec_s", 0.0) + time.perf_counter() - t

    return timed_sync


def child_main(kind: str, spec_path: str, profile_out: str | None) -> int:
    """Entry point of a measured child: run one workload, print one JSON line, exit."""
    spec = json.loads(Path(spec_path).read_text())
    if kind == "engine":  # imports before the clock, as a long-lived runner would have them
        import evalgate.engine.executor
        import evalgate.pipeline.project
        import evalgate.pipeline.run  # noqa: F401
    for module in spec.get("preload", []):  # the "warm" engine: lazy imports done up front
        importlib.import_module(module)
    import httpx  # noqa: F401

    work: Callable[[dict[str, Any]], dict[str, Any]] = (
        child_engine if kind == "engine" else child_raw)
    if profile_out:
        import cProfile

        profiler = cProfile.Profile()
        out = profiler.runcall(work, spec)
        profiler.dump_stats(profile_out)
    else:
        out = work(spec)
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# parent side: simulator, children, pytest


def child_env() -> dict[str, str]:
    """The environment for every child: no proxy for loopback, no inherited pytest options."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(p for p in (env.get(name), HOST, "localhost") if p)
    # Bytecode caching as on a normal install: with PYTHONDONTWRITEBYTECODE (set on some CI
    # images and agent shells) every interpreter recompiles evalgate and pytest's assertion-
    # rewritten plugin modules, seconds per pytest start that have nothing to do with evalgate.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def third_party_plugin_opt_outs() -> list[str]:
    """Dev-only pytest plugins that cost startup time unrelated to evalgate (hypothesis's
    plugin imports all of hypothesis at the terminal summary): disabled, and said so."""
    return ["-p", "no:hypothesispytest"] if importlib.util.find_spec("hypothesis") else []


def proc_cpu_s(pid: int) -> float | None:
    """User+system CPU seconds of a live process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sim:
    """The simulator subprocess and where it listens."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def cpu_s(self) -> float | None:
        return proc_cpu_s(self.proc.pid)


@contextlib.contextmanager
def simulator(root: Path, canary_file: Path) -> Iterator[Sim]:
    """Start ``evalgate sim`` on 127.0.0.1:0, yield once it listens, always stop it."""
    log = root / "sim.log"
    cmd = [sys.executable, "-m", "evalgate.cli", "sim", "--host", HOST, "--port", "0",
           "--profile", str(root / "sim-profile.yaml"), "--canaries", str(canary_file)]
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=err,
                                stdin=subprocess.DEVNULL, env=child_env())
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + SIM_START_TIMEOUT_S
        seen = b""
        match = None
        while match is None:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise RuntimeError(f"simulator did not start: {seen.decode(errors='replace')!r}"
                                   f" {log.read_text(errors='replace')[-2000:]}")
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                seen += chunk
                match = _LISTENING.search(seen.decode(errors="replace"))
        yield Sim(proc, match.group(1), log)
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL; only this one process (the simulator holds nothing to flush)."""
    # SIGTERM first: SIGINT is ignored by processes started in the background of a shell.
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)


@dataclass
class Outcome:
    """One measured run of one contestant."""

    wall_s: float
    cpu_s: float | None = None
    sim_cpu_s: float | None = None
    rss_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def run_waited(cmd: list[str], cwd: Path, log: Path, timeout_s: float
               ) -> tuple[int, float, resource.struct_rusage | None]:
    """Run a subprocess in its own session; exit code, wall seconds and its own rusage.

    ``os.wait4`` gives the rusage of exactly this child (plus the descendants it reaped), so
    neither the simulator nor other children pollute its peak RSS.
    """
    with log.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=child_env(),
                                start_new_session=True)
    box: dict[str, Any] = {}

    def reap() -> None:
        _, status, usage = os.wait4(proc.pid, 0)
        box["end"] = time.perf_counter()
        box["status"], box["usage"] = status, usage

    waiter = threading.Thread(target=reap, daemon=True)
    waiter.start()
    waiter.join(timeout_s)
    if waiter.is_alive():  # over time: end the whole session we started for it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        waiter.join(10)
        proc.returncode = -9
        return -9, time.perf_counter() - t0, None
    proc.returncode = os.waitstatus_to_exitcode(box["status"])  # Popen must not reap again
    return proc.returncode, box["end"] - t0, box["usage"]


def measure_child(kind: str, spec: Path, work: Path, sim: Sim, n: int, timeout_s: float,
                  profile_out: str | None = None) -> Outcome:
    """One raw-floor or engine round in a fresh interpreter."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--spec", str(spec)]
    if profile_out:
        cmd += ["--profile-out", profile_out]
    log = work / f"child-{spec.stem}.log"
    s0 = sim.cpu_s()
    code, wall, _ = run_waited(cmd, work, log, timeout_s)
    s1 = sim.cpu_s()
    sim_cpu = None if s0 is None or s1 is None else s1 - s0
    text = log.read_text(errors="replace")
    last = text.strip().splitlines()[-1] if text.strip() else ""
    if code != 0 or not last.startswith("{"):
        return Outcome(wall, error=f"{kind} child exited {code}: {text[-1500:]}")
    data = json.loads(last)
    out = Outcome(data.pop("wall_s"), data.pop("cpu_s"), sim_cpu, data.pop("rss_mb"), data)
    out.extra["process_s"] = wall  # the whole child: interpreter start and imports included
    if data.get("answered") != n:  # the gate's verdict is reported, not required
        out.error = f"{kind}: only {data.get('answered')}/{n} calls answered"
    return out


def measure_pytest(work: Path, project: Path, sim: Sim, n: int, xdist: bool,
                   timeout_s: float) -> Outcome:
    """``pytest --evalgate`` end to end, as CI would run it in the project."""
    # The response cache off, as for the engine rows: a cached re-run makes no calls and would
    # measure something else (evalgate's default turns the cache on outside CI).
    cmd = [sys.executable, "-m", "pytest", "--evalgate", "--evalgate-cache=off",
           "-p", "no:cacheprovider", "-q", *third_party_plugin_opt_outs()]
    if xdist:
        cmd += ["-n", "2"]
    log = work / f"pytest{'-n2' if xdist else ''}.log"
    shutil.rmtree(project / "reports", ignore_errors=True)
    s0 = sim.cpu_s()
    code, wall, usage = run_waited(cmd, project, log, timeout_s)
    s1 = sim.cpu_s()
    text = log.read_text(errors="replace")
    out = Outcome(wall, sim_cpu_s=None if s0 is None or s1 is None else s1 - s0)
    if usage is not None:
        out.cpu_s = usage.ru_utime + usage.ru_stime
        out.rss_mb = usage.ru_maxrss / 1024
    engine = _PYTEST_ENGINE_S.search(text)
    if engine:
        out.extra["engine_in_pytest_s"] = float(engine.group(1))
    passed = _PYTEST_TOTALS.findall(text)
    out.extra["passed"] = int(passed[-1]) if passed else 0
    out.extra["exit_code"] = code
    calls = _PYTEST_CALLS.search(text)
    out.extra["calls"] = int(calls.group(1)) if calls else None
    # Every canary must pass; a gate item may still be INCONCLUSIVE for a tiny N (exit 1).
    if code not in (0, 1) or out.extra["passed"] < n:
        out.error = f"pytest exited {code} with {out.extra['passed']} passed: {text[-1500:]}"
    elif out.extra["calls"] != n:  # the same work as the floor, or not a measurement
        out.error = f"pytest made {out.extra['calls']} calls, not {n}: {text[-1500:]}"
    return out


def write_noop_tests(root: Path, n: int) -> Path:
    """N parametrized tests that do nothing: what pytest itself costs for N items."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_noop.py").write_text(
        "import pytest\n\n\n"
        f"@pytest.mark.parametrize('i', range({n}))\n"
        "def test_noop(i):\n    pass\n")
    return root


def measure_noop(work: Path, noop: Path, n: int, timeout_s: float) -> Outcome:
    """Plain pytest over N no-op tests, in a fresh interpreter like the pytest rows."""
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
           *third_party_plugin_opt_outs()]
    code, wall, usage = run_waited(cmd, noop, work / "noop.log", timeout_s)
    out = Outcome(wall)
    if usage is not None:
        out.cpu_s = usage.ru_utime + usage.ru_stime
        out.rss_mb = usage.ru_maxrss / 1024
    passed = _PYTEST_TOTALS.findall((work / "noop.log").read_text(errors="replace"))
    if code != 0 or not passed or int(passed[-1]) != n:
        out.error = f"no-op pytest exited {code}"
    return out


# ---------------------------------------------------------------------------------------------
# report


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _med(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    return statistics.median(real) if real else None


def report(results: dict[str, list[Outcome]], floors: list[str], n: int, concurrency: int,
           latency_ms: float) -> None:
    """The table, then one line per target saying whether it is met.

    Ratios are to the fastest raw floor (by median): the target is about what evalgate adds
    on top of the best plain-httpx client, not about httpx's own pool behaviour.
    """
    ideal = n / concurrency * latency_ms / 1000

    def walls(name: str) -> list[float]:
        return [o.wall_s for o in results.get(name, []) if o.error is None]

    ranked = sorted((statistics.median(walls(f)), f) for f in floors if walls(f))
    floor = ranked[0][1] if ranked else None
    raw_med = statistics.median(walls(floor)) if floor else None
    raw_min = min(walls(floor)) if floor else None
    head = ("contestant", "median s", "min s", "x floor (med)", "x floor (min)", "x ideal",
            "client CPU s", "sim CPU s", "peak RSS MB", "ok runs")
    rows: list[tuple[str, ...]] = [head, ("ideal N/C*latency", f"{ideal:.3f}", f"{ideal:.3f}",
                                          "-", "-", "1.00", "-", "-", "-", "-")]
    for name, outs in results.items():
        if not outs:
            continue
        good = [o for o in outs if o.error is None]
        ws = [o.wall_s for o in good]
        med = statistics.median(ws) if ws else None
        low = min(ws) if ws else None
        rows.append((
            name + (" *" if name == floor else ""), _fmt(med), _fmt(low),
            _fmt(med / raw_med if med and raw_med else None),
            _fmt(low / raw_min if low and raw_min else None),
            _fmt(med / ideal if med and ideal else None, ".2f"),
            _fmt(_med([o.cpu_s for o in good]), ".2f"),
            _fmt(_med([o.sim_cpu_s for o in good]), ".2f"),
            _fmt(max((o.rss_mb for o in good if o.rss_mb is not None), default=None), ".0f"),
            f"{len(good)}/{len(outs)}",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    print()
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) if j else c.ljust(w)
                        for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("* the floor the ratios use (fastest raw layout). Peak RSS: max over rounds; raw and "
          "engine from RUSAGE_SELF in the child, pytest from wait4 (incl. reaped xdist "
          "workers). CPU: medians.")

    for name in (k for k in results if k.startswith("engine")):
        engine = [o for o in results[name] if o.error is None]
        if not engine:
            continue
        post = _med([o.extra["run_s"] - o.extra["exec_s"] for o in engine])
        print(f"\n{name} breakdown (medians, s): "
              + ", ".join(f"{k} {_fmt(_med([o.extra.get(k) for o in engine]))}"
                          for k in ("load_s", "run_s", "exec_s"))
              + f"; run_s - exec_s (plan, grade, metrics, verdicts, result) {_fmt(post)}"
              + f"; result JSON dump {_fmt(_med([o.extra.get('dump_s') for o in engine]))} s "
              f"({_fmt(_med([o.extra.get('dump_mb') for o in engine]), '.1f')} MB, untimed)"
              f"; gate verdict {', '.join(sorted({str(o.extra.get('verdict')) for o in engine}))}")
    for name in ("pytest", "pytest -n 2"):
        outs = [o for o in results.get(name, []) if o.error is None]
        inner = _med([o.extra.get("engine_in_pytest_s") for o in outs])
        if outs and inner is not None:
            print(f"{name}: engine wall time inside pytest (its summary) {inner:.3f} s; "
                  f"the rest is interpreter start, plugin load, collection, reporting")

    print("\ntargets:")
    engines = {k: [o for o in v if o.error is None] for k, v in results.items()
               if k.startswith("engine")}
    if raw_med and any(engines.values()):
        for name, engine in engines.items():
            if not engine:
                continue
            ratio = statistics.median(o.wall_s for o in engine) / raw_med
            exec_s = _med([o.extra.get("exec_s") for o in engine])
            print(f"  {name} <= {RATIO_TARGET:.2f}x raw floor ({floor}, median): {ratio:.3f}x"
                  f" -> {'MET' if ratio <= RATIO_TARGET else 'NOT MET'}"
                  + (f"  (executor only: {exec_s / raw_med:.3f}x)" if exec_s else ""))
        floor_outs = [o for o in results.get(floor or "", []) if o.error is None]
        raw_process = _med([o.extra.get("process_s") for o in floor_outs])
        for name in ("pytest", "pytest -n 2"):
            outs = [o for o in results.get(name, []) if o.error is None]
            if outs:
                wall = statistics.median(o.wall_s for o in outs)
                ratio = wall / raw_med
                print(f"  {name} end to end <= {RATIO_TARGET:.2f}x raw floor: {ratio:.3f}x -> "
                      f"{'MET' if ratio <= RATIO_TARGET else 'NOT MET'} (includes interpreter "
                      "start, plugin load, collection, items, reports)"
                      + (f"; {wall / raw_process:.3f}x the raw floor run as a whole process"
                         if raw_process else ""))
        noop = [o for o in results.get(NOOP, []) if o.error is None]
        if noop and raw_process:
            own = statistics.median(o.wall_s for o in noop)
            print(f"\ncontext: the raw floor as a whole process (interpreter start, httpx import, "
                  f"calls) takes {raw_process:.3f} s; plain pytest over {n} no-op tests takes "
                  f"{own:.3f} s ({own / raw_med:.2f}x the floor's calls) - pytest's own cost, "
                  f"before any evalgate code. Calls then items cannot end before "
                  f"{raw_process + own:.3f} s = {(raw_process + own) / raw_med:.2f}x the floor.")
        rss = max(o.rss_mb or 0.0 for engine in engines.values() for o in engine)
        print(f"  engine peak RSS < {RSS_TARGET_MB:.0f} MB: {rss:.0f} MB -> "
              f"{'MET' if rss < RSS_TARGET_MB else 'NOT MET'}")
    else:
        print("  not decidable: no raw floor or no engine run succeeded")
    errors = [(name, o.error) for name, outs in results.items() for o in outs if o.error]
    for name, error in errors[:6]:
        print(f"\n[{name}] FAILED RUN: {error}")


def tree_info() -> str:
    """Which evalgate was measured: version, git commit and whether the tree was dirty."""
    import evalgate

    root = Path(evalgate.__file__).resolve().parent.parent
    info = f"evalgate {getattr(evalgate, '__version__', '?')}"
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "evalgate"], capture_output=True, text=True, timeout=10)
        info += f" at {head.stdout.strip()}"
        if dirty.stdout.strip():
            info += f" + {len(dirty.stdout.splitlines())} uncommitted change(s) in evalgate/"
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def lanes_per_client(concurrency: int) -> int:
    """Connections per httpx client in the executor's layout (older trees: one pool)."""
    try:
        import evalgate.engine.executor as executor
    except ImportError:
        return concurrency
    per = getattr(executor, "LANES_PER_CLIENT", None)
    return per if isinstance(per, int) and per > 0 else concurrency


# ---------------------------------------------------------------------------------------------
# main


def bounded(value: int, low: int, high: int, name: str) -> int:
    if not low <= value <= high:
        raise SystemExit(f"--{name} must be within {low}..{high}")
    return value


def streaming_row(work: Path, n: int, concurrency: int, latency_ms: float, rounds: int,
                  timeout_s: float) -> None:
    """Engine rounds with and without `stream: true`, interleaved, on one simulator."""
    import httpx
    import yaml

    projects = {"plain": work / "project", "stream": work / "project-stream"}
    canary_file = write_project(projects["plain"], n, concurrency, latency_ms, "jsonl")
    profile_path = projects["plain"] / "sim-profile.yaml"
    profile = yaml.safe_load(profile_path.read_text())
    profile.update(ttft_ms=latency_ms, tokens_per_s=STREAM_TOKENS_PER_S)
    profile_path.write_text(yaml.safe_dump(profile, sort_keys=False))
    print(f"streaming row: N={n}, concurrency={concurrency}, TTFT {latency_ms:g} ms then "
          f"{STREAM_TOKENS_PER_S:g} tokens/s (the same server time with or without streaming),"
          f" rounds={rounds}, cpus={os.cpu_count()}; {tree_info()}")
    with simulator(projects["plain"], canary_file) as sim:
        write_model(projects["plain"], sim.base_url)
        shutil.copytree(projects["plain"], projects["stream"])
        model_path = projects["stream"] / "models" / "candidate.yaml"
        model = yaml.safe_load(model_path.read_text())
        model_path.write_text(yaml.safe_dump({**model, "stream": True}, sort_keys=False))
        specs = {}
        for name, root in projects.items():
            specs[name] = work / f"engine-{name}.json"
            specs[name].write_text(json.dumps({"project": str(root), "ttft": name == "stream"}))
        walls: dict[str, list[float]] = {"plain": [], "stream": []}
        errors: list[float] = []
        measure_child("engine", specs["plain"], work, sim, n, timeout_s)  # warm-up
        for r in range(1, rounds + 1):
            for name in ("plain", "stream"):
                out = measure_child("engine", specs[name], work, sim, n, timeout_s)
                if out.error:
                    raise RuntimeError(out.error)
                walls[name].append(out.wall_s)
                print(f"round {r}: {name:<7} {out.wall_s:8.3f} s", flush=True)
                if name == "stream":
                    sent = httpx.get(f"{sim.base_url}/stats").json().get("streams", {})
                    errors += [ttft - sent[k] for k, ttft in out.extra["ttft"].items()
                               if ttft is not None and k in sent]
    if not errors:
        raise RuntimeError("no streamed call could be matched with the simulator's log")
    ratio = statistics.median(walls["stream"]) / statistics.median(walls["plain"])
    q = statistics.quantiles(errors, n=100)
    print(f"wall time (median of {rounds}): plain {statistics.median(walls['plain']):.3f} s, "
          f"streaming {statistics.median(walls['stream']):.3f} s: x{ratio:.3f} "
          f"(target <= x{STREAM_WALL_TARGET:.2f}: "
          f"{'met' if ratio <= STREAM_WALL_TARGET else 'NOT met'})")
    p50 = statistics.median(abs(e) for e in errors)
    print(f"client TTFT - simulator TTFT over {len(errors)} calls: median {q[49]:+.3f} ms, "
          f"p5 {q[4]:+.3f} ms, p95 {q[94]:+.3f} ms, p99 {q[98]:+.3f} ms; |error| p50 "
          f"{p50:.3f} ms (target < {TTFT_ERROR_TARGET_MS:g} ms: "
          f"{'met' if p50 < TTFT_ERROR_TARGET_MS else 'NOT met'})")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=2000, help="synthetic canaries (calls per run)")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--latency-ms", type=float, default=50.0, help="simulator's fixed latency")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per contestant")
    p.add_argument("--skip-pytest", action="store_true", help="only the raw floor and engine")
    p.add_argument("--canary-format", choices=("jsonl", "yaml"), default="jsonl",
                   help="how the canaries are stored (yaml exercises the line-mapping loader)")
    p.add_argument("--profile-engine", metavar="FILE", default=None,
                   help="after the rounds, run the engine once more under cProfile into FILE")
    p.add_argument("--keep", action="store_true", help="keep the generated project")
    p.add_argument("--engine-cache", choices=("off", "read", "write", "on"), default="off",
                   help="the engine's response cache (write: store every answer, the hot-path "
                        "cost; on: rounds after the first read it)")
    p.add_argument("--quick", action="store_true",
                   help="a short check: N=500, one round (figures are indicative only)")
    p.add_argument("--streaming", action="store_true",
                   help="the streaming row: stream: true vs not at the same latency, and the "
                        "client's TTFT against the simulator's send times")
    p.add_argument("--child", choices=("raw", "engine"), help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--profile-out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, args.spec, args.profile_out)
    if args.quick:
        args.n, args.rounds = 500, 1
    n = bounded(args.n, 1, MAX_N, "n")
    concurrency = bounded(args.concurrency, 1, MAX_CONCURRENCY, "concurrency")
    rounds = bounded(args.rounds, 1, MAX_ROUNDS, "rounds")
    if not 0 <= args.latency_ms <= 10_000:
        raise SystemExit("--latency-ms must be within 0..10000")
    ideal = n / concurrency * args.latency_ms / 1000
    child_timeout = 120 + 20 * ideal
    pytest_timeout = 300 + 40 * ideal
    has_xdist = importlib.util.find_spec("xdist") is not None
    per_client = lanes_per_client(concurrency)
    pool_name = f"raw 1 client x {concurrency}"
    lanes_name = f"raw {-(-concurrency // per_client)} clients x {per_client}"
    floors = [pool_name] + ([lanes_name] if per_client < concurrency else [])
    work = Path(tempfile.mkdtemp(prefix="evalgate-bench-"))
    project = work / "project"
    if args.streaming:
        try:
            streaming_row(work, n, concurrency, args.latency_ms, rounds, child_timeout)
        except Exception as exc:  # a benchmark reports, it does not fail the caller
            print(f"benchmark aborted: {type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    if third_party_plugin_opt_outs():
        print("note: pytest runs with -p no:hypothesispytest (a dev-only plugin, see "
              "third_party_plugin_opt_outs)")
    print(f"evalgate overhead benchmark: N={n}, concurrency={concurrency}, "
          f"latency={args.latency_ms:g} ms, rounds={rounds}, canaries as {args.canary_format}, "
          f"cpus={os.cpu_count()}, python {sys.version.split()[0]}; {tree_info()}")
    try:
        canary_file = write_project(project, n, concurrency, args.latency_ms, args.canary_format)
        with simulator(project, canary_file) as sim:
            write_model(project, sim.base_url)
            print(f"simulator: {sim.base_url} (pid {sim.proc.pid}); project: {project}")
            bodies = [{"model": MODEL,
                       "messages": [{"role": "user", "content": canary(i)["prompt"]}],
                       "max_tokens": MAX_TOKENS} for i in range(n)]
            specs: dict[str, Path] = {}
            for name, layout in ((pool_name, "pool"), (lanes_name, "lanes")):
                if name in floors:
                    specs[name] = work / f"raw-{layout}.json"
                    specs[name].write_text(json.dumps({
                        "url": f"{sim.base_url}/v1/chat/completions", "bodies": bodies,
                        "concurrency": concurrency, "per_client": per_client,
                        "layout": layout}))
            specs["engine"] = work / "engine.json"
            specs["engine"].write_text(json.dumps({"project": str(project),
                                                   "cache": args.engine_cache}))
            engines = ["engine"]
            lazy = [m for m in LAZY_MODULES if importlib.util.find_spec(m) is not None]
            if lazy:  # the same run with evalgate's lazily imported modules loaded up front
                engines.append(WARM_ENGINE)
                specs[WARM_ENGINE] = work / "engine-warm.json"
                specs[WARM_ENGINE].write_text(json.dumps({"project": str(project),
                                                          "preload": lazy,
                                                          "cache": args.engine_cache}))

            noop = write_noop_tests(work / "noop", n)

            def step(name: str) -> Outcome:
                if name == NOOP:
                    return measure_noop(work, noop, n, pytest_timeout)
                if name in engines:
                    return measure_child("engine", specs[name], work, sim, n, child_timeout)
                if name in specs:
                    return measure_child("raw", specs[name], work, sim, n, child_timeout)
                return measure_pytest(work, project, sim, n, name.endswith("-n 2"),
                                      pytest_timeout)

            order = [*floors, *engines]
            if not args.skip_pytest:
                order += ["pytest"] + (["pytest -n 2"] if has_xdist else []) + [NOOP]
            results: dict[str, list[Outcome]] = {name: [] for name in order}
            warm = step(floors[-1])  # first contact: sockets, page cache, sim warm; unreported
            print(f"warm-up ({floors[-1]}): {warm.wall_s:.3f} s"
                  + (f" FAILED {warm.error}" if warm.error else ""))
            for r in range(1, rounds + 1):
                for name in order:
                    out = step(name)
                    results[name].append(out)
                    print(f"round {r}: {name:<32} {out.wall_s:8.3f} s"
                          + (f"  RSS {out.rss_mb:.0f} MB" if out.rss_mb else "")
                          + ("  FAILED" if out.error else ""), flush=True)
            if args.profile_engine:
                prof = measure_child("engine", specs["engine"], work, sim, n,
                                     child_timeout * 3,
                                     profile_out=str(Path(args.profile_engine).resolve()))
                print(f"profiled engine run: {prof.wall_s:.3f} s (cProfile inflates it) -> "
                      f"{args.profile_engine}")
        if not args.skip_pytest and not has_xdist:
            print("pytest-xdist is not installed: the -n 2 row is skipped")
        report(results, floors, n, concurrency, args.latency_ms)
    except Exception as exc:  # a benchmark reports, it does not fail the caller
        print(f"benchmark aborted: {type(exc).__name__}: {exc}")
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
