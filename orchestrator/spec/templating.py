"""Prompt templates: Jinja2 in a sandbox, strict about undefined variables, compiled once per distinct text.

Prompts are plain text sent to a video model, so autoescape is off. Variables: project ``vars`` < shot ``vars``,
plus ``shot`` (``id``, 0-based ``index``, 1-based ``number``) and ``project`` (``name``). A template that fails
(syntax, undefined variable, a sandbox violation, any error while rendering) gives a message, never an exception:
the caller turns it into a Problem at the prompt's line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import update_wrapper
from typing import Any

import jinja2
import jinja2.meta
from jinja2 import Environment, Undefined
from jinja2.nodes import EvalContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

_MARKERS = ("{{", "{%", "{#")
MAX_RENDERED = 100_000  # far beyond any valid prompt; stops `{{ 'x' * 10**10 }}` from eating the machine
MAX_STEPS = 200_000  # loop iterations plus calls in one render: `for` inside `for` must not spin for hours
MAX_SECONDS = 5.0  # a last resort: no prompt needs more than milliseconds
# The template text itself: prompts render to at most 500 characters, so 10,000 leaves room for any logic while
# keeping compilation (Jinja's parser, then Python's compiler, both costly per node) to about 0.1 s.
MAX_TEMPLATE = 10_000
MAX_BUILT = 10_000_000  # characters (or items) of strings and lists one render may build, all steps together
_BIG_WIDTH = re.compile(r"\d{6,}")  # a width or precision of a million or more in a format string
# Filters and str methods whose numeric arguments set the size of what they build (widths, counts).
_SIZING_FILTERS = frozenset({"center", "indent", "batch", "slice", "tojson"})
_SIZING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


@dataclass(frozen=True)
class Rendered:
    """The rendered text, or ``error`` (a message for the user) when the template could not be rendered."""

    text: str = ""
    error: str | None = None


class _Budget:
    """What one render may still spend: steps (loop iterations and calls) and time."""

    def __init__(self) -> None:
        self.steps = 0
        self.built = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def charge(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise jinja2.exceptions.SecurityError(f"more than {MAX_STEPS:,} loop iterations and calls")
        if self.steps % 1024 == 0 and time.monotonic() > self.deadline:
            raise jinja2.exceptions.SecurityError(f"rendering took over {MAX_SECONDS:g} s")

    def build(self, size: int) -> None:
        # A loop inside `{% set x %}...{% endset %}` appends to a buffer this module never sees: count what each
        # operation builds instead, so such a loop stops long before the memory runs out.
        self.built += size
        if self.built > MAX_BUILT:
            raise jinja2.exceptions.SecurityError(f"the template builds over {MAX_BUILT:,} characters")


_BUDGET: ContextVar[_Budget] = ContextVar("template_budget")


class _LimitedNamespace(Namespace):
    """``namespace()`` whose attributes cannot grow past the output limit (``ns.s = ns.s ~ ns.s`` in a loop)."""

    def __setitem__(self, name: str, value: Any) -> None:
        _check_size(value)
        super().__setitem__(name, value)


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox: no attribute escapes, and no ``items.append(...)`` changing the vars every later shot
    sees. Jinja's sandbox bounds ``range`` but neither time nor memory, so this one also counts loop iterations and
    calls against a per-render budget, and refuses operations that would build a huge string before Python builds
    it: repetition, format widths, ``join``/``replace`` amplification, numeric arguments in the millions.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _limited_filter(name, function) for name, function in self.filters.items()}

    @staticmethod
    def concat(chunks: Iterable[str]) -> str:
        # Macros, `{% set %}` blocks and `{% filter %}` join their output with this: bound it before joining.
        parts = list(chunks)
        if sum(map(len, parts)) > MAX_RENDERED:
            raise jinja2.exceptions.SecurityError("result too large")
        return "".join(parts)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `shot.number` on a plain dict: Jinja tries the attribute first and gets there through an AttributeError,
        # a third of rendering a big spec's prompts. A dict has no attribute of that name, so go straight to the key,
        # with the same result (the value, or undefined when the key is missing).
        if obj.__class__ is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 100:
            raise jinja2.exceptions.SecurityError("exponent too large")
        if operator == "*" and _repeat_size(left, right) > MAX_RENDERED:
            raise jinja2.exceptions.SecurityError("result too large")
        if operator == "%" and isinstance(left, str):
            _check_format(left, right if isinstance(right, tuple) else (right,))
        result = super().call_binop(context, operator, left, right)
        _check_size(result)
        return result

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _BUDGET.get().charge()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            _check_str_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        _check_size(result)
        return result

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(template, (*args, *kwargs.values()))
            return str(wrapped(*args, **kwargs))

        return checked

    def loop_budget(self, iterable: Any) -> Iterator[Any]:
        """Wraps every ``{% for %}`` iterable (see ``_count_loops``): each iteration is charged to the budget."""
        for item in iterable:
            _BUDGET.get().charge()
            yield item


def _check_size(value: Any) -> None:
    if isinstance(value, str | list | tuple):
        if len(value) > MAX_RENDERED:
            raise jinja2.exceptions.SecurityError("result too large")
        _BUDGET.get().build(len(value))


def _check_arguments(args: Iterable[Any]) -> None:
    # `center(10**9)`, `indent(10**9)`, `batch(10**9, 'x')`, `'a'.ljust(10**9)`: a width or count in the millions
    # is an attack or a mistake in a prompt template.
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_RENDERED:
            raise jinja2.exceptions.SecurityError(f"argument {arg} too large")


def _check_format(template: str, args: Iterable[Any]) -> None:
    if _BIG_WIDTH.search(template):
        raise jinja2.exceptions.SecurityError("format width too large")
    if "*" in template or ":{" in template:
        _check_arguments(args)  # `%*d` and `{0:{1}}` take the width from the arguments


def _check_str_method(owner: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    if name in _SIZING_METHODS:
        _check_arguments((*args, *kwargs.values()))
        return
    if not args:
        return
    if name == "join" and isinstance(args[0], list | tuple):
        size = len(owner) * len(args[0]) + sum(len(str(item)) for item in args[0])
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        size = len(owner) + (owner.count(args[0]) if args[0] else len(owner) + 1) * len(args[1])
    else:
        return
    if size > MAX_RENDERED:
        raise jinja2.exceptions.SecurityError("result too large")


def _limited_filter(name: str, function: Any) -> Any:
    """A filter that refuses huge widths and counts and checks the size of what it would build."""

    def limited(*args: Any, **kwargs: Any) -> Any:
        values = [arg for arg in args if not isinstance(arg, jinja2.runtime.Context | EvalContext | Environment)]
        if name in _SIZING_FILTERS:
            _check_arguments((*values[1:], *kwargs.values()))
        if name == "format" and values and isinstance(values[0], str):
            _check_format(values[0], values[1:])
        if name == "join" and values and not isinstance(values[0], str | list | tuple | Undefined):
            # Materialize a generator (`range(n) | map(...)`) so its size can be checked before joining.
            first = len(args) - len(values)
            items = list(values[0])
            _check_size(items)
            args, values = (*args[:first], items, *args[first + 1 :]), [items, *values[1:]]
        if name in ("join", "replace") and values and isinstance(values[0], str | list | tuple):
            _check_filter_growth(name, values, kwargs)
        result = function(*args, **kwargs)
        _check_size(result)
        return result

    return update_wrapper(limited, function)  # keeps pass_context / pass_eval_context markers


def _check_filter_growth(name: str, values: list[Any], kwargs: Mapping[str, Any]) -> None:
    first = values[0]
    if name == "join":
        separator = values[1] if len(values) > 1 else kwargs.get("d", "")
        items = list(first)
        size = len(str(separator)) * len(items) + sum(len(str(item)) for item in items)
    else:
        old = values[1] if len(values) > 1 else ""
        new = values[2] if len(values) > 2 else ""
        text = str(first)
        size = len(text) + (text.count(str(old)) if old else len(text) + 1) * len(str(new))
    if size > MAX_RENDERED:
        raise jinja2.exceptions.SecurityError("result too large")


def _count_loops(ast: jinja2.nodes.Template) -> jinja2.nodes.Template:
    """Route every ``{% for %}`` iterable through ``loop_budget``, so nested loops stop at the step budget."""
    for loop in ast.find_all(jinja2.nodes.For):
        counter = jinja2.nodes.Name("_loop_budget", "load", lineno=loop.lineno)
        loop.iter = jinja2.nodes.Call(counter, [loop.iter], [], None, None, lineno=loop.lineno)
    return ast


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
        self._env.globals["namespace"] = _LimitedNamespace
        self._env.globals["_loop_budget"] = self._env.loop_budget
        self._globals = dict(self._env.globals)
        self._compiled: dict[str, _Compiled | Rendered] = {}
        self._rendered: dict[tuple[str, tuple[str, ...]], Rendered] = {}

    def render(self, source: str, *, variables: Mapping[str, Any]) -> Rendered:
        compiled = self._compiled.get(source)
        if compiled is None:
            compiled = self._compiled[source] = self._compile_new(source)
        if isinstance(compiled, Rendered):  # plain text, or a template that does not compile
            return compiled
        key = (source, tuple([repr(variables[n]) if n in variables else "\0undefined" for n in compiled.names]))
        rendered = self._rendered.get(key)
        if rendered is None:
            rendered = self._render(compiled.template, variables)
            self._rendered[key] = rendered
        return rendered

    def _render(self, template: jinja2.Template, variables: Mapping[str, Any]) -> Rendered:
        # What Template.render does, minus merging the globals into a fresh ChainMap-backed context on every
        # call (two thirds of its cost): the globals are merged here, into the one dict the context reads.
        context = template.new_context({**self._globals, **variables}, shared=True)
        token = _BUDGET.set(_Budget())
        try:
            return Rendered(_bounded_join(template.root_render_func(context)))
        except jinja2.UndefinedError as exc:
            return Rendered(error=f"undefined template variable: {_undefined_name(exc)}")
        except jinja2.exceptions.SecurityError as exc:
            return Rendered(error=f"template not allowed (sandbox): {exc}")
        except jinja2.TemplateError as exc:
            return Rendered(error=f"template error: {exc}")
        except Exception as exc:  # user templates can raise anything (1/0, bad filters): report it
            return Rendered(error=f"template error: {type(exc).__name__}: {exc}")
        finally:
            _BUDGET.reset(token)

    def _compile_new(self, source: str) -> _Compiled | Rendered:
        """The compiled template, or what it renders to when that is known now: plain text as it is (nothing to
        compile), an error for one that cannot compile. Made once per distinct text (see ``render``)."""
        if not any(marker in source for marker in _MARKERS):
            return Rendered(source)
        if len(source) > MAX_TEMPLATE:
            return Rendered(error=f"the template is {len(source):,} characters; the limit is {MAX_TEMPLATE:,}")
        try:
            ast = self._env.parse(source)
            names = tuple(sorted(jinja2.meta.find_undeclared_variables(ast)))
            template = self._env.from_string(_count_loops(ast))
            # Jinja keeps a template's globals as a ChainMap over the environment's, and every render copies its keys
            # into a set (ChainMap iteration is Python code): a plain dict of the same globals, built once, is cheap.
            template.globals = dict(template.globals)
            return _Compiled(template, names)
        except jinja2.TemplateSyntaxError as exc:
            where = f" (template line {exc.lineno})" if exc.lineno and exc.lineno > 1 else ""
            return Rendered(error=f"template syntax error: {exc.message}{where}")
        except RecursionError:
            # Jinja's parser and code generator recurse once per nesting level and per chained operator.
            return Rendered(
                error="the template nests too deeply to compile (parentheses, blocks, or a long chain of "
                "filters or operators); simplify it"
            )


def template_variables(
    *,
    project_vars: Mapping[str, Any],
    shot_vars: Mapping[str, Any],
    shot_id: str,
    shot_index: int,
    project_name: str,
    variant: str | None = None,
) -> dict[str, Any]:
    """The variables a shot's templates see: project vars, then shot vars over them (a variant's over those), then
    ``shot`` (its id, index, number and variant name, ``None`` without one) and ``project``."""
    return {
        **project_vars,
        **shot_vars,
        "shot": {"id": shot_id, "index": shot_index, "number": shot_index + 1, "variant": variant},
        "project": {"name": project_name},
    }


def _bounded_join(chunks: Iterable[str]) -> str:
    """The template's output, refused as soon as it passes ``MAX_RENDERED`` (not after building all of it)."""
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_RENDERED:
            raise jinja2.exceptions.SecurityError("result too large")
        parts.append(chunk)
    return "".join(parts)


def _repeat_size(left: Any, right: Any) -> int:
    """How long ``left * right`` would be if it repeats a sequence (checked before Python builds it)."""
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(count, int) and not isinstance(count, bool):
            return len(seq) * count
    return 0


def _undefined_name(exc: jinja2.UndefinedError) -> str:
    # StrictUndefined says "'hero' is undefined"; keep that, and hint where variables come from.
    return f"{exc.message}; define it in the project's or the shot's `vars`"
