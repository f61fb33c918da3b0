"""The project JSON Schema: where it lives, and its errors turned into located, readable Problems.

The schema file is ``schemas/project.schema.json`` in the repository; an installed wheel carries a copy as
``orchestrator/_data/project.schema.json``. The validator is built once per process: a 10,000-shot spec must not
pay for it 10,000 times.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from orchestrator.errors import ConfigError, Problem
from orchestrator.spec import images as imagelib
from orchestrator.spec.yamlsource import PathKey, Source, describe_path, lookup

SCHEMA_NAME = "project.schema.json"
KNOWN_VERSIONS: tuple[int, ...] = (1,)

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # orchestrator/
_CANDIDATES = (
    _PACKAGE_DIR / "_data" / SCHEMA_NAME,  # installed wheel
    _PACKAGE_DIR.parent / "schemas" / SCHEMA_NAME,  # running from a source checkout
)
# Unquoted `16:9` is a base-60 integer in YAML 1.1: say so rather than "969 is not one of ...".
_SEXAGESIMAL = {16 * 60 + 9: "16:9", 9 * 60 + 16: "9:16", 1 * 60 + 1: "1:1"}
_TYPE_NAMES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "object": "a mapping",
    "array": "a list",
    "boolean": "true or false",
    "null": "empty",
}


def schema_path() -> Path:
    """The schema file this installation uses."""
    for candidate in _CANDIDATES:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"the project schema {SCHEMA_NAME} is missing from this installation; reinstall orchestrator")


def schema_text() -> str:
    """The schema as published (what ``orchestrator schema`` prints)."""
    return schema_path().read_text(encoding="utf-8")


@cache
def load_schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@dataclass(frozen=True)
class _Validators:
    """Built once per process. ``outline`` checks everything but the inside of each shot; shots are checked field
    by field with ``fields``, memoised by value: 10,000 shots repeat few distinct values (same mode, same image
    set, same prompt template), and jsonschema costs tens of microseconds per node it descends into.
    """

    full: Validator
    outline: Validator
    shot: Validator
    fields: dict[str, Validator]
    required: tuple[str, ...]
    # Fields whose only rule is "a string matching this pattern" (the shot id): a value that matches needs no
    # jsonschema at all. Ids are the one field every shot has and no two shots share, so the memo never helps.
    quick: dict[str, re.Pattern[str]]


@cache
def _end_anchored(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA-262, where `$` matches only at the very end; Python's `$` also matches before a
    # final newline, which let `id: "a\n"` through as a "filesystem-safe" id. `\Z` is the ECMA meaning.
    return re.compile(re.sub(r"(?<!\\)\$$", r"\\Z", pattern))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterable[ValidationError]:
    if validator.is_type(instance, "string") and not _end_anchored(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# jsonschema's `extend` has no annotations; the class it returns is a Draft 2020-12 validator.
_Draft: Any = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator, {"pattern": _pattern}
)


@cache
def _validators() -> _Validators:
    schema = load_schema()
    full = _Draft(schema)
    outline_schema = copy.deepcopy(schema)
    shots = outline_schema["properties"]["shots"]
    shots.pop("items", None)
    outline = _Draft(outline_schema)
    shot_schema = schema["$defs"]["shot"]
    fields: dict[str, Validator] = {key: full.evolve(schema=sub) for key, sub in shot_schema["properties"].items()}
    quick = {
        key: _end_anchored(sub["pattern"])
        for key, sub in shot_schema["properties"].items()
        if sub.get("type") == "string" and "pattern" in sub and set(sub) <= _ONLY_TYPE_AND_PATTERN
    }
    return _Validators(full, outline, full.evolve(schema=shot_schema), fields, tuple(shot_schema["required"]), quick)


_ONLY_TYPE_AND_PATTERN = frozenset({"type", "pattern", "description"})


def check_version(source: Source) -> list[Problem]:
    """A spec names a version this tool knows, or nothing else can be said about it."""
    data = source.data
    if not isinstance(data, dict):
        kind = _kind(data)
        return [source.problem((), f"a spec is a mapping of keys (version, project, shots, ...), not {kind}")]
    known = ", ".join(str(v) for v in KNOWN_VERSIONS)
    if "version" not in data:
        return [source.problem((), f"missing `version`; this orchestrator knows spec version(s) {known}")]
    version = data["version"]
    if isinstance(version, bool) or version not in KNOWN_VERSIONS:
        message = f"unknown spec version {version!r}; this orchestrator knows spec version(s) {known}"
        if isinstance(version, str) and version.strip().isdigit() and int(version) in KNOWN_VERSIONS:
            message = f"`version` is the string {version!r}; write {int(version)} without quotes"
        return [source.problem(("version",), message)]
    return []


def validate(source: Source) -> list[tuple[PathKey, Problem]]:
    """Every schema violation in ``source.data`` with the path of its node, located, with the shot id if in a shot.

    Reports the same errors as validating the whole document at once, only faster on long specs.
    """
    validators = _validators()
    found: dict[Problem, PathKey] = {}
    for path, error in _located(validators.outline.iter_errors(source.data), ()):
        _add(found, source, path, error)
    shots = source.data.get("shots") if isinstance(source.data, dict) else None
    if isinstance(shots, list):
        memo: dict[tuple[str, str], list[ValidationError]] = {}
        for index, shot in enumerate(shots):
            for path, error in _shot_errors(validators, shot, index, memo):
                _add(found, source, path, error)
    return [(path, problem) for problem, path in found.items()]


def _shot_errors(
    validators: _Validators, shot: Any, index: int, memo: dict[tuple[str, str], list[ValidationError]]
) -> Iterable[tuple[PathKey, ValidationError]]:
    where: PathKey = ("shots", index)
    if not isinstance(shot, dict) or any(key not in shot for key in validators.required):
        yield from _located(validators.shot.iter_errors(shot), where)
        return
    if any(key not in validators.fields for key in shot):
        # Unknown keys: let jsonschema word it, from the shot's own schema, once per shot that has them.
        unknown = (e for e in validators.shot.iter_errors(shot) if e.validator == "additionalProperties")
        yield from _located(unknown, where)
    for key, value in shot.items():
        field_validator = validators.fields.get(key)
        if field_validator is None:
            continue
        quick = validators.quick.get(key)
        if quick is not None and value.__class__ is str and quick.search(value):
            continue  # valid, as jsonschema would find it: a string that matches the field's one pattern
        memo_key = (key, repr(value))  # repr tells 1 from 1.0, True and "1"
        errors = memo.get(memo_key)
        if errors is None:
            errors = list(_flatten(field_validator.iter_errors(value)))
            memo[memo_key] = errors
        for error in errors:
            yield (*where, key, *error.absolute_path), error


def _located(errors: Iterable[ValidationError], prefix: PathKey) -> Iterable[tuple[PathKey, ValidationError]]:
    for error in _flatten(errors):
        yield (*prefix, *error.absolute_path), error


def _add(found: dict[Problem, PathKey], source: Source, path: PathKey, error: ValidationError) -> None:
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        for key in _unknown_keys(error):  # one problem per unknown key, each at its own line
            found.setdefault(_unknown_key(source, error, path, key), (*path, key))
        return
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        # A bad name (of a var or an image set): point at the name itself.
        key_path = (*path, error.instance)
        message = f"`{_field(key_path)}`: the name {error.instance!r} is not valid; use {_description(error)}"
        found.setdefault(source.problem(key_path, message, shot=shot_id_at(source.data, path), key=True), key_path)
        return
    found.setdefault(source.problem(path, _message(error, path), shot=shot_id_at(source.data, path)), path)


def shot_id_at(data: Any, path: PathKey) -> str | None:
    """The id of the shot that ``path`` points into, if it is inside ``shots`` and the shot has a string id; with the
    variant's name inside one of its ``variants`` (``s03 variant wide``)."""
    if len(path) >= 2 and path[0] == "shots" and isinstance(path[1], int):
        shot_id = lookup(data, ("shots", path[1], "id"))
        shot = shot_id if isinstance(shot_id, str) else f"#{path[1] + 1}"
        if len(path) >= 5 and path[2] == "variants":
            return f"{shot} variant {path[3]}"  # a problem inside the variant (a bad name is the shot's)
        return shot
    return None


def _flatten(errors: Iterable[ValidationError]) -> Iterable[ValidationError]:
    """Replace an anyOf/oneOf failure by the cause in the branch that was clearly meant, when one was.

    A branch whose error is deeper than the value itself (``{url: 5}``: the ``url`` branch, at ``url``) was
    meant; otherwise a branch that failed on anything but the value's type (a list of 1 image: the list branch,
    on ``minItems``) was meant, if it is the only one. Else the message falls back to the schema's description.
    """
    for error in errors:
        cause = _meant(error) if error.validator in ("anyOf", "oneOf") else None
        if cause is None:
            yield error
        else:
            yield from _flatten([cause])


def _meant(error: ValidationError) -> ValidationError | None:
    context = list(error.context or ())
    branches: dict[object, list[ValidationError]] = {}
    for cause in context:
        branch = cause.relative_schema_path[0] if cause.relative_schema_path else None
        branches.setdefault(branch, []).append(cause)
    # A branch whose value had the right shape fails only inside it; one that also failed on the value itself
    # (`{path: a, url: b}`: two keys) was not clearly meant, even if something inside it is wrong too.
    deeper = [c for causes in branches.values() if all(len(c.relative_path) > 0 for c in causes) for c in causes]
    if deeper:
        return max(deeper, key=lambda e: len(e.relative_path))
    typed = [causes for causes in branches.values() if all(c.validator not in ("type", "$ref") for c in causes)]
    return typed[0][0] if len(typed) == 1 else None


def _unknown_key(source: Source, error: ValidationError, path: PathKey, key: str) -> Problem:
    allowed = sorted(_schema_of(error).get("properties", {}))
    inside = _field(path) if len(path) != 2 or path[0] != "shots" else ""
    where = f" in `{inside}`" if inside else ""
    message = f"unknown key `{key}`{where}"
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean `{close[0]}`?"
    elif allowed:
        message += f"; allowed: {', '.join(allowed)}"
    return source.problem((*path, key), message, shot=shot_id_at(source.data, path), key=True)


def _unknown_keys(error: ValidationError) -> list[str]:
    allowed = _schema_of(error).get("properties", {})
    instance: dict[str, Any] = error.instance  # type: ignore[assignment]  # callers check it is a mapping
    return [str(key) for key in instance if key not in allowed] or ["?"]


def _message(error: ValidationError, path: PathKey) -> str:
    name = f"`{_field(path)}`" if path else "the spec"
    value: Any = error.instance
    validator = error.validator
    if validator == "enum":
        return _enum_message(name, value, error.validator_value, path)
    if validator == "const":
        return f"{name} must be {error.validator_value!r}, not {value!r}"
    if validator == "type":
        wanted = error.validator_value
        names = [wanted] if isinstance(wanted, str) else [str(n) for n in wanted]  # type: ignore[union-attr]
        expected = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        return f"{name} must be {expected}, not {_kind(value)}"
    if validator == "required":
        missing = _missing_key(error)
        return f"{name} is missing the required key `{missing}`" if path else f"missing required key `{missing}`"
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{name} is {value!r}; {_bounds(error)}"
    if validator in ("minItems", "maxItems"):
        return f"{name} has {len(value)} item(s); {_count_rule(error)}"
    if validator == "minLength":
        return f"{name} must not be empty"
    if validator == "pattern":
        return _pattern_message(name, value, path) or f"{name} {value!r} is not valid: {_description(error)}"
    if validator in ("anyOf", "oneOf"):
        return f"{name} is not valid: {_description(error)}"
    return f"{name}: {error.message}"


def _pattern_message(name: str, value: Any, path: PathKey) -> str | None:
    """The tool's own words for the pattern failures it also checks itself (URLs, NUL, unportable ids)."""
    if not isinstance(value, str):
        return None
    if imagelib.looks_like_url(value):
        problem = imagelib.url_problem(value)
        if problem is not None:
            return f"{name}: {problem}"
    if "\0" in value:
        return f"{name} contains a NUL character, which no file name can hold"
    if path and path[-1] == "id":
        return unportable_id(value)
    return None


_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{n}" for n in range(10)), *(f"lpt{n}" for n in range(10))}
)


def unportable_id(shot_id: str) -> str | None:
    """Why a shot id (already filesystem-safe on POSIX) cannot be an output folder on Windows, if it cannot.

    The schema's id pattern says the same; this gives the reason in words.
    """
    if shot_id.split(".", 1)[0].casefold() in _WINDOWS_DEVICES:
        return f"shot id `{shot_id}` is a reserved device name on Windows; its output folder could not be created there"
    if shot_id.endswith("."):
        return f"shot id `{shot_id}` ends with a dot, which Windows drops from folder names; remove the dot"
    return None


def _enum_message(name: str, value: Any, options: Any, path: PathKey) -> str:
    choices = ", ".join(str(option) for option in options)
    message = f"{name} must be one of {choices}, not {value!r}"
    if path and path[-1] == "aspect_ratio" and isinstance(value, int) and value in _SEXAGESIMAL:
        ratio = _SEXAGESIMAL[value]
        # Editors that read YAML 1.2 see a string here and call it valid: say why this tool does not.
        message = (
            f'{name}: quote it, "{ratio}": unquoted, YAML 1.1 (which this tool reads) takes {ratio} for the '
            f"base-60 number {value}"
        )
    elif path and path[-1] == "duration" and isinstance(value, str) and value.strip() in ("5", "10"):
        message += f" (write the number {value.strip()} without quotes)"
    return message


def _bounds(error: ValidationError) -> str:
    schema = _schema_of(error)
    low, high = schema.get("minimum"), schema.get("maximum")
    if "exclusiveMinimum" in schema:
        return f"it must be more than {schema['exclusiveMinimum']}" + (
            f" and at most {high}" if high is not None else ""
        )
    if low is not None and high is not None:
        return f"it must be between {low} and {high}"
    return f"it must be at least {low}" if low is not None else f"it must be at most {high}"


def _count_rule(error: ValidationError) -> str:
    low, high = _schema_of(error).get("minItems"), _schema_of(error).get("maxItems")
    if low is not None and high is not None:
        return f"it needs {low} to {high}"
    return f"it needs at least {low}" if low is not None else f"it allows at most {high}"


def _missing_key(error: ValidationError) -> str:
    required: list[str] = error.validator_value  # type: ignore[assignment]
    instance = error.instance if isinstance(error.instance, dict) else {}
    missing = [key for key in required if key not in instance]
    return str(missing[0]) if missing else str(required)


def _schema_of(error: ValidationError) -> dict[str, Any]:
    return error.schema if isinstance(error.schema, dict) else {}


def _description(error: ValidationError) -> str:
    description = _schema_of(error).get("description")
    return str(description) if description else error.message


def _field(path: PathKey) -> str:
    # Inside a shot the shot id is already in the message: name the field relative to the shot.
    if len(path) >= 2 and path[0] == "shots" and isinstance(path[1], int):
        return describe_path(path[2:]) or "shot"
    return describe_path(path)


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
