"""A shot as the spec wrote it: its own fields over ``defaults`` (and a variant's over those), each value remembering
the YAML node it came from, so that every problem the resolver finds names the right line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.spec.yamlsource import PathKey


class ShotView:
    """A shot's fields with ``defaults`` underneath, remembering which YAML node each value came from.

    Values the schema rejected are left out: neither present nor missing, so they are not judged twice.
    """

    __slots__ = ("index", "raw", "unusable_keys", "values", "variant", "variant_paths")

    def __init__(
        self,
        index: int,
        raw: Mapping[str, Any],
        defaults: Mapping[str, Any],
        *,
        bad: frozenset[str],
        bad_defaults: frozenset[str],
    ) -> None:
        self.index = index
        self.raw = raw
        own: Mapping[str, Any]
        if bad or bad_defaults:
            inherited = {k: v for k, v in defaults.items() if k not in raw and k not in bad_defaults}
            own = {k: v for k, v in raw.items() if k not in bad}
            self.unusable_keys = bad | {k for k in bad_defaults if k not in raw}
            self.values = {**inherited, **own}
        else:
            own = raw  # nothing to leave out: read as it is, merged once below
            self.unusable_keys = frozenset()
            self.values = {**defaults, **raw}
        base_vars = defaults.get("vars") if "vars" not in bad_defaults else None
        own_vars = own.get("vars")
        if isinstance(base_vars, dict) and isinstance(own_vars, dict):
            self.values["vars"] = {**base_vars, **own_vars}  # defaults' vars under the shot's own
        self.variant: str | None = None
        self.variant_paths: dict[str, PathKey] = {}

    def with_variant(self, name: str, fields: Mapping[str, Any], paths: Mapping[str, PathKey]) -> ShotView:
        """This shot with a variant's fields over its own (its ``vars`` over the shot's); each field located where
        the variant (or the matrix) sets it."""
        view = ShotView.__new__(ShotView)
        view.index, view.raw, view.unusable_keys = self.index, self.raw, self.unusable_keys
        view.values = {**self.values, **fields}
        if isinstance(fields.get("vars"), dict):
            view.values["vars"] = {**self.merged_vars(), **fields["vars"]}
        view.variant = name
        view.variant_paths = dict(paths)
        return view

    def unusable(self, key: str) -> bool:
        return key in self.unusable_keys

    def has(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def path(self, key: str) -> PathKey:
        found = self.variant_paths.get(key)
        if found is not None:
            return found
        return ("shots", self.index, key) if key in self.raw else ("defaults", key)

    def merged_vars(self) -> dict[str, Any]:
        found = self.values.get("vars")
        return found if isinstance(found, dict) else {}
