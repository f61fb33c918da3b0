"""Prompt templates: sandboxed, strict, plain text, compiled and rendered once per distinct input."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.spec.templating import MAX_TEMPLATE, TemplateRenderer, template_variables


@pytest.fixture
def renderer() -> TemplateRenderer:
    return TemplateRenderer()


def variables(**extra: Any) -> dict[str, Any]:
    return template_variables(
        project_vars={"style": "film", "hero": "Project"},
        shot_vars=extra,
        shot_id="s01",
        shot_index=0,
        project_name="harbor",
    )


def test_variables_precedence_and_builtins(renderer: TemplateRenderer) -> None:
    rendered = renderer.render(
        "{{ hero }} / {{ style }} / {{ shot.id }} {{ shot.index }} {{ shot.number }} / {{ project.name }}",
        variables=variables(hero="Mara"),
    )
    assert rendered.error is None
    assert rendered.text == "Mara / film / s01 0 1 / harbor"


def test_plain_text_and_no_autoescape(renderer: TemplateRenderer) -> None:
    assert renderer.render("rain & <fog>", variables={}).text == "rain & <fog>"
    assert renderer.render("{{ x }}", variables={"x": "<b>&</b>"}).text == "<b>&</b>"


def test_undefined_variable_is_a_message(renderer: TemplateRenderer) -> None:
    rendered = renderer.render("{{ villain }} runs", variables=variables())
    assert rendered.text == ""
    assert rendered.error is not None
    assert "'villain' is undefined" in rendered.error
    # StrictUndefined: even in filters and attribute access.
    assert renderer.render("{{ villain | upper }}", variables={}).error is not None
    assert renderer.render("{{ shot.nope }}", variables=variables()).error is not None


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ shot.__class__ }}",
        "{{ 'x' * 100000000 }}",
        "{{ 10 ** 100000 }}",
        "{{ range(10000000) | list }}",
        "{{ names.append('x') }}",
        "{{ table.update(a=1) }}",
    ],
)
def test_sandbox_violations_are_messages(renderer: TemplateRenderer, source: str) -> None:
    shared = variables(names=["ann"], table={})
    rendered = renderer.render(source, variables=shared)
    assert rendered.error is not None
    assert rendered.text == ""
    assert shared["names"] == ["ann"] and shared["table"] == {}  # nothing a later shot sees has changed


def test_syntax_and_runtime_errors_are_messages(renderer: TemplateRenderer) -> None:
    syntax = renderer.render("{% if %}", variables={})
    assert syntax.error is not None and syntax.error.startswith("template syntax error")
    runtime = renderer.render("{{ 1 / 0 }}", variables={})
    assert runtime.error == "template error: ZeroDivisionError: division by zero"


def test_nondeterministic_helpers_are_removed(renderer: TemplateRenderer) -> None:
    # A prompt must render the same every time, or every load would change the fingerprint.
    assert renderer.render("{{ [1, 2, 3] | random }}", variables={}).error is not None
    assert renderer.render("{{ lipsum(1) }}", variables={}).error is not None


def test_useful_jinja_still_works(renderer: TemplateRenderer) -> None:
    source = "{% for i in range(3) %}{{ i }}{% endfor %} {{ names | join(', ') | title }} {{ 'x' if flag else 'y' }}"
    rendered = renderer.render(source, variables={"names": ["ann", "bo"], "flag": False})
    assert rendered.text == "012 Ann, Bo y"


def test_templates_are_compiled_once(renderer: TemplateRenderer, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[Any] = []
    original = renderer._env.from_string

    def counting(source: Any) -> Any:
        compiled.append(source)  # the parsed template (loops rewritten to count iterations), not the text
        return original(source)

    monkeypatch.setattr(renderer._env, "from_string", counting)
    for index in range(50):
        text = renderer.render("{{ hero }} #{{ n }}", variables={"hero": "Mara", "n": index}).text
        assert text == f"Mara #{index}"
    assert len(compiled) == 1


def test_render_cache_keys_on_the_values_the_template_reads(renderer: TemplateRenderer) -> None:
    source = "{{ a }}{% if b is defined %}+{{ b }}{% endif %}"
    assert renderer.render(source, variables={"a": 1}).text == "1"
    assert renderer.render(source, variables={"a": 1, "b": None}).text == "1+None"
    assert renderer.render(source, variables={"a": 1, "b": 2}).text == "1+2"
    assert renderer.render(source, variables={"a": "1"}).text == "1"
    assert renderer.render(source, variables={"a": 1, "unrelated": 5}).text == "1"
    assert renderer.render("{{ a }}", variables={"a": True}).text == "True"
    assert renderer.render("{{ a }}", variables={"a": 1}).text == "1"


@pytest.mark.parametrize(
    "source",
    [
        "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}",
        "{% if true %}" * 300 + "x" + "{% endif %}" * 300,
        "{{ 'a'" + "|lower" * 1500 + " }}",
        "{{ 'a'" + " + 'a'" * 1500 + " }}",
    ],
    ids=["parentheses", "nested-ifs", "filter-chain", "plus-chain"],
)
def test_templates_too_deep_to_compile_are_a_message(renderer: TemplateRenderer, source: str) -> None:
    # Each raised RecursionError from Jinja's parser or code generator, which only syntax errors were caught for.
    rendered = renderer.render(source, variables={})
    assert rendered.error is not None and "nests too deeply to compile" in rendered.error


def test_template_size_is_bounded_before_compiling(renderer: TemplateRenderer, monkeypatch: pytest.MonkeyPatch) -> None:
    # 100,000 x `{{ style }}` took 8-9 s and 900 MB to compile; it is refused on its length, without parsing.
    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed")

    huge = "{{ style }}" * 100_000
    monkeypatch.setattr(renderer._env, "parse", no_parse)
    rendered = renderer.render(huge, variables={"style": "s"})
    assert rendered.error == f"the template is {len(huge):,} characters; the limit is {MAX_TEMPLATE:,}"
    monkeypatch.undo()
    assert renderer.render("{{ style }}" * 900, variables={"style": "s"}).text == "s" * 900


def test_a_dicts_keys_read_as_attributes_and_its_methods_stay_methods(renderer: TemplateRenderer) -> None:
    # `shot.number` goes straight to the key (no AttributeError on the way): same answers as Jinja's own lookup.
    values = {"v": {"name": "n", "keys": 1}}
    assert renderer.render("{{ v.name }}", variables=values).text == "n"
    assert renderer.render("{{ v.keys }}", variables=values).text.startswith("<built-in method keys of dict")
    assert renderer.render("{{ v['keys'] }}", variables=values).text == "1"
    missing = renderer.render("{{ v.nope }}", variables=values).error
    assert missing is not None and "'dict object' has no attribute 'nope'" in missing
    assert renderer.render("{{ v.__class__ }}", variables=values).text == ""  # still the sandbox's to refuse
