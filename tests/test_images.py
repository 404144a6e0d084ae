"""Image canaries over real HTTP: images on a user turn reach the server as OpenAI
`image_url` parts and Anthropic `image` blocks (checked with the SDKs' own request types),
the simulator answers from the canary's references, bad images are usage errors, the cache
key covers the bytes and the reports show the images."""

from __future__ import annotations

import base64
import json
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import yaml
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionUserMessageParam
from pydantic import TypeAdapter

from evalgate.engine.persist import cache_key, model_identity
from evalgate.engine.planning import plan_calls
from evalgate.errors import ConfigError
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.sim import SimServer
from evalgate.sim.launch import sim_cases
from tests.conftest import sim_model, write_project
from tests.pngs import png
from tests.wire_server import Canned, forward_to, wire_server

RED = png(4, 4, (255, 0, 0))
RUBRIC = {"criteria": [{"id": "facts", "check": "facts"}]}
CASES: list[dict[str, Any]] = [
    {"id": "colour", "prompt": "What colour is this swatch?", "images": ["img/red.png"],
     "expected": {"reference": "The swatch is red.", "facts": ["red"]}},
    {"id": "turns", "messages": [
        {"role": "system", "content": "Name colours."},
        {"role": "user", "content": "And these two?", "images": ["img/red.png",
                                                                 "img/blue.png"]}],
     "expected": {"reference": "Red and blue.", "facts": ["red", "blue"]}},
]


def project_at(root: Path, model: dict[str, Any], cases: list[dict[str, Any]] | None = None
               ) -> Path:
    write_project(root, model=model, rubric=RUBRIC, canary_text=yaml.safe_dump(
        {"rubric": "basic", "cases": cases or CASES}, sort_keys=False))
    (root / "canaries" / "img").mkdir(exist_ok=True)
    (root / "canaries" / "img" / "red.png").write_bytes(RED)
    (root / "canaries" / "img" / "blue.png").write_bytes(png(2, 2, (0, 0, 255)))
    return root



@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_images_reach_the_server_in_each_api_shape(tmp_path: Path, provider: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALGATE_TEST_KEY", "k")
    project = load_project(project_at(tmp_path, sim_model()))
    with SimServer(cases=sim_cases(project.entries)) as sim:
        sim.add_profile("m", {"latency_ms": 0})
        with wire_server(forward_to(sim.base_url)) as wire:
            model = {"provider": provider, "model": "m", "base_url": f"{wire.base_url}/v1",
                     "api_key_env": "EVALGATE_TEST_KEY", "timeout_s": 5}
            (tmp_path / "models" / "candidate.yaml").write_text(yaml.safe_dump(model))
            result = run_project(load_project(tmp_path))
            requests = [body for _, body in wire.requests]
    assert [r.text for r in result.records] == ["The swatch is red.", "Red and blue."]
    assert all(r.passed for r in result.records)
    # the two canaries' requests arrive in either order (concurrent calls)
    [one] = [b for b in requests if "Name colours." not in json.dumps(b)]
    [two] = [b for b in requests if "Name colours." in json.dumps(b)]
    first, second = one["messages"][-1], two["messages"][-1]
    if provider == "openai":
        adapter: TypeAdapter[Any] = TypeAdapter(ChatCompletionUserMessageParam)
        for turn in (first, second):
            adapter.validate_python(turn)
        assert first["content"][0] == {"type": "text", "text": "What colour is this swatch?"}
        url = first["content"][1]["image_url"]["url"]
        assert url == "data:image/png;base64," + base64.b64encode(RED).decode()
        assert [p["type"] for p in second["content"]] == ["text", "image_url", "image_url"]
    else:
        adapter = TypeAdapter(MessageParam)
        for turn in (first, second):
            adapter.validate_python(turn)
        source = first["content"][0]["source"]
        assert source == {"type": "base64", "media_type": "image/png",
                          "data": base64.b64encode(RED).decode()}
        assert [b["type"] for b in second["content"]] == ["image", "image", "text"]
        assert two["system"] == "Name colours."


def test_the_cache_key_covers_the_image_bytes(tmp_path: Path) -> None:
    root = project_at(tmp_path, sim_model())

    def key() -> str:
        project = load_project(root)
        call = plan_calls(project.candidate, project.entries, 1)[0]
        return cache_key(model_identity(project.candidate), call)

    before = key()
    (root / "canaries" / "img" / "red.png").write_bytes(png(4, 4, (250, 0, 0)))
    assert key() != before  # same path, other bytes: another answer


def test_reports_show_the_images(tmp_path: Path) -> None:
    from evalgate.report.html import render_html
    from evalgate.report.junit import render_junit
    from evalgate.report.markdown import render_markdown

    cases = [{**CASES[0], "expected": {"reference": "No idea.", "facts": ["red"]}}]
    result = run_project(load_project(project_at(tmp_path, sim_model(), cases)))
    [record] = result.records
    assert not record.passed and record.images == ["img/red.png"]
    [image] = result.images["set/colour"]
    assert image.media_type == "image/png" and image.bytes == len(RED)
    html = render_html(result)
    src = "data:image/png;base64," + base64.b64encode(RED).decode()
    assert f'<img class="thumb" src="{src}" alt="img/red.png"' in html
    assert "img-src data:" in html
    assert "images: img/red.png" in render_junit(result)
    assert "images: img/red.png" in render_markdown(result)
    # an edited result whose thumbnail is not an image data URI shows the name only
    image.thumbnail = "javascript:alert(1)"
    html = render_html(result)
    assert "javascript:" not in html and "image: img/red.png" in html
    assert "img-src 'none'" in unescape(html)


@pytest.mark.parametrize(("write", "message"), [
    (lambda p: p.write_text("not an image at all"), "is not a PNG, JPEG, GIF or WebP"),
    (lambda p: None, "does not exist"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * (5 * 1024 * 1024)), "byte cap"),
])
def test_a_bad_image_is_a_usage_error_naming_file_line_and_field(
        tmp_path: Path, write: Any, message: str) -> None:
    cases = [CASES[0], {"id": "bad", "prompt": "And this?", "images": ["img/bad.png"],
                        "expected": {"facts": ["x"]}}]
    root = project_at(tmp_path, sim_model(), cases)
    write(root / "canaries" / "img" / "bad.png")
    with pytest.raises(ConfigError) as err:
        load_project(root)
    text = (root / "canaries" / "set.yaml").read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if "img/bad.png" in t)
    assert f"canaries/set.yaml:{line}: cases.1.images.0:" in str(err.value)
    assert message in str(err.value) and "'img/bad.png'" in str(err.value)


def test_generic_http_gets_tools_and_images_as_template_variables(tmp_path: Path) -> None:
    tool = {"type": "function", "function": {"name": "describe", "parameters": {
        "type": "object", "properties": {}}}}
    cases = [{**CASES[0], "tools": [tool]}]
    body = ('{"prompt": {{ prompt | tojson }}, "tools": {{ tools | tojson }}, '
            '"images": {{ images | map(attribute="data_uri") | list | tojson }}, '
            '"types": {{ images | map(attribute="media_type") | list | tojson }}}')
    with wire_server(lambda path, request: Canned({"text": "The swatch is red."})) as wire:
        model = {"provider": "http", "model": "inhouse", "timeout_s": 5,
                 "http": {"url": f"{wire.base_url}/generate", "body": body}}
        result = run_project(load_project(project_at(tmp_path, model, cases)))
        [(_, sent)] = wire.requests
    assert result.records[0].passed
    assert sent["images"] == ["data:image/png;base64," + base64.b64encode(RED).decode()]
    assert sent["types"] == ["image/png"] and sent["tools"] == [tool]
