"""Checking that a manifest or snapshot read from disk has the shape its schema gives, in one place.

jsonschema is imported on first use: `status`, `report` and `run` beside a store never read a JSON manifest, and
need not pay for it at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jsonschema


def shape_problem(data: Any, schema: dict[str, Any]) -> str | None:
    """The first place where ``data`` does not have ``schema``'s shape (``where: what``), or ``None``."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(data))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "top level"
    return f"{where}: {error.message}"


_VALIDATORS: dict[int, jsonschema.Draft202012Validator] = {}  # by the schema's id: the module-level schemas live on


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    import jsonschema

    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        validator = _VALIDATORS[id(schema)] = jsonschema.Draft202012Validator(schema)
    return validator
