"""Prompt templates: Jinja2 in a sandbox, strict about undefined variables, compiled once per distinct text.

Prompts are plain text sent to a video model, so autoescape is off. Variables: project ``vars`` < shot ``vars``,
plus ``shot`` (``id``, 0-based ``index``, 1-based ``number``) and ``project`` (``name``). A template that fails
(syntax, undefined variable, a sandbox violation, any error while rendering) gives a message, never an exception:
the caller turns it into a Problem at the prompt's line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

_MARKERS = ("{{", "{%", "{#")
MAX_RENDERED = 100_000  # far beyond any valid prompt; stops `{{ 'x' * 10**10 }}` from eating the machine


@dataclass(frozen=True)
class Rendered:
    """The rendered text, or ``error`` (a message for the user) when the template could not be rendered."""

    text: str = ""
    error: str | None = None


class _LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox: no attribute escapes, and no ``items.append(...)`` changing the vars every later shot
    sees. It does not bound huge strings or numbers, so ``*`` and ``**`` are bounded here too.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 100:
            raise jinja2.exceptions.SecurityError("exponent too large")
        if operator == "*" and _repeat_size(left, right) > MAX_RENDERED:
            raise jinja2.exceptions.SecurityError("result too large")
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, str | list | tuple) and len(result) > MAX_RENDERED:
            raise jinja2.exceptions.SecurityError("result too large")
        return result


@dataclass(frozen=True)
class _Compiled:
    template: jinja2.Template
    names: tuple[str, ...]  # the variables it reads: a render depends on these values and nothing else


class TemplateRenderer:
    """Renders many templates that share few distinct texts.

    Each text is compiled once, and each (text, values of the variables it reads) is rendered once: a negative
    prompt in ``defaults`` that reads only project vars renders once for 10,000 shots. That is sound because
    rendering is a pure function here: the nondeterministic ``random`` filter and ``lipsum`` are removed (a prompt
    that changed on every load would change every shot's fingerprint).
    """

    def __init__(self) -> None:
        self._env = _LimitedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)
        self._env.filters.pop("random", None)
        self._env.globals.pop("lipsum", None)
        self._globals = dict(self._env.globals)
        self._compiled: dict[str, _Compiled | Rendered] = {}
        self._rendered: dict[tuple[str, tuple[str, ...]], Rendered] = {}

    def render(self, source: str, *, variables: Mapping[str, Any]) -> Rendered:
        if not any(marker in source for marker in _MARKERS):
            return Rendered(source)  # plain text: nothing to compile
        compiled = self._compile(source)
        if isinstance(compiled, Rendered):
            return compiled
        key = (source, tuple(repr(variables[n]) if n in variables else "\0undefined" for n in compiled.names))
        rendered = self._rendered.get(key)
        if rendered is None:
            rendered = self._render(compiled.template, variables)
            self._rendered[key] = rendered
        return rendered

    def _render(self, template: jinja2.Template, variables: Mapping[str, Any]) -> Rendered:
        # What Template.render does, minus merging the globals into a fresh ChainMap-backed context on every
        # call (two thirds of its cost): the globals are merged here, into the one dict the context reads.
        context = template.new_context({**self._globals, **variables}, shared=True)
        try:
            return Rendered("".join(template.root_render_func(context)))
        except jinja2.UndefinedError as exc:
            return Rendered(error=f"undefined template variable: {_undefined_name(exc)}")
        except jinja2.exceptions.SecurityError as exc:
            return Rendered(error=f"template not allowed (sandbox): {exc}")
        except jinja2.TemplateError as exc:
            return Rendered(error=f"template error: {exc}")
        except Exception as exc:  # user templates can raise anything (1/0, bad filters): report it
            return Rendered(error=f"template error: {type(exc).__name__}: {exc}")

    def _compile(self, source: str) -> _Compiled | Rendered:
        cached = self._compiled.get(source)
        if cached is None:
            try:
                names = tuple(sorted(jinja2.meta.find_undeclared_variables(self._env.parse(source))))
                cached = _Compiled(self._env.from_string(source), names)
            except jinja2.TemplateSyntaxError as exc:
                where = f" (template line {exc.lineno})" if exc.lineno and exc.lineno > 1 else ""
                cached = Rendered(error=f"template syntax error: {exc.message}{where}")
            self._compiled[source] = cached
        return cached


def template_variables(
    *,
    project_vars: Mapping[str, Any],
    shot_vars: Mapping[str, Any],
    shot_id: str,
    shot_index: int,
    project_name: str,
) -> dict[str, Any]:
    """The variables a shot's templates see: project vars, then shot vars over them, then ``shot`` and ``project``."""
    return {
        **project_vars,
        **shot_vars,
        "shot": {"id": shot_id, "index": shot_index, "number": shot_index + 1},
        "project": {"name": project_name},
    }


def _repeat_size(left: Any, right: Any) -> int:
    """How long ``left * right`` would be if it repeats a sequence (checked before Python builds it)."""
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(count, int) and not isinstance(count, bool):
            return len(seq) * count
    return 0


def _undefined_name(exc: jinja2.UndefinedError) -> str:
    # StrictUndefined says "'hero' is undefined"; keep that, and hint where variables come from.
    return f"{exc.message}; define it in the project's or the shot's `vars`"
