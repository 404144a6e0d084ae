"""The HTML report: content, escaping of hostile model output, self-containment, and a real
headless Chromium that loads it offline, runs its script without errors, does not run the
payloads, filters, pages, and saves a screenshot for a person to look at.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: NUL-framed
JSON on fds 3/4), so the browser tests need no extra dependency and open no port at all.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalgate.gate.baseline import resolve
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.report import charts
from evalgate.report.config_diff import line_diff
from evalgate.report.html import json_for_script, render_html
from evalgate.results import (
    CriterionResult,
    GuardrailVerdict,
    ModelInfo,
    RunResult,
)
from tests.conftest import make_cases, sim_model, write_project

CHROMIUM = "/usr/bin/chromium"
PAYLOADS = [
    "<script>alert(1)</script>",
    "</textarea><img src=x onerror=alert(1)>",
    "\"'><svg onload=alert(1)>",
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">",
    "</script><script>document.body.setAttribute('data-pwned','2')</script>",
]
SYSTEM_V1 = "You are a support assistant.\nAnswer from the context.\nBe brief.\n"
SYSTEM_V2 = "You are a support assistant.\nAnswer only from the context.\nBe brief.\nCite it.\n"


# -- building results --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine_result(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """A real run over the simulator: 30 canaries x 2 samples, a live baseline that differs in
    model, prompt and params; the candidate hallucinates and errors more (regressions)."""
    root = tmp_path_factory.mktemp("project")
    cand = sim_model(hallucination_rate=0.3, error_500_rate=0.08, seed=3)
    cand.update(max_retries=0, system_prompt=SYSTEM_V2, params={"temperature": 0.7})
    write_project(root, model=cand, cases=make_cases(30),
                  gate={"samples": 2, "concurrency": 8, "baseline": "models/baseline.yaml",
                        "gate": {"metrics": {"hallucination_rate": {"max": 0.1},
                                             "latency_p50_ms": {"max": 1000}}}})
    base = sim_model(hallucination_rate=0.0, seed=5)
    base.update(model="base-model", system_prompt=SYSTEM_V1, params={"temperature": 0.2},
                timeout_s=9)
    (root / "models" / "baseline.yaml").write_text(yaml.safe_dump(base))
    project = load_project(root)
    return run_project(project, baseline=resolve("models/baseline.yaml", project.gate))


def with_payloads(result: RunResult) -> RunResult:
    """The same run with hostile text in answers, tags, errors, warnings and the config."""
    records = [r.model_copy(deep=True) for r in result.records]
    for i, payload in enumerate(PAYLOADS):
        records[i].text = payload
    records[0].tags = [*records[0].tags, "<b>tag</b>\"'&"]
    records[1].error_message = PAYLOADS[1]
    records[2].key = f"set/{PAYLOADS[3]}"
    records[1].criteria = [CriterionResult(id="<i>crit</i>", kind="quality", check="regex",
                                           passed=False, detail=PAYLOADS[3])]
    candidate = result.candidate.model_copy(deep=True)
    candidate.config["system_prompt"] = PAYLOADS[4] + "\n" + SYSTEM_V2
    return result.model_copy(update={"records": records, "candidate": candidate,
                                     "run_id": PAYLOADS[4],  # also lands in the JSON block
                                     "warnings": [*result.warnings, PAYLOADS[0]]})


def empty_result(**update: Any) -> RunResult:
    """A run with no records at all (every canary deselected): charts must still draw."""
    base = RunResult(
        evalgate_version="0.1.0", run_id="empty", started_at="2026-01-01T00:00:00+00:00",
        wall_time_s=0.0, gate_fingerprint="g", canary_fingerprint="c", rubric_fingerprints={},
        candidate=ModelInfo(name="cand", provider="sim", model="m", fingerprint="f"),
        samples=1, concurrency=1, calls_made=0, records=[], metrics={}, counts={},
        verdicts=[GuardrailVerdict(guardrail="hallucination_rate", metric="hallucination_rate",
                                   kind="rate_cap", test="(none: no data)", margin=0.1,
                                   verdict="INCONCLUSIVE",
                                   reason="cannot decide hallucination_rate: no data")],
        verdict="INCONCLUSIVE")
    return base.model_copy(update=update)


def scaled(result: RunResult, n: int) -> RunResult:
    """n canaries x 1 sample with a baseline, by copying a real run's records."""
    cand = [r for r in result.records if r.sample == 0]
    base = {r.key: r for r in result.baseline_records if r.sample == 0}
    records, base_records = [], []
    for i in range(n):
        src = cand[i % len(cand)]
        key = f"big/c{i:05d}"
        records.append(src.model_copy(update={"key": key, "case_id": f"c{i:05d}"}))
        base_records.append(base[src.key].model_copy(update={"key": key,
                                                             "case_id": f"c{i:05d}"}))
    counts = dict(result.counts, canaries=n, calls=n)
    return result.model_copy(update={"records": records, "baseline_records": base_records,
                                     "samples": 1, "counts": counts})


# -- static checks -----------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Structure(HTMLParser):
    """Checks that every non-void element is closed in order, and collects src/href values."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.counts: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "action", "xlink:href")]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href")]

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            if tag in self.stack:
                while self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()


def parse(html: str) -> Structure:
    checker = Structure()
    checker.feed(html)
    checker.close()
    return checker


def test_report_shows_verdict_gate_charts_and_config_diff(engine_result: RunResult) -> None:
    html = render_html(engine_result)
    assert f'data-verdict="{engine_result.verdict}"' in html
    for v in engine_result.verdicts:
        assert v.guardrail in html
    assert "hallucination_rate_vs_baseline" in html, "a live baseline adds vs-baseline guardrails"
    for chart in ("chart-latency", "chart-forest", "chart-cost", "chart-rates", "chart-tags"):
        assert f'id="{chart}"' in html and f'aria-labelledby="{chart}-title' in html
    rows = re.findall(r'<tr class="(changed|same)"><td class="key">([^<]+)', html)
    changed = {k.strip() for c, k in rows if c == "changed"}
    assert {"model", "params.temperature", "timeout_s", "system_prompt"} <= changed
    assert ("same", "provider") in {(c, k.strip()) for c, k in rows}
    assert "Answer only from the context." in html and 'class="d-chg"' in html
    first = html.index('<article class="cn')
    assert html[first:first + 200].startswith('<article class="cn o-regression"'), \
        "regressions come first"
    assert "NaN" not in html and not re.search(r'="-?(nan|inf)', html, re.IGNORECASE)


def test_report_is_self_contained_and_well_formed(engine_result: RunResult) -> None:
    html = render_html(engine_result)
    checker = parse(html)
    assert checker.errors == [] and checker.stack == []
    assert checker.counts["html"] == checker.counts["body"] == checker.counts["main"] == 1
    assert checker.counts["article"] == len({r.key for r in engine_result.records})
    external = [u for u in checker.urls if not u.startswith("#")]
    assert external == [], "only in-page anchors: nothing to fetch"
    assert not re.search(r"(src|href|action)\s*=\s*[\"']?\s*(https?:)?//", html)
    assert "http://" not in html and "https://" not in html
    assert "@import" not in html and "url(" not in html
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp and "default-src 'none'" in unescape(csp.group(1))


def test_no_baseline_and_empty_and_single_record_results_render(
        engine_result: RunResult) -> None:
    alone = engine_result.model_copy(update={
        "baseline": None, "baseline_records": [], "baseline_metrics": {}, "comparison": None,
        "verdicts": [v for v in engine_result.verdicts if "_vs_" not in v.guardrail]})
    html = render_html(alone)
    assert "none: only absolute limits were checked" in html
    assert parse(html).errors == []
    empty = render_html(empty_result())
    assert "INCONCLUSIVE" in empty and "no latency data" in empty and "NaN" not in empty
    assert parse(empty).errors == []
    one = engine_result.records[0].model_copy(update={"latency_ms": 0.0, "cost_usd": 0.0})
    single = render_html(empty_result(records=[one], metrics={"cost_per_1k_usd": 0.0},
                                      counts={"calls": 1, "canaries": 1}))
    assert "NaN" not in single and 'id="chart-latency"' in single


def test_hostile_text_is_escaped_everywhere(engine_result: RunResult) -> None:
    html = render_html(with_payloads(engine_result))
    for payload in PAYLOADS:
        assert payload not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;/textarea&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&#34;&#39;&gt;&lt;svg onload=alert(1)&gt;" in html
    assert "&lt;b&gt;tag&lt;/b&gt;&#34;&#39;&amp;" in html
    assert "onerror=" not in re.sub(r"&lt;img src=x onerror=", "", html)
    assert len(re.findall(r"<script\b", html)) == 2, "the data block and our one script"
    structure = parse(html)
    assert structure.errors == [] and structure.counts.get("img", 0) == 0


def test_json_for_script_cannot_close_the_element() -> None:
    data = {"t": "</script><!-- & \u2028\u2029 >"}
    text = str(json_for_script(data))
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == data


def test_long_answers_are_cut_and_collapsed(engine_result: RunResult) -> None:
    records = [r.model_copy() for r in engine_result.records]
    records[0].text = "word " * 1000
    html = render_html(engine_result.model_copy(update={"records": records}),
                       max_answer_chars=600)
    assert "cut at 600 of 5,000 characters" in html
    assert "(5,000 chars: show all)" in html
    assert "word " * 121 not in html, "at most 600 chars of the answer, plus a short preview"


def test_line_diff_pairs_changed_lines() -> None:
    kinds = [(d.kind, d.old, d.new) for d in line_diff(SYSTEM_V1, SYSTEM_V2)]
    assert kinds[0] == ("eq", "You are a support assistant.", "You are a support assistant.")
    assert ("chg", "Answer from the context.", "Answer only from the context.") in kinds
    assert ("add", None, "Cite it.") in kinds
    long_old = "\n".join(f"rule {i}" for i in range(50))
    folded = line_diff(long_old, long_old.replace("rule 25", "rule twenty-five"))
    assert [d.kind for d in folded].count("eq") == 6 and len(folded) == 9, "3 lines of context"
    assert line_diff("same\n", "same")[-1].kind == "skip", "an invisible change is said"


@pytest.mark.parametrize("values", [[], [0.0], [5.0], [3.0, 3.0], [0.0, 1e6],
                                    [float("nan"), float("inf"), 2.0]])
def test_charts_handle_degenerate_data(values: list[float]) -> None:
    """0 or 1 points, ties, zeros and non-finite input: no NaN, no division by zero."""
    padded: list[float | None] = [*values, None, None, None]
    svgs = [charts.latency_cdf("a", [("candidate", values), ("baseline", values[:1])]),
            charts.bars("b", "t", [("candidate", values[0] if values else None),
                                   ("baseline", 0.0)], str, "cost"),
            charts.rate_dots("c", "t", ["p"], [charts.RateRow("x", ((
                charts.RatePoint("candidate", len(values), len(values)),),))]),
            charts.forest("d", [charts.ForestRow("g", "PASS", estimate=padded[0],
                                                 low=padded[1], high=padded[2],
                                                 limit=padded[0], reference=None,
                                                 worse="higher")])]
    for svg in svgs:
        assert "NaN" not in svg and not re.search(r"(nan|inf)\b", svg, re.IGNORECASE)
        assert "<title" in svg and parse(str(svg)).errors == []


# -- the browser -------------------------------------------------------------------------------

class Chromium:
    """Headless Chromium spoken to over the DevTools protocol on a pipe (no port, stdlib only)."""

    FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-extensions", "--remote-debugging-pipe",
             "--host-resolver-rules=MAP * ~NOTFOUND")  # offline: no name resolves

    def __init__(self, profile: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        cmd_r, self._cmd_w = os.pipe()
        self._evt_r, evt_w = os.pipe()

        def wire() -> None:  # in the child: the pipes become fds 3 (commands) and 4 (replies)
            a = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(evt_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.log = (profile / "chromium.log").open("wb")
        self.proc = subprocess.Popen(
            [CHROMIUM, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=wire, close_fds=False,  # fds 3/4 must survive; others are O_CLOEXEC
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        os.close(cmd_r)
        os.close(evt_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._evt_r], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._evt_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (timeout or self.timeout)
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._cmd_w)
        os.close(self._evt_r)
        self.log.close()


class Page:
    """One tab with console, exception, log and network events recorded."""

    def __init__(self, browser: Chromium, width: int = 1400, height: int = 1000) -> None:
        self.b = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget",
                                    {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.b.send(method, params, self.session)

    def open(self, path: Path) -> float:
        """Navigate to the file and wait for its load event; the seconds it took."""
        self.b.events.clear()
        t0 = time.perf_counter()
        self.call("Page.navigate", {"url": path.resolve().as_uri()})
        self.b.wait_event("Page.loadEventFired", timeout=60)
        return time.perf_counter() - t0

    def js(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                               "awaitPromise": True})
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (CSP violations too)."""
        out = []
        for e in self.b.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error",
                                                                                 "assert"):
                out.append(json.dumps(params.get("args"))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(params["entry"].get("text", "")[:500])
        return out

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.b.events
                if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path, width: int = 1400) -> Path:
        """The whole page: the viewport is made as tall as the page first, because blocks with
        `content-visibility: auto` are only painted when they are on screen."""
        height = 0
        for _ in range(4):  # painted blocks take their real height: grow until it settles
            tall = min(int(self.js("document.documentElement.scrollHeight")), 16000)
            if tall == height:
                break
            height = tall
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1,
                       "mobile": False})
            self.js("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
        (pytest.fail if os.environ.get("CI") else pytest.skip)(missing)  # CI installs it
    chrome = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        chrome.send("Browser.getVersion")
        yield chrome
    finally:
        chrome.close()
        shutil.rmtree(tmp_path_factory.getbasetemp() / "chromium-profile0", ignore_errors=True)


def test_browser_renders_offline_without_errors_and_payloads_stay_text(
        browser: Chromium, engine_result: RunResult, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_html(with_payloads(engine_result)), encoding="utf-8")
    page = Page(browser)
    page.open(path)
    shot = page.screenshot(tmp_path / "report.png")
    print(f"screenshot: {shot}")
    assert page.js("document.documentElement.getAttribute('data-report-ready')") == "1", \
        "the report's script ran (allowed by its CSP hash)"
    assert page.js("document.getElementById('verdict').textContent") == engine_result.verdict
    assert page.problems() == []
    assert [u for u in page.requests() if not u.startswith("file://")] == []
    assert page.js("document.body.getAttribute('data-pwned')") is None
    assert page.js("document.querySelectorAll('img, script:not([type]) ~ script').length") == 0
    assert page.js("document.querySelectorAll('script').length") == 2
    assert page.js("document.body.textContent.includes(\"<img src=x onerror=\")")
    assert page.js("document.getElementById('canary-controls').hidden") is False
    assert page.js("document.querySelector('#chart-forest title').textContent")


def test_browser_filters_by_outcome_tag_and_text(
        browser: Chromium, engine_result: RunResult, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_html(engine_result, page_size=10), encoding="utf-8")
    page = Page(browser)
    page.open(path)
    shown = "document.getElementById('canary-list')"
    total = len({r.key for r in engine_result.records})
    assert page.js(f"{shown}.dataset.matching") == str(total)
    first_page = page.js(f"[...{shown}.querySelectorAll('article:not([hidden])')]"
                         ".map(a => a.dataset.key)")
    assert len(first_page) == 10
    page.js("document.getElementById('p-next').click()")
    second_page = page.js(f"[...{shown}.querySelectorAll('article:not([hidden])')]"
                          ".map(a => a.dataset.key)")
    assert len(second_page) == 10 and not set(first_page) & set(second_page)
    assert page.js("document.getElementById('p-status').textContent").startswith("11-20 of")

    def pick(select: str, value: str) -> int:
        page.js(f"(() => {{ const s = document.getElementById('{select}'); s.value = "
                f"{json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()")
        return int(page.js(f"{shown}.dataset.matching"))

    passes: dict[str, list[bool]] = {}
    base: dict[str, list[bool]] = {}
    for r in engine_result.records:
        passes.setdefault(r.key, []).append(bool(r.ok and r.passed))
    for r in engine_result.baseline_records:
        base.setdefault(r.key, []).append(bool(r.ok and r.passed))
    regressions = sum(1 for k, v in passes.items() if sum(v) < sum(base.get(k, [])))
    assert regressions > 0, "the candidate hallucinates more: the run has regressions"
    assert pick("f-outcome", "regression") == regressions
    keys = page.js(f"[...{shown}.querySelectorAll('article:not([hidden])')]"
                   ".map(a => a.dataset.o)")
    assert all("regression" in k.split() for k in keys)
    assert pick("f-outcome", "") == total
    odd = sum(1 for r in engine_result.records if r.sample == 0 and "odd" in r.tags)
    tag_id = page.js("[...document.getElementById('f-tag').options]"
                     ".find(o => o.textContent.startsWith('odd ')).value")
    assert pick("f-tag", tag_id) == odd
    page.js("document.getElementById('f-tag').value = ''")
    page.js("(() => { const t = document.getElementById('f-text'); t.value = 'set/c17'; "
            "t.form.dispatchEvent(new Event('submit', {cancelable: true})); })()")
    assert page.js(f"{shown}.dataset.matching") == "1"
    assert page.js(f"{shown}.querySelector('article:not([hidden])').dataset.key") == "set/c17"
    assert page.problems() == []


def test_browser_without_javascript_shows_every_canary(
        browser: Chromium, engine_result: RunResult, tmp_path: Path) -> None:
    """No content hides behind JS: with scripts off every canary shows, the controls do not."""
    path = tmp_path / "report.html"
    path.write_text(render_html(engine_result, page_size=5), encoding="utf-8")
    page = Page(browser)
    page.call("Emulation.setScriptExecutionDisabled", {"value": True})
    page.open(path)
    total = len({r.key for r in engine_result.records})
    assert page.js("document.documentElement.getAttribute('data-report-ready')") is None
    visible = "[...document.querySelectorAll('#canary-list > article')]" \
              ".filter(a => a.getClientRects().length).length"
    assert page.js(visible) == total
    assert page.js("document.getElementById('canary-controls').getClientRects().length") == 0
    assert page.problems() == []


LAYOUT = """(() => {
  const rect = e => { const r = e.getBoundingClientRect();
                      return {left: r.left, right: r.right, top: r.top, height: r.height}; };
  const rows = [...document.querySelectorAll('table.gate tbody.g > tr:first-child')];
  return {
    scrollWidth: document.documentElement.scrollWidth, width: innerWidth,
    headline: rect(document.getElementById('headline')),
    rows: rows.map(tr => ({name: rect(tr.querySelector('td.name')),
                           verdict: rect(tr.querySelector('td.vcell')),
                           display: getComputedStyle(tr.querySelector('td.vcell')).display})),
    thead: rect(document.querySelector('table.gate thead')),
    labels: [...document.querySelectorAll('svg.chart text')].map(t => t.getBoundingClientRect()
                                                                  .height).filter(h => h > 0),
    charts: [...document.querySelectorAll('svg.chart')].map(
      s => [Number(s.getAttribute('width')), s.getBoundingClientRect().width]),
  };
})()"""


def test_browser_report_fits_400_px_and_keeps_its_layout_at_1400(
        browser: Chromium, engine_result: RunResult, tmp_path: Path) -> None:
    """A phone: no sideways scrolling of the page, each guardrail a card with its verdict first
    and in view, chart labels as drawn (not shrunk to 4 px). A desktop: the table as before."""
    result = engine_result.model_copy(deep=True)
    result.verdicts[0].guardrail = "x" * 90  # a long unbreakable name: the headline must wrap
    result.verdicts[0].reason = f"{'y' * 120}: FAIL"
    result.verdicts[0].verdict = result.verdict = "FAIL"
    path = tmp_path / "report.html"
    path.write_text(render_html(result), encoding="utf-8")
    narrow = Page(browser, width=400, height=900)
    narrow.open(path)
    phone = narrow.js(LAYOUT)
    print(f"400 px: scrollWidth {phone['scrollWidth']}")
    assert phone["scrollWidth"] <= 400
    assert phone["headline"]["right"] <= phone["width"] and phone["headline"]["height"] > 40
    assert len(phone["rows"]) == len(result.verdicts) > 3
    for row in phone["rows"]:
        assert row["display"] == "block"
        assert 0 <= row["verdict"]["left"] < row["verdict"]["right"] <= phone["width"]
        assert row["verdict"]["top"] < row["name"]["top"]  # the verdict first
    assert phone["thead"]["height"] <= 1  # its column names are on each value instead
    assert min(phone["labels"]) >= 8  # drawn at 9-11 px; shrunk to fit they were 4-5 px
    assert all(drawn == shown for drawn, shown in phone["charts"])
    assert narrow.problems() == []

    wide = Page(browser, width=1400, height=900)
    wide.open(path)
    desk = wide.js(LAYOUT)
    print(f"1400 px: scrollWidth {desk['scrollWidth']}")
    assert desk["scrollWidth"] <= 1400
    for row in desk["rows"]:  # one table row per guardrail, the verdict in the last column
        assert row["display"] == "table-cell"
        assert row["verdict"]["top"] == row["name"]["top"]
        assert row["verdict"]["left"] > row["name"]["right"] + 600
    assert desk["thead"]["height"] > 10
    assert all(drawn == shown for drawn, shown in desk["charts"])
    assert min(desk["labels"]) >= 8

def test_ten_thousand_canaries_stay_small_and_fast(
        browser: Chromium, engine_result: RunResult, tmp_path: Path) -> None:
    big = scaled(engine_result, 10_000)
    t0 = time.perf_counter()
    html = render_html(big)
    render_s = time.perf_counter() - t0
    path = tmp_path / "big.html"
    path.write_text(html, encoding="utf-8")
    size_mb = path.stat().st_size / 1e6
    page = Page(browser)
    load_s = page.open(path)
    ready = page.js("document.documentElement.getAttribute('data-report-ready')")
    nav = page.js("JSON.stringify(performance.getEntriesByType('navigation')[0])")
    timing = json.loads(nav)
    print(f"10k canaries x 1 sample + baseline: {size_mb:.1f} MB, render {render_s:.2f} s, "
          f"Chromium load {load_s:.2f} s (DOMContentLoaded "
          f"{timing['domContentLoadedEventEnd'] / 1000:.2f} s, load "
          f"{timing['loadEventEnd'] / 1000:.2f} s)")
    assert ready == "1" and page.problems() == []
    assert page.js("document.querySelectorAll('#canary-list > article:not([hidden])').length") \
        == 100
    assert size_mb < 30
    assert load_s < 20, "generous for slow CI machines; typically a few seconds"


def test_control_characters_never_reach_the_html(engine_result: RunResult) -> None:
    """An answer, a judge reason or a warning carrying ESC (ANSI) or NUL is shown with U+FFFD:
    the page stays well-formed text, and the text a reader copies carries no escape codes."""
    records = [r.model_copy(deep=True) for r in engine_result.records]
    records[0].text = "red \x1b[31malert\x1b[0m and a NUL \x00 here"
    records[0].criteria = [CriterionResult(id="c", kind="quality", check="judge",
                                           passed=False, detail="reason \x07\x1b[2J")]
    html = render_html(engine_result.model_copy(update={
        "records": records, "warnings": [*engine_result.warnings, "warn \x1b]0;x\x07"]}))
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", html)
    assert "red \ufffd[31malert" in html
