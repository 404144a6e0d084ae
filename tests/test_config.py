"""Gate config and model config loading: every bad file gives a located ConfigError."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evalgate.errors import ConfigError, MissingSecretError, Problem
from evalgate.pipeline.project import load_project
from evalgate.spec.config import (
    METRICS,
    GateConfig,
    LoadedModel,
    ModelConfig,
    find_gate_config,
    load_gate_config,
    load_model_config,
)

REPO = Path(__file__).resolve().parents[1]


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(fn: Callable[..., Any], *args: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    return info.value


def only_problem(error: ConfigError) -> Problem:
    assert len(error.problems) == 1, error.problems
    return error.problems[0]


def gate_error(tmp_path: Path, text: str, name: str = "evalgate.yaml") -> Problem:
    return only_problem(config_error(load_gate_config, write(tmp_path, name, text)))


def model_error(tmp_path: Path, text: str, name: str = "models/m.yaml") -> ConfigError:
    return config_error(load_model_config, write(tmp_path, name, text), tmp_path)


def load_model(tmp_path: Path, text: str, name: str = "models/m.yaml") -> LoadedModel:
    return load_model_config(write(tmp_path, name, text), tmp_path)


# --------------------------------------------------------------------------- gate config


def test_shipped_gate_config_loads() -> None:
    gate = load_gate_config(REPO / "evalgate.yaml")
    config = gate.config
    assert config.candidate == "models/candidate.yaml"
    assert config.canaries == ["canaries/"]
    assert config.rubrics == ["rubrics/"]
    assert config.baseline == "models/baseline.yaml"
    assert config.samples == 3
    assert config.canary_failures == "report"
    assert config.gate.on_inconclusive == "fail"
    assert config.gate.metrics["hallucination_rate"].max == 0.10
    assert config.gate.metrics["hallucination_rate"].min is None
    assert config.gate.metrics["latency_p95_ms"].max == 1200
    assert config.gate.vs_baseline.p95_ratio == 1.50
    assert set(config.gate.metrics) <= set(METRICS)
    assert gate.root == REPO
    assert gate.resolve("models/candidate.yaml") == REPO / "models" / "candidate.yaml"


@pytest.mark.parametrize("name", ["baseline", "candidate"])
def test_shipped_model_configs_load(name: str) -> None:
    model = load_model_config(REPO / "models" / f"{name}.yaml", REPO)
    assert model.name == name
    assert model.config.provider == "sim"
    assert model.config.sim is not None
    assert model.system_prompt == (REPO / "prompts" / "support.txt").read_text()


def test_minimal_gate_config_defaults(tmp_path: Path) -> None:
    config = load_gate_config(write(tmp_path, "evalgate.yaml", "candidate: m.yaml\n")).config
    assert config == GateConfig(candidate="m.yaml")
    assert config.canaries == ["canaries"]
    assert config.samples == 1
    assert config.gate.on_inconclusive == "fail"
    assert config.gate.metrics == {}


def test_single_path_strings_become_lists(tmp_path: Path) -> None:
    config = load_gate_config(write(tmp_path, "evalgate.yaml", """\
        candidate: m.yaml
        canaries: sets
        rubrics: [r1, r2]
        """)).config
    assert config.canaries == ["sets"]
    assert config.rubrics == ["r1", "r2"]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    problem = gate_error(tmp_path, """\
        candidate: m.yaml
        samples: 2
        smaples: 3
        """)
    assert (problem.file, problem.line, problem.field) == ("evalgate.yaml", 3, "smaples")
    assert str(problem).startswith("evalgate.yaml:3: smaples: ")
    assert "unknown field" in problem.message


def test_unknown_nested_key_gets_dotted_field(tmp_path: Path) -> None:
    problem = gate_error(tmp_path, """\
        candidate: m.yaml
        gate:
          metrics:
            pass_rate:
              minimum: 0.9
        """)
    assert problem.field == "gate.metrics.pass_rate.minimum"
    assert problem.line == 5
    assert "evalgate.yaml:5: gate.metrics.pass_rate.minimum:" in str(problem)


def test_wrong_type(tmp_path: Path) -> None:
    problem = gate_error(tmp_path, """\
        candidate: m.yaml
        samples: many
        """)
    assert (problem.file, problem.line, problem.field) == ("evalgate.yaml", 2, "samples")
    assert "integer" in problem.message
    assert "'many'" in problem.message


@pytest.mark.parametrize(("line", "field"), [
    ("samples: 0", "samples"),
    ("concurrency: 0", "concurrency"),
    ("canary_failures: maybe", "canary_failures"),
])
def test_out_of_range_and_bad_choice(tmp_path: Path, line: str, field: str) -> None:
    problem = gate_error(tmp_path, f"candidate: m.yaml\n{line}\n")
    assert (problem.line, problem.field) == (2, field)


def test_bad_on_inconclusive_policy(tmp_path: Path) -> None:
    problem = gate_error(tmp_path, """\
        candidate: m.yaml
        gate:
          on_inconclusive: ignore
        """)
    assert (problem.line, problem.field) == (3, "gate.on_inconclusive")
    assert "'fail'" in problem.message


def test_unknown_metric_name(tmp_path: Path) -> None:
    problem = gate_error(tmp_path, """\
        candidate: m.yaml
        gate:
          metrics:
            pass_rate: {min: 0.9}
            speed_ms: {max: 10}
        """)
    assert problem.file == "evalgate.yaml"
    assert problem.field == "gate.metrics.speed_ms"
    assert problem.line == 5  # the unknown metric's own line
    assert "'speed_ms'" in problem.message
    assert "'pass_rate'" in problem.message  # the known names are listed
    assert str(problem).startswith("evalgate.yaml:5: gate.metrics.speed_ms: ")


def test_threshold_needs_a_bound(tmp_path: Path) -> None:
    problem = gate_error(tmp_path, """\
        candidate: m.yaml
        gate:
          metrics:
            latency_p95_ms: {}
        """)
    assert (problem.line, problem.field) == (4, "gate.metrics.latency_p95_ms")
    assert "'max' or 'min'" in problem.message


def test_threshold_min_above_max(tmp_path: Path) -> None:
    problem = gate_error(tmp_path, """\
        candidate: m.yaml
        gate:
          metrics:
            pass_rate: {min: 0.9, max: 0.5}
        """)
    assert problem.field == "gate.metrics.pass_rate"
    assert "'min' (0.9) is above 'max' (0.5)" in problem.message


def test_missing_candidate_key(tmp_path: Path) -> None:
    problem = gate_error(tmp_path, "samples: 2\n")
    assert problem.field == "candidate"
    assert "required" in problem.message.lower()


def test_several_problems_in_one_file_reported_together(tmp_path: Path) -> None:
    error = config_error(load_gate_config, write(tmp_path, "evalgate.yaml", """\
        candidate: m.yaml
        samples: many
        colour: blue
        """))
    located = {(p.line, p.field) for p in error.problems}
    assert located == {(2, "samples"), (3, "colour")}
    assert str(error).startswith("2 problems in evalgate input files:")
    assert "evalgate.yaml:2: samples:" in str(error)
    assert "evalgate.yaml:3: colour:" in str(error)


def test_document_must_be_a_mapping(tmp_path: Path) -> None:
    problem = gate_error(tmp_path, "- candidate\n- m.yaml\n")
    assert problem.line == 1
    assert "mapping" in problem.message


@pytest.mark.parametrize(("text", "line"), [
    ("candidate: m.yaml\nsamples: 2\nreport: dir: x\n", 3),
    ("candidate: m.yaml\ngate:\n  alpha: 0.1\n\ton_inconclusive: warn\n", 4),
    ("candidate: m.yaml\nrubrics: [a, b\nsamples: 2\n", 3),
])
def test_invalid_yaml_reports_line(tmp_path: Path, text: str, line: int) -> None:
    problem = gate_error(tmp_path, text)
    assert problem.file == "evalgate.yaml"
    assert problem.line == line
    assert problem.message.startswith("invalid YAML")
    assert str(problem).startswith(f"evalgate.yaml:{line}: invalid YAML")


def test_duplicate_top_level_key(tmp_path: Path) -> None:
    problem = gate_error(tmp_path, """\
        candidate: m.yaml
        samples: 2
        concurrency: 4
        samples: 3
        """)
    assert (problem.line, problem.field) == (4, "samples")
    assert "duplicate key 'samples'" in problem.message
    assert "first at line 2" in problem.message


def test_duplicate_nested_key(tmp_path: Path) -> None:
    problem = gate_error(tmp_path, """\
        candidate: m.yaml
        gate:
          metrics:
            pass_rate: {min: 0.9}
            pass_rate: {min: 0.8}
        """)
    assert (problem.line, problem.field) == (5, "gate.metrics.pass_rate")
    assert "first at line 4" in problem.message


# --------------------------------------------------------------------------- finding it


def test_find_prefers_evalgate_yaml(tmp_path: Path) -> None:
    write(tmp_path, "evalgate.yaml", "candidate: a.yaml\n")
    write(tmp_path, "pyproject.toml", '[tool.evalgate]\ncandidate = "b.yaml"\n')
    assert find_gate_config(tmp_path, None) == tmp_path / "evalgate.yaml"


def test_find_accepts_yml(tmp_path: Path) -> None:
    write(tmp_path, "evalgate.yml", "candidate: a.yaml\n")
    assert find_gate_config(tmp_path, None) == tmp_path / "evalgate.yml"


def test_pyproject_table_is_found_and_loaded(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", """\
        [project]
        name = "demo"

        [tool.evalgate]
        candidate = "models/c.yaml"
        samples = 3

        [tool.evalgate.gate.metrics]
        pass_rate = {min = 0.9}
        """)
    path = find_gate_config(tmp_path, None)
    assert path == tmp_path / "pyproject.toml"
    config = load_gate_config(path).config
    assert config.candidate == "models/c.yaml"
    assert config.samples == 3
    assert config.gate.metrics["pass_rate"].min == 0.9


def test_pyproject_problems_point_at_table_header(tmp_path: Path) -> None:
    path = write(tmp_path, "pyproject.toml", """\
        [project]
        name = "demo"
        version = "1"

        [tool.evalgate]
        candidate = "models/c.yaml"
        samples = "many"
        typo = 1
        """)
    error = config_error(load_gate_config, path)
    assert {p.field for p in error.problems} == {"samples", "typo"}
    for problem in error.problems:
        assert problem.line == 5
        assert problem.file.startswith("pyproject.toml")
        assert "[tool.evalgate]" in problem.file
    assert "pyproject.toml [tool.evalgate]:5: samples:" in str(error)


def test_pyproject_unknown_metric(tmp_path: Path) -> None:
    path = write(tmp_path, "pyproject.toml", """\
        [tool.evalgate]
        candidate = "c.yaml"

        [tool.evalgate.gate.metrics]
        speed = {max = 1}
        """)
    problem = only_problem(config_error(load_gate_config, path))
    assert (problem.line, problem.field) == (1, "gate.metrics.speed")
    assert "'speed'" in problem.message


def test_pyproject_without_table_is_not_a_gate_config(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "demo"\n[tool.ruff]\nline-length = 9\n')
    problem = only_problem(config_error(find_gate_config, tmp_path, None))
    assert problem.file == str(tmp_path)
    assert "evalgate.yaml" in problem.message
    assert "[tool.evalgate]" in problem.message


def test_invalid_toml(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", "[tool.evalgate\ncandidate = 1\n")
    problem = only_problem(config_error(find_gate_config, tmp_path, None))
    assert problem.file.endswith("pyproject.toml")
    assert "invalid TOML" in problem.message


def test_no_config_at_all(tmp_path: Path) -> None:
    problem = only_problem(config_error(find_gate_config, tmp_path, None))
    assert "no gate config" in problem.message
    assert "--evalgate-config" in problem.message


def test_explicit_config_missing(tmp_path: Path) -> None:
    write(tmp_path, "evalgate.yaml", "candidate: a.yaml\n")  # must not be used instead
    missing = str(tmp_path / "conf" / "gate.yaml")
    problem = only_problem(config_error(find_gate_config, tmp_path, missing))
    assert problem.file == missing
    assert "not found" in problem.message


def test_explicit_config_wins(tmp_path: Path) -> None:
    write(tmp_path, "evalgate.yaml", "candidate: a.yaml\n")
    other = write(tmp_path, "conf/gate.yaml", "candidate: b.yaml\n")
    path = find_gate_config(tmp_path, str(other))
    assert path == other
    gate = load_gate_config(path)
    assert gate.config.candidate == "b.yaml"
    assert gate.root == (tmp_path / "conf").resolve()


def test_gate_fingerprint_tracks_content(tmp_path: Path) -> None:
    a = load_gate_config(write(tmp_path, "a/evalgate.yaml", "candidate: m.yaml\nsamples: 2\n"))
    b = load_gate_config(write(tmp_path, "b/evalgate.yaml", "samples: 2\ncandidate: m.yaml\n"))
    c = load_gate_config(write(tmp_path, "c/evalgate.yaml", "candidate: m.yaml\nsamples: 3\n"))
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()


# --------------------------------------------------------------------------- candidate file


def test_missing_candidate_file(tmp_path: Path) -> None:
    error = config_error(load_model_config, tmp_path / "models" / "nope.yaml", tmp_path)
    problem = only_problem(error)
    assert problem.file == "models/nope.yaml"
    assert "file not found" in problem.message


def test_missing_candidate_file_via_project(tmp_path: Path) -> None:
    write(tmp_path, "evalgate.yaml", "candidate: models/gone.yaml\n")
    write(tmp_path, "rubrics/r.yaml", "criteria:\n  - {id: j, check: json_valid}\n")
    write(tmp_path, "canaries/s.yaml", "- {id: a, prompt: p}\n")
    error = config_error(load_project, tmp_path)
    problem = only_problem(error)
    assert problem.file == "models/gone.yaml"
    assert "file not found" in str(error)


# --------------------------------------------------------------------------- model config


def test_model_name_defaults_to_file_stem(tmp_path: Path) -> None:
    assert load_model(tmp_path, "provider: sim\n", "models/fast-v2.yaml").name == "fast-v2"
    named = load_model(tmp_path, "name: prod\nprovider: sim\n", "models/other.yaml")
    assert named.name == "prod"


def test_model_unknown_key_and_wrong_nested_type(tmp_path: Path) -> None:
    error = model_error(tmp_path, """\
        provider: openai
        model: gpt-x
        temprature: 0.2
        pricing:
          input_per_mtok: cheap
        """)
    located = {(p.file, p.line, p.field) for p in error.problems}
    assert located == {("models/m.yaml", 3, "temprature"),
                       ("models/m.yaml", 5, "pricing.input_per_mtok")}


def test_unknown_provider(tmp_path: Path) -> None:
    problem = only_problem(model_error(tmp_path, "provider: gemini\nmodel: x\n"))
    assert (problem.line, problem.field) == (1, "provider")
    assert "'gemini'" in problem.message


@pytest.mark.parametrize(("text", "line", "field", "needle"), [
    ("provider: openai\n", 1, "model", "provider 'openai' needs 'model'"),
    ("name: x\nprovider: anthropic\nmodel: ''\n", 3, "model",
     "provider 'anthropic' needs 'model'"),
    ("name: x\nprovider: http\n", 2, "http", "provider 'http' needs an 'http' section"),
    ("provider: callable\n", 1, "callable",
     "provider 'callable' needs 'callable: package.module:function'"),
    ("provider: callable\ncallable: mypkg.answer\n", 2, "callable",
     "must look like 'package.module:function'"),
    ("provider: openai\nmodel: x\nsim: {latency_ms: 5}\n", 3, "sim",
     "only goes with provider 'sim'"),
    ("provider: sim\nsystem_prompt: a\nsystem_prompt_file: p.txt\n", 3, "system_prompt_file",
     "not both"),
    ("provider: sim\nprompt_template: a\nprompt_template_file: t.j2\n", 3,
     "prompt_template_file", "not both"),
])
def test_provider_requirements(tmp_path: Path, text: str, line: int, field: str,
                               needle: str) -> None:
    """Cross-field rules name their field and its line (or the provider line when absent)."""
    problem = only_problem(model_error(tmp_path, text))
    assert problem.file == "models/m.yaml"
    assert (problem.line, problem.field) == (line, field)
    assert needle in problem.message


@pytest.mark.parametrize("text", [
    "provider: openai\nmodel: gpt-4o-mini\napi_key_env: OPENAI_API_KEY\n",
    "provider: anthropic\nmodel: claude\n",
    "provider: http\nhttp: {url: 'http://127.0.0.1:1/x'}\n",
    "provider: callable\ncallable: mypkg.mod:answer\n",
    "provider: sim\nsim: {latency_ms: 5}\n",
])
def test_valid_provider_configs(tmp_path: Path, text: str) -> None:
    model = load_model(tmp_path, text)
    assert model.config.provider in ("openai", "anthropic", "http", "callable", "sim")


def test_http_spec_is_validated_too(tmp_path: Path) -> None:
    problem = only_problem(model_error(tmp_path, """\
        provider: http
        http:
          url: http://127.0.0.1:1/x
          method: GET
        """))
    assert (problem.line, problem.field) == (4, "http.method")


def test_sim_profile_is_validated(tmp_path: Path) -> None:
    problem = only_problem(model_error(tmp_path, """\
        provider: sim
        sim:
          latency_ms: 5
          hallucination_rate: 1.5
        """))
    assert (problem.line, problem.field) == (4, "sim.hallucination_rate")


def test_system_prompt_file_is_relative_to_model_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "prompts/sys.txt", "You are terse.\n")
    write(tmp_path, "models/deep/sys.txt", "Wrong file.\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write(elsewhere, "prompts/sys.txt", "Also the wrong file.\n")
    monkeypatch.chdir(elsewhere)
    model = load_model(tmp_path, "provider: sim\nsystem_prompt_file: ../../prompts/sys.txt\n",
                       "models/deep/m.yaml")
    assert model.system_prompt == "You are terse.\n"


def test_inline_system_prompt(tmp_path: Path) -> None:
    model = load_model(tmp_path, "provider: sim\nsystem_prompt: Be brief.\n")
    assert model.system_prompt == "Be brief."
    assert load_model(tmp_path, "provider: sim\n", "models/n.yaml").system_prompt is None


def test_missing_system_prompt_file(tmp_path: Path) -> None:
    problem = only_problem(model_error(tmp_path, "provider: sim\nsystem_prompt_file: nope.txt\n"))
    assert "models/m.yaml" in problem.file
    assert "system_prompt_file" in str(problem)
    assert "nope.txt" in str(problem)
    assert "not found" in problem.message


def test_prompt_template_file_loaded(tmp_path: Path) -> None:
    write(tmp_path, "models/t.j2", "Q: {{ prompt }}\n")
    model = load_model(tmp_path, "provider: sim\nprompt_template_file: t.j2\n")
    assert model.prompt_template == "Q: {{ prompt }}\n"


def test_missing_prompt_template_file(tmp_path: Path) -> None:
    problem = only_problem(model_error(tmp_path, "provider: sim\nprompt_template_file: t.j2\n"))
    assert "models/m.yaml" in problem.file
    assert "t.j2" in problem.file
    assert "not found" in problem.message


def test_prompt_template_syntax_error_inline(tmp_path: Path) -> None:
    problem = only_problem(model_error(tmp_path, """\
        provider: sim
        model: m
        prompt_template: "Answer {{ prompt "
        """))
    assert (problem.file, problem.line, problem.field) == ("models/m.yaml", 3, "prompt_template")
    assert "template error" in problem.message


def test_prompt_template_syntax_error_in_block_scalar_points_at_its_line(tmp_path: Path) -> None:
    problem = only_problem(model_error(tmp_path, """\
        provider: sim
        prompt_template: |
          Context: {{ context }}
          Question: {{ prompt }
          Answer briefly.
        """))
    assert problem.field == "prompt_template"
    assert problem.line == 4  # the broken line itself, not the key above the text
    assert "template error" in problem.message


def test_prompt_template_syntax_error_unclosed_block(tmp_path: Path) -> None:
    problem = only_problem(model_error(tmp_path, """\
        provider: sim
        prompt_template: |
          Intro
          {% if context %}{{ context }}
          {{ prompt }}
        """))
    assert problem.field == "prompt_template"
    assert problem.line == 5  # jinja reports the last line, where the open block runs out
    assert "endif" in problem.message


def test_prompt_template_file_syntax_error_names_the_template_file(tmp_path: Path) -> None:
    write(tmp_path, "models/t.j2", "line one\nline two\n{% for x in y %}\n")
    problem = only_problem(model_error(tmp_path, """\
        provider: sim
        model: m
        prompt_template_file: t.j2
        """))
    assert "t.j2" in problem.file
    assert problem.line == 3
    assert "template error" in problem.message


# --------------------------------------------------------------------------- secrets


def test_api_key_absent_when_no_env_named(tmp_path: Path) -> None:
    assert load_model(tmp_path, "provider: sim\n").api_key() is None


def test_api_key_missing_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVALGATE_TEST_KEY_UNSET", raising=False)
    model = load_model(tmp_path, """\
        provider: openai
        model: gpt-x
        api_key_env: EVALGATE_TEST_KEY_UNSET
        """)
    with pytest.raises(MissingSecretError) as info:
        model.api_key()
    assert isinstance(info.value, ConfigError)
    assert "EVALGATE_TEST_KEY_UNSET" in str(info.value)
    assert "m.yaml" in str(info.value)
    assert info.value.problems[0].field == "api_key_env"


def test_api_key_empty_counts_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALGATE_TEST_KEY_EMPTY", "")
    model = load_model(tmp_path,
                       "provider: openai\nmodel: x\napi_key_env: EVALGATE_TEST_KEY_EMPTY\n")
    with pytest.raises(MissingSecretError, match="EVALGATE_TEST_KEY_EMPTY"):
        model.api_key()


def test_api_key_read_from_environment_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVALGATE_TEST_KEY", raising=False)
    model = load_model(tmp_path, "provider: openai\nmodel: x\napi_key_env: EVALGATE_TEST_KEY\n")
    fingerprint = model.fingerprint()
    monkeypatch.setenv("EVALGATE_TEST_KEY", "sk-test-abc123")
    assert model.api_key() == "sk-test-abc123"
    assert "sk-test-abc123" not in repr(model)
    assert model.fingerprint() == fingerprint  # the key is not part of what a run records


def test_errors_never_contain_a_secret_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-9f8e7d6c5b4a39281706"
    monkeypatch.setenv("EVALGATE_TEST_SECRET", secret)
    monkeypatch.delenv("EVALGATE_TEST_OTHER", raising=False)
    # A broken config whose key variable is set: the validation errors do not read the key.
    error = model_error(tmp_path, """\
        provider: openai
        model: x
        api_key_env: EVALGATE_TEST_SECRET
        timeout_s: soon
        """)
    assert secret not in str(error)
    # A key variable that is not set: only its name is reported.
    model = load_model(tmp_path, "provider: openai\nmodel: x\napi_key_env: EVALGATE_TEST_OTHER\n",
                       "models/other.yaml")
    with pytest.raises(MissingSecretError) as info:
        model.api_key()
    assert secret not in str(info.value)


def test_key_pasted_into_api_key_env_is_not_echoed(tmp_path: Path) -> None:
    secret = "sk-proj-Zx81-qq0Lm2"
    model = load_model(tmp_path, f"provider: openai\nmodel: x\napi_key_env: {secret}\n")
    with pytest.raises(MissingSecretError) as info:
        model.api_key()
    assert secret not in str(info.value)
    assert "api_key_env" in str(info.value)


# --------------------------------------------------------------------------- fingerprint

BASE_MODEL = """\
name: {name}
provider: sim
model: m
params: {{temperature: {temperature}}}
system_prompt_file: sys.txt
"""


def fingerprint_of(tmp_path: Path, folder: str, *, name: str = "a", temperature: float = 0.2,
                   prompt: str = "Be brief.") -> str:
    write(tmp_path, f"{folder}/sys.txt", prompt)
    path = write(tmp_path, f"{folder}/m.yaml",
                 BASE_MODEL.format(name=name, temperature=temperature))
    return load_model_config(path, tmp_path).fingerprint()


def test_fingerprint_is_stable(tmp_path: Path) -> None:
    assert fingerprint_of(tmp_path, "a") == fingerprint_of(tmp_path, "b")


def test_fingerprint_ignores_name(tmp_path: Path) -> None:
    assert fingerprint_of(tmp_path, "a", name="one") == fingerprint_of(tmp_path, "b", name="two")


def test_fingerprint_changes_with_params(tmp_path: Path) -> None:
    assert (fingerprint_of(tmp_path, "a", temperature=0.2)
            != fingerprint_of(tmp_path, "b", temperature=0.7))


def test_fingerprint_changes_with_system_prompt_file_content(tmp_path: Path) -> None:
    assert (fingerprint_of(tmp_path, "a", prompt="Be brief.")
            != fingerprint_of(tmp_path, "b", prompt="Be thorough."))


def test_fingerprint_same_for_inline_or_file_prompt(tmp_path: Path) -> None:
    write(tmp_path, "models/p.txt", "Be brief.")
    from_file = load_model(tmp_path, "provider: sim\nsystem_prompt_file: p.txt\n", "models/f.yaml")
    inline = load_model(tmp_path, "provider: sim\nsystem_prompt: Be brief.\n", "models/i.yaml")
    assert from_file.fingerprint() == inline.fingerprint()


def test_fingerprint_changes_with_pricing_and_model(tmp_path: Path) -> None:
    base = load_model(tmp_path, "provider: sim\nmodel: m\n", "models/a.yaml").fingerprint()
    priced = load_model(tmp_path, "provider: sim\nmodel: m\npricing: {input_per_mtok: 1}\n",
                        "models/b.yaml").fingerprint()
    other = load_model(tmp_path, "provider: sim\nmodel: n\n", "models/c.yaml").fingerprint()
    assert len({base, priced, other}) == 3


def test_total_deadline() -> None:
    config = ModelConfig(provider="sim", timeout_s=10, max_retries=3, max_retry_after_s=5)
    assert config.total_deadline_s == 10 * 4 + 5
    assert ModelConfig(provider="sim", deadline_s=7).total_deadline_s == 7


def test_threshold_must_be_finite(tmp_path: Path) -> None:
    problem = gate_error(tmp_path, """\
        candidate: m.yaml
        gate:
          metrics:
            latency_p95_ms: {max: .nan}
        """)
    assert (problem.line, problem.field) == (4, "gate.metrics.latency_p95_ms.max")
    assert "finite" in problem.message
