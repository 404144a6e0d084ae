"""`evalgate report`, `evalgate compare` (and compare_results), and the committed JSON Schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evalgate.cli import main
from evalgate.gate.compare import compare_results
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.report.schema import result_schema, schema_text
from evalgate.results import SCHEMA_VERSION, RunResult, read_result, write_result
from tests.conftest import make_cases, sim_model, write_project

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILE = REPO / "schemas" / "evalgate-result.schema.json"
XSD = REPO / "tests" / "schemas" / "JUnit.xsd"
# The result schema as version 1 was released (evalgate 0.1.0, before streaming, response
# shapes, review, N candidates and tool/image canaries): results written then must still load.
SCHEMA_V1 = REPO / "tests" / "schemas" / "evalgate-result.v1.schema.json"
GATE = {"concurrency": 16, "samples": 1,
        "gate": {"on_inconclusive": "warn", "bootstrap_resamples": 1999}}


def saved_run(root: Path, **profile: Any) -> Path:
    """Run 80 canaries on a simulator profile and save the result, as a CI job would."""
    write_project(root, model=sim_model(**profile), cases=make_cases(80), gate=GATE)
    result = run_project(load_project(root))
    path = root / "reports" / "evalgate.json"
    write_result(result, path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        "main": saved_run(tmp_path_factory.mktemp("main"), hallucination_rate=0.02, seed=1),
        "regressed": saved_run(tmp_path_factory.mktemp("pr"), hallucination_rate=0.4, seed=2),
    }


# --------------------------------------------------------------------------- compare


def test_compare_a_run_with_itself_does_not_fail(runs: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", str(runs["main"]), str(runs["main"])])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("evalgate gate: ") and "evalgate gate: FAIL" not in out
    assert "hallucination_rate_vs_baseline" in out
    assert f"({runs['main']}); compared on 80 canaries" in out


def test_compare_blocks_a_regressed_candidate(runs: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    code = main(["compare", str(runs["main"]), str(runs["regressed"]), "--out", str(out_dir)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "evalgate gate: FAIL" in out
    sentence = next(line for line in out.splitlines()
                    if line.startswith("- hallucination_rate_vs_baseline: candidate "))
    assert sentence.endswith(": FAIL")
    result = read_result(out_dir / "evalgate.json")
    assert result.verdict == "FAIL"
    assert result.baseline is not None and result.baseline.kind == "result"
    main_run = read_result(runs["main"])
    assert result.baseline.run_id == main_run.run_id
    assert result.comparison is not None and result.comparison.compared == 80
    assert len(result.baseline_records) == 80
    assert {r.config for r in result.baseline_records} == {"baseline"}
    assert result.baseline_metrics["hallucination_rate"] == pytest.approx(
        main_run.metrics["hallucination_rate"])
    verdict = next(v for v in result.verdicts if v.guardrail == "hallucination_rate_vs_baseline")
    assert verdict.verdict == "FAIL" and verdict.value is not None and verdict.baseline is not None
    assert verdict.value > verdict.baseline
    for name in ("evalgate.xml", "evalgate.md"):
        assert (out_dir / name).stat().st_size > 0
    assert "**FAIL**" in (out_dir / "evalgate.md").read_text()


def test_compare_alpha_option_reaches_the_verdicts(runs: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    main(["compare", str(runs["main"]), str(runs["regressed"]), "--alpha", "0.01",
          "--out", str(tmp_path)])
    capsys.readouterr()
    result = read_result(tmp_path / "evalgate.json")
    assert result.alpha == 0.01 and result.gate["alpha"] == 0.01
    assert "99% lower bound" in " ".join(v.reason for v in result.verdicts)


def test_compare_results_aligns_canaries(runs: dict[str, Path]) -> None:
    base, cand = read_result(runs["main"]), read_result(runs["regressed"])
    # the baseline lacks c0, has an extra canary, and its c1 was a different canary
    base_records = [r for r in base.records if r.key != "set/c0"]
    extra = base_records[0].model_copy(update={"key": "set/gone", "case_id": "gone"})
    fingerprints = {**base.case_fingerprints, "set/c1": "0" * 16}
    base = base.model_copy(update={
        "records": [*base_records, extra], "case_fingerprints": fingerprints,
        "rubric_fingerprints": {"basic": "changed"}})
    result = compare_results(base, cand, source="main.json")
    assert result.comparison is not None
    assert result.comparison.missing_in_baseline == ["set/c0"]
    assert result.comparison.changed == ["set/c1"]
    assert result.comparison.extra_in_baseline == ["set/gone"]
    assert result.comparison.compared == 78
    assert {r.key for r in result.baseline_records} == {r.key for r in cand.records} - {
        "set/c0", "set/c1"}
    text = " | ".join(result.warnings)
    assert "rubric(s) basic differ" in text
    assert "1 canary(ies) are not in the baseline run" in text
    assert "1 canary(ies) changed since the baseline run (e.g. set/c1)" in text
    assert result.baseline is not None and result.baseline.source == "main.json"
    assert result.records == cand.records, "the candidate's answers are kept as they are"
    verdict = next(v for v in result.verdicts if v.guardrail == "pass_rate_vs_baseline")
    assert verdict.n_canaries == 78


@pytest.mark.parametrize("content, reason", [
    (None, "file not found"),
    ("{\"schema_version\": 1,", "not valid JSON"),
    ("{\"schema_version\": 1}", "not an evalgate result"),
    ("[1, 2]", "not an evalgate result"),
])
def test_compare_bad_input_is_exit_4(runs: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str], content: str | None,
                                     reason: str) -> None:
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert main(["compare", str(bad), str(runs["main"])]) == 4
    assert main(["compare", str(runs["main"]), str(bad)]) == 4
    err = capsys.readouterr().err
    assert f"{bad}: {reason}" in err


def test_compare_rejects_an_impossible_alpha(runs: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs["main"]), str(runs["main"]), "--alpha", "0.7"]) == 4
    assert "--alpha: " in capsys.readouterr().err


# --------------------------------------------------------------------------- report


def test_report_writes_every_format_next_to_the_result(runs: dict[str, Path],
                                                       tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    result = tmp_path / "evalgate.json"
    result.write_bytes(runs["regressed"].read_bytes())
    assert main(["report", str(result)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'evalgate.xml'}" in out
    assert f"wrote {tmp_path / 'evalgate.md'}" in out
    xml = (tmp_path / "evalgate.xml").read_text()
    assert xml.count("<testcase ") == 80 + len(read_result(result).verdicts)
    import xmlschema

    xmlschema.XMLSchema(str(XSD)).validate(xml)
    md = (tmp_path / "evalgate.md").read_text()
    assert md.startswith("## evalgate gate: ")


def test_report_writes_only_the_formats_asked_for(runs: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "sub" / "summary.md"
    assert main(["report", str(runs["main"]), "--markdown", str(target)]) == 0
    assert target.exists() and sorted(p.name for p in tmp_path.rglob("*.*")) == ["summary.md"]
    assert "Full report" not in target.read_text(), "no HTML report to point to"
    out_dir = tmp_path / "all"
    assert main(["report", str(runs["main"]), "--out", str(out_dir)]) == 0
    assert {"evalgate.xml", "evalgate.md"} <= {p.name for p in out_dir.iterdir()}
    capsys.readouterr()


def test_report_html(runs: dict[str, Path], tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("evalgate.report.html")
    target = tmp_path / "r.html"
    assert main(["report", str(runs["regressed"]), "--html", str(target)]) == 0
    html = target.read_text()
    assert "<html" in html.lower() and read_result(runs["regressed"]).run_id in html
    capsys.readouterr()


def test_report_broken_result_is_exit_4(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text("not json")
    out = subprocess.run([sys.executable, "-m", "evalgate.cli", "report", "r.json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 4
    assert out.stderr.startswith("evalgate report: r.json: not valid JSON")
    assert not list(tmp_path.glob("evalgate.*"))


def test_step_summary_is_appended_only_when_asked(runs: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    summary = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    main(["compare", str(runs["main"]), str(runs["main"])])
    assert not summary.exists()
    main(["compare", str(runs["main"]), str(runs["regressed"]), "--step-summary"])
    assert summary.read_text().startswith("## evalgate gate: **FAIL**")
    capsys.readouterr()


# --------------------------------------------------------------------------- JSON Schema


def test_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "regenerate: python -m evalgate.report.schema > schemas/evalgate-result.schema.json")
    schema = result_schema()
    assert schema["version"] == SCHEMA_VERSION
    assert schema["$id"].endswith(f"v{schema['version']}")


def check(instance: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$") -> None:
    """A small validator for the JSON Schema subset pydantic emits, for when `jsonschema` is
    not installed: $ref, anyOf, type, enum, const, properties, required, items,
    additionalProperties."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                check(instance, option, root, path)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{path}: no anyOf option matches: {errors}")
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    kind = schema.get("type")
    if kind == "integer":
        assert isinstance(instance, int) and not isinstance(instance, bool), path
    elif kind == "number":
        assert isinstance(instance, int | float) and not isinstance(instance, bool), path
    elif kind is not None:
        assert isinstance(instance, kinds[kind]), f"{path}: not {kind}"
    if "enum" in schema:
        assert instance in schema["enum"], path
    if "const" in schema:
        assert instance == schema["const"], path
    if isinstance(instance, dict):
        for key in schema.get("required", []):
            assert key in instance, f"{path}: missing {key}"
        props = schema.get("properties", {})
        for key, value in instance.items():
            if key in props:
                check(value, props[key], root, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                check(value, schema["additionalProperties"], root, f"{path}.{key}")
            else:
                assert schema.get("additionalProperties", True) is not False, f"{path}.{key}"
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            check(item, schema["items"], root, f"{path}[{i}]")


def test_saved_results_validate_against_the_committed_schema(runs: dict[str, Path],
                                                             tmp_path: Path) -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    main_run = read_result(runs["main"])
    compared = compare_results(main_run, read_result(runs["regressed"]))
    write_result(compared, tmp_path / "compared.json")
    for path in (runs["main"], tmp_path / "compared.json"):
        data = json.loads(path.read_text())
        try:
            import jsonschema
        except ImportError:
            check(data, schema, schema)
        else:
            jsonschema.validate(data, schema)
        assert RunResult.model_validate(data).model_dump(mode="json") == data
    with pytest.raises(AssertionError):
        check({**json.loads(runs["main"].read_text()), "records": [{"key": 1}]}, schema, schema)


def as_written_by(instance: Any, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """`instance` with only the fields `schema` knows: a result as an older version wrote it."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    for option in schema.get("anyOf", []):
        if option.get("type") != "null" and instance is not None:
            return as_written_by(instance, option, root)
    if isinstance(instance, dict) and "properties" in schema:
        return {k: as_written_by(v, schema["properties"][k], root)
                for k, v in instance.items() if k in schema["properties"]}
    if isinstance(instance, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {k: as_written_by(v, schema["additionalProperties"], root)
                for k, v in instance.items()}
    if isinstance(instance, list) and "items" in schema:
        return [as_written_by(v, schema["items"], root) for v in instance]
    return instance


def test_a_version_1_result_still_loads_reports_and_compares(runs: dict[str, Path],
                                                             tmp_path: Path) -> None:
    v1 = json.loads(SCHEMA_V1.read_text(encoding="utf-8"))
    assert v1["version"] == 1 and SCHEMA_VERSION > 1
    data = as_written_by(json.loads(runs["main"].read_text()), v1, v1)
    data["schema_version"] = 1
    check(data, v1, v1)  # exactly what version 1 wrote: nothing newer left in it
    assert set(json.loads(runs["main"].read_text())) - set(data)  # and newer fields were cut
    old = tmp_path / "old" / "evalgate.json"
    old.parent.mkdir()
    old.write_text(json.dumps(data))
    loaded = read_result(old)
    assert loaded.schema_version == 1 and len(loaded.records) == 80
    assert main(["report", str(old)]) == 0
    assert {p.name for p in old.parent.iterdir()} >= {"evalgate.html", "evalgate.xml",
                                                        "evalgate.md"}
    assert main(["compare", str(old), str(runs["main"])]) == 0
