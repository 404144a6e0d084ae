"""JUnit XML rendered from a run result: the strict Ant schema, testcase mapping, hostile text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalgate.gate.baseline import resolve
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.report.junit import render_junit
from evalgate.report.summary import canary_problem
from evalgate.results import GuardrailVerdict, RunResult, read_result, write_result
from tests.conftest import make_cases, sim_model, write_project

# The Apache Ant JUnit schema (Apache License 2.0), shipped with the tests so none skips.
XSD = Path(__file__).resolve().parent / "schemas" / "JUnit.xsd"
HOSTILE = "a\x00b\x07c\x1b[31mred\x1b[0m ]]> <script>alert(1)</script> & \"q\" \ud800 \uffff end"


@pytest.fixture(scope="module")
def schema() -> Any:
    import xmlschema

    return xmlschema.XMLSchema(str(XSD))


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """8 canaries x 2 samples against a live baseline; the candidate hallucinates often."""
    root = tmp_path_factory.mktemp("junit")
    write_project(root, model=sim_model(hallucination_rate=0.4, seed=5), cases=make_cases(8),
                  gate={"samples": 2, "baseline": "models/baseline.yaml",
                        "gate": {"metrics": {"error_rate": {"max": 0.05}}}})
    base = sim_model(seed=6)
    base["model"] = "base"
    (root / "models" / "baseline.yaml").write_text(yaml.safe_dump(base))
    project = load_project(root)
    return run_project(project, baseline=resolve("models/baseline.yaml", project.gate))


def parse(xml: str) -> ET.Element:
    return ET.fromstring(xml.encode("utf-8"))


def suites(root: ET.Element) -> dict[str, ET.Element]:
    return {s.get("name", ""): s for s in root.findall("testsuite")}


def with_verdicts(result: RunResult, verdicts: list[tuple[str, str]],
                  on_inconclusive: str) -> RunResult:
    """The result with its first guardrails' verdicts forced (to test each mapping)."""
    changed: list[GuardrailVerdict] = []
    for v, (verdict, reason) in zip(result.verdicts, verdicts, strict=False):
        changed.append(v.model_copy(update={"verdict": verdict, "reason": reason}))
    return result.model_copy(update={"verdicts": changed + result.verdicts[len(changed):],
                                     "on_inconclusive": on_inconclusive})


def test_valid_against_the_strict_schema(result: RunResult, schema: Any) -> None:
    for policy in ("fail", "report"):
        schema.validate(render_junit(result.model_copy(update={"canary_failures": policy})))


def test_one_testcase_per_canary_sample_named_like_the_pytest_items(result: RunResult) -> None:
    canaries = suites(parse(render_junit(result)))["evalgate.canaries"]
    cases = canaries.findall("testcase")
    assert len(cases) == len(result.records) == 16
    names = {(c.get("classname"), c.get("name")) for c in cases}
    assert names == {("set", f"c{i}[{k}]") for i in range(8) for k in range(2)}
    by_name = {c.get("name"): c for c in cases}
    failing = 0
    for record in result.records:
        case = by_name[f"{record.case_id}[{record.sample}]"]
        assert float(case.get("time", "")) == pytest.approx((record.latency_ms or 0) / 1000,
                                                            abs=1e-3)
        failure = case.find("failure")
        if record.ok and record.passed:
            assert failure is None and case.find("skipped") is None
            continue
        failing += 1
        assert failure is not None
        assert failure.get("message") == canary_problem(record)
        assert failure.text == canary_problem(record)
        if record.hallucination:
            assert failure.get("message", "").startswith("hallucination: ")
            assert failure.get("type") == "hallucination"
    assert failing > 0, "the fixture's candidate should fail some canaries"
    assert canaries.get("failures") == str(failing)
    assert canaries.get("tests") == "16"


def test_reported_canaries_pass_and_are_named_not_skipped(result: RunResult, schema: Any) -> None:
    """Under `canary_failures: report` a hallucinating canary must not turn grey (`skipped`)
    nor red (`failure`): its testcase passes, and a suite property and the suite's output
    name the problem."""
    report = result.model_copy(update={"canary_failures": "report"})
    xml = render_junit(report)
    schema.validate(xml)
    canaries = suites(parse(xml))["evalgate.canaries"]
    assert canaries.find("testcase/skipped") is None
    assert canaries.find("testcase/failure") is None
    assert canaries.get("failures") == "0" and canaries.get("skipped") == "0"
    bad = [r for r in result.records if not (r.ok and r.passed)]
    props = {p.get("name"): p.get("value") for p in canaries.iter("property")}
    reported = {k: v for k, v in props.items() if k.startswith("reported.")}
    assert len(reported) == len(bad) > 0
    hallucinating = [r for r in bad if r.hallucination]
    assert hallucinating
    assert sum(v.startswith("hallucination: hallucination: ") for v in reported.values()) == len(
        hallucinating)
    out = canaries.findtext("system-out")
    assert out.count("REPORTED, not blocking: ") == len(bad)


def test_gate_testcases_fail_only_when_the_verdict_blocks(result: RunResult) -> None:
    names = [v.guardrail for v in result.verdicts]
    assert len(names) >= 3
    forced = with_verdicts(result, [("FAIL", "first guardrail is beyond its margin: FAIL"),
                                    ("INCONCLUSIVE", "second guardrail: too few canaries"),
                                    ("PASS", "third guardrail holds: PASS")], "warn")
    gate = suites(parse(render_junit(forced)))["evalgate.gate"]
    cases = {c.get("name"): c for c in gate.findall("testcase")}
    assert set(cases) == {f"gate[{n}]" for n in names}
    assert all(c.get("classname") == "evalgate" for c in cases.values())
    failed = cases[f"gate[{names[0]}]"].find("failure")
    assert failed is not None
    assert failed.get("message") == "first guardrail is beyond its margin: FAIL"
    assert (failed.text or "").startswith("test: ")
    assert f"n = {forced.verdicts[0].n_canaries} canaries" in (failed.text or "")
    assert cases[f"gate[{names[1]}]"].find("failure") is None, "warn: not blocking"
    assert cases[f"gate[{names[2]}]"].find("failure") is None
    out = gate.findtext("system-out") or ""
    assert f"evalgate.gate[{names[1]}]: INCONCLUSIVE (not blocking)" in out
    assert "second guardrail: too few canaries" in out

    strict = with_verdicts(result, [("PASS", "ok: PASS"),
                                    ("INCONCLUSIVE", "second guardrail: too few canaries")],
                           "fail")
    gate = suites(parse(render_junit(strict)))["evalgate.gate"]
    blocked = gate.find(f"testcase[@name='gate[{names[1]}]']/failure")
    assert blocked is not None
    assert blocked.get("message") == "INCONCLUSIVE: second guardrail: too few canaries"
    # with on_inconclusive: fail, every verdict but PASS blocks
    assert gate.get("failures") == str(sum(v.verdict != "PASS" for v in strict.verdicts))


def test_hostile_model_output_stays_well_formed(result: RunResult, schema: Any) -> None:
    records = [r.model_copy(deep=True) for r in result.records]
    records[0] = records[0].model_copy(update={"text": HOSTILE, "passed": False,
                                               "hallucination": True})
    records[1] = records[1].model_copy(update={"ok": False, "error_class": "server_error",
                                               "error_message": HOSTILE, "text": None})
    records[2] = records[2].model_copy(update={"case_id": "id <b>&\x01", "set": "s]]>et"})
    hostile = result.model_copy(update={"records": records, "warnings": [HOSTILE]})
    xml = render_junit(hostile)
    schema.validate(xml)
    root = parse(xml)  # a parser, not just the schema check, accepts it
    text = ET.tostring(root, encoding="unicode")
    assert "<script>" not in text, "markup from the model is escaped"
    messages = [f.get("message", "") for f in root.iter("failure")]
    assert any("<script>alert(1)</script>" in m and "]]>" in m for m in messages)
    everything = "".join(root.itertext()) + "".join(
        v for e in root.iter() for v in e.attrib.values())
    for bad in ("\x00", "\x07", "\x1b", "\x01", "\ud800", "\uffff"):
        assert bad not in everything
    assert "red" in everything and "end" in everything, "text around bad characters is kept"


def test_suites_carry_run_facts_as_properties(result: RunResult) -> None:
    for suite in parse(render_junit(result)).findall("testsuite"):
        props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
        assert props["evalgate.verdict"] == result.verdict
        assert props["evalgate.run_id"] == result.run_id
        assert props["candidate"] == result.candidate.name
        assert props["baseline"] == "baseline"
        assert float(props["metric.pass_rate"] or "nan") == pytest.approx(
            result.metrics["pass_rate"])
        assert suite.get("hostname") and suite.get("timestamp", "").count(":") == 2
        assert "+" not in suite.get("timestamp", "")
    gate = suites(parse(render_junit(result)))["evalgate.gate"]
    props = {p.get("name"): p.get("value") for p in gate.findall("properties/property")}
    for v in result.verdicts:
        assert props[f"guardrail.{v.guardrail}.verdict"] == v.verdict


def test_a_saved_result_renders_the_same(result: RunResult, tmp_path: Path) -> None:
    """`evalgate report` re-renders from evalgate.json: the XML must not depend on anything
    but the result (not the process, worker or time of rendering)."""
    write_result(result, tmp_path / "evalgate.json")
    assert render_junit(read_result(tmp_path / "evalgate.json")) == render_junit(result)


def test_timestamps_are_utc_without_a_zone(result: RunResult) -> None:
    """The schema's pattern has no zone: an offset is converted, not dropped."""
    shifted = result.model_copy(update={"started_at": "2026-01-02T03:04:05.250+02:00"})
    stamps = {s.get("timestamp") for s in parse(render_junit(shifted)).findall("testsuite")}
    assert stamps == {"2026-01-02T01:04:05"}
