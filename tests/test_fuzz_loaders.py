"""Fuzz the input loaders: whatever the file holds, only ConfigError (or success) comes out."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from evalgate.errors import ConfigError
from evalgate.grading.rubrics import Criterion, Rubric, load_rubric, resolve_criteria
from evalgate.pipeline.project import load_project
from evalgate.spec.canaries import Case, load_canary_file
from evalgate.spec.config import load_gate_config, load_model_config

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None)

FIELDS = [
    "candidate", "baseline", "canaries", "rubrics", "default_rubric", "samples", "concurrency",
    "gate", "metrics", "max", "min", "alpha", "vs_baseline", "pass_rate", "hallucination_rate",
    "provider", "model", "params", "pricing", "http", "url", "body", "callable", "sim",
    "system_prompt", "system_prompt_file", "prompt_template", "prompt_template_file",
    "cases", "id", "prompt", "messages", "role", "content", "expected", "facts", "forbidden",
    "reference", "tags", "metadata", "rubric", "criteria", "check", "values", "value",
    "pattern", "kind", "case_sensitive", "description",
]
TEMPLATEY = [
    "{{ case.id }}", "{{ case.expected.facts }}", "{{ nope }}", "{% for x in y %}", "{{",
    "{{ ''.__class__.__mro__ }}", "{{ case.__init__.__globals__ }}", "{{ 1/0 }}",
    "{{ 'a' * 10**10 }}", "{{ 10**10**10 }}", "{{ case.id + 1 }}", "{% raw %}", "a{4294967296}",
    "(?P<", "[a-", "(" * 300, ".*+", "\\", "sim", "openai", "http", "contains_all", "regex",
    "quality", "hallucination", "user", "system", "pass_rate", "x.yaml", "../..", "a\x00b",
]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(TEMPLATEY),
    st.sampled_from(FIELDS), st.text(max_size=20),
)
documents: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS), inner, max_size=5),
    ),
    max_leaves=25,
)

PWNED = "evalgate_fuzz_pwned"
NASTY = [
    "[" * 100_000, "{" * 50_000, "[" * 3000 + "]" * 3000, "- " * 5000 + "x",
    f'!!python/object/apply:os.system ["touch {PWNED}"]',
    f'candidate: !!python/object/apply:os.system ["touch {PWNED}"]',
    f'cases: [!!python/object/new:subprocess.Popen [["touch", "{PWNED}"]]]',
    "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n"
        for i in range(8)),
    "&a [*a]", "&a {x: *a}", "samples: " + "1" * 5000, "candidate: 2001-02-30",
    "\tcandidate: x", "\ufeffcandidate: x", "candidate: x\ncandidate: y", "? [a]\n: 1",
    "<<: 1", "x: !!binary '%%%'", "x: !!set {a}", "---\na: 1\n---\nb: 2", "\x00", "%YAML 9.9\n",
    "cases: [{id: 1, prompt: x}, {id: 1, prompt: y}]", "criteria: [{id: a, check: nope}]",
    '{"id": "a", "prompt": "' + "[" * 10 + '"}',
]

# (loader, suffix) pairs: every loader is handed a path to a file with that suffix.
Loader = Callable[[Path], object]


def _gate(path: Path) -> object:
    return load_gate_config(path)


def _model(path: Path) -> object:
    return load_model_config(path, path.parent)


def _canary(path: Path) -> object:
    return load_canary_file(path, "set", path.name)


def _rubric(path: Path) -> object:
    return load_rubric(path, "rubric", path.name)


LOADERS: list[tuple[Loader, str]] = [
    (_gate, ".yaml"), (_gate, ".toml"), (_model, ".yaml"), (_canary, ".yaml"),
    (_canary, ".jsonl"), (_rubric, ".yaml"),
]


def _only_config_errors(content: bytes, cwd: Path) -> None:
    for loader, suffix in LOADERS:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"input{suffix}"
            path.write_bytes(content)
            with contextlib.suppress(ConfigError):
                loader(path)
    assert not (cwd / PWNED).exists()


@pytest.mark.parametrize("text", NASTY)
def test_nasty_inputs(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _only_config_errors(text.encode("utf-8"), tmp_path)


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _only_config_errors(content, Path(tmp))


@FAST
@given(st.text(alphabet=st.sampled_from(list("[]{}:-?&*!|>'\"#%@`,\t\n \ufeff\x00ab1.")),
               max_size=200))
def test_yaml_punctuation(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _only_config_errors(text.encode("utf-8", "surrogatepass"), Path(tmp))


@FAST
@given(documents)
def test_structured_documents(doc: Any) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    with tempfile.TemporaryDirectory() as tmp:
        _only_config_errors(text.encode("utf-8"), Path(tmp))


@FAST
@given(st.lists(st.one_of(documents.map(lambda d: json.dumps(d)), st.text(max_size=30)),
                max_size=6))
def test_jsonl_lines(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "set.jsonl"
        path.write_text("\n".join(lines), encoding="utf-8")
        with contextlib.suppress(ConfigError):
            load_canary_file(path, "set", "set.jsonl")


criterion_dicts = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=5),
     "check": st.sampled_from(["contains_all", "contains_any", "contains_none", "regex",
                               "json_valid", "max_words", "equals"])},
    optional={"values": st.one_of(st.sampled_from(TEMPLATEY), st.lists(
                  st.sampled_from(TEMPLATEY), max_size=3)),
              "value": st.sampled_from(TEMPLATEY), "pattern": st.sampled_from(TEMPLATEY),
              "max": st.integers(0, 100), "kind": st.sampled_from(["quality", "hallucination"])},
)
case_dicts = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=5), "prompt": st.one_of(st.sampled_from(TEMPLATEY),
                                                                 st.text(max_size=20))},
    optional={"expected": st.fixed_dictionaries(
                  {}, optional={"facts": st.lists(st.text(max_size=10), max_size=3),
                                "forbidden": st.lists(st.sampled_from(TEMPLATEY), max_size=3)}),
              "metadata": st.dictionaries(st.text(max_size=5), scalars, max_size=3),
              "tags": st.lists(st.text(max_size=5), max_size=3)},
)


@FAST
@given(st.lists(criterion_dicts, min_size=1, max_size=4), case_dicts)
def test_resolve_criteria(raw_criteria: list[dict[str, Any]], raw_case: dict[str, Any]) -> None:
    criteria = []
    for raw in raw_criteria:
        try:
            criteria.append(Criterion.model_validate(raw))
        except ValueError:  # pydantic's ValidationError: not what is under test here
            continue
    case = Case.model_validate(raw_case)
    rubric = Rubric("r", "r.yaml", None, criteria, {c.id: 1 for c in criteria})
    with contextlib.suppress(ConfigError):
        resolve_criteria(rubric, case, "set/case")


@FAST
@given(documents, documents, documents, documents)
def test_load_project_tree(gate: Any, model: Any, canaries: Any, rubric: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if isinstance(gate, dict):
            gate.setdefault("candidate", "model.yaml")
        if isinstance(model, dict):
            model.setdefault("provider", "sim")
        if isinstance(canaries, dict):
            canaries.setdefault("cases", [{"id": "a", "prompt": "{{ case.id }}"}])
        if isinstance(rubric, dict):
            rubric.setdefault("criteria", [{"id": "c", "check": "contains_all",
                                            "values": "{{ case.expected.facts }}"}])
        (root / "evalgate.yaml").write_text(yaml.safe_dump(gate), encoding="utf-8")
        (root / "model.yaml").write_text(yaml.safe_dump(model), encoding="utf-8")
        (root / "canaries").mkdir()
        (root / "canaries" / "set.yaml").write_text(yaml.safe_dump(canaries), encoding="utf-8")
        (root / "rubrics").mkdir()
        (root / "rubrics" / "default.yaml").write_text(yaml.safe_dump(rubric), encoding="utf-8")
        with contextlib.suppress(ConfigError):
            load_project(root)
