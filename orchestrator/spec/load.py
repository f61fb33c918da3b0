"""Load a project spec and resolve it into fully specified shots, or say everything that is wrong with it.

Stages, each adding located problems and none stopping at the first one:

1. read and parse the YAML with line numbers (``orchestrator.spec.yamlsource``);
2. check ``version`` (an unknown version stops here: nothing else can be judged);
3. validate against the JSON Schema (``orchestrator.spec.schema``);
4. resolve each shot the schema accepted: defaults applied, image sets expanded, images identified by content,
   templates rendered, then the semantic checks the schema cannot express.

``check_project`` never raises for a bad spec; ``load_project`` raises ``SpecError`` with every problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator.errors import Problem, SpecError
from orchestrator.plan.pricing import CARD_KEYS, LEGACY_KEYS, Pricing
from orchestrator.spec import images as imagelib
from orchestrator.spec.fingerprint import fingerprint_of
from orchestrator.spec.schema import check_version, validate
from orchestrator.spec.shot import (
    ASPECT_RATIOS,
    DEFAULT_MODEL,
    DURATIONS,
    KNOWN_MODELS,
    MODES,
    BudgetEntry,
    DynamicMask,
    ImageRef,
    Limits,
    ResolvedProject,
    ResolvedShot,
    TrajectoryPoint,
)
from orchestrator.spec.templating import TemplateRenderer, template_variables
from orchestrator.spec.view import ShotView
from orchestrator.spec.yamlsource import PathKey, Source, describe_path, read_source

DEFAULT_OUTPUT_DIR = "renders"
DEFAULT_MODE = "std"
DEFAULT_DURATION = 5
DEFAULT_ASPECT_RATIO = "16:9"
MAX_PROMPT = 500
MAX_NEGATIVE_PROMPT = 200
MIN_IMAGES, MAX_IMAGES = 2, 4
MAX_MASK_GROUPS = 6
MIN_POINTS, MAX_POINTS = 2, 77
DEFAULT_TAKES = 1
MATRIX_KEYS = ("mode", "duration", "aspect_ratio")  # the order of ``matrix:`` as written names its variants
MASK_WARNING = (
    "uses masks: the older CometAPI page documents them, but newer pages say not to send masks on this route; "
    "the provider may reject or ignore them"
)


class SpecFiles(Protocol):
    """Where a spec and the files it names (boards, masks) are read from: the working tree, or a git revision."""

    def read_spec(self, path: Path, *, display: str) -> Source:
        """The spec at ``path``, parsed; its problems are located in ``display``."""
        ...

    def inspect_image(self, path: Path) -> imagelib.ImageCheck:
        """Facts about the image at ``path`` (absolute, as the spec names it relative to its own folder)."""
        ...


class WorkingTree:
    """The files as they are on disk now."""

    def read_spec(self, path: Path, *, display: str) -> Source:
        return read_source(path, display=display)

    def inspect_image(self, path: Path) -> imagelib.ImageCheck:
        return imagelib.inspect_file(path)


@dataclass(frozen=True)
class Validation:
    """The outcome of checking a spec: the resolved project when there are no errors, and every problem found."""

    file: str
    project: ResolvedProject | None
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def ok(self, *, strict: bool = False) -> bool:
        """True when the spec can be used: no errors (and, when ``strict``, no warnings either)."""
        failing = self.problems if strict else self.errors
        return self.project is not None and not failing


@dataclass(frozen=True)
class Summary:
    """Counts for the one-line summary of a valid spec."""

    shots: int
    images: int
    distinct_images: int
    units: float

    def format(self) -> str:
        return (
            f"{self.shots} shot{'s' if self.shots != 1 else ''}, {self.images} image{'s' if self.images != 1 else ''} "
            f"({self.distinct_images} distinct), est. {self.units:g} unit{'' if self.units == 1 else 's'}"
        )

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def load_project(
    path: str | os.PathLike[str], *, strict: bool = False, files: SpecFiles | None = None, display: str | None = None
) -> ResolvedProject:
    """Load and resolve the spec at ``path``; raise ``SpecError`` with every problem if it has errors.

    Warnings (unknown model, masks, a stripped ``data:`` prefix) only fail when ``strict`` is true. ``files`` and
    ``display`` are as for ``check_project``.
    """
    result = check_project(path, files=files, display=display)
    if result.project is None or not result.ok(strict=strict):
        raise SpecError(result.problems)
    return result.project


def check_project(
    path: str | os.PathLike[str], *, files: SpecFiles | None = None, display: str | None = None
) -> Validation:
    """Check the spec at ``path`` and resolve it if it is valid. Never raises for problems in the spec.

    ``files`` says where the spec and its images are read from (the working tree by default; ``diff`` passes a git
    revision); ``display`` is the name problems give the file (``path`` as given by default).
    """
    file = display if display is not None else os.fspath(path)
    files = files if files is not None else WorkingTree()
    source = files.read_spec(Path(path), display=file)
    problems = list(source.problems)
    project: ResolvedProject | None = None
    if source.data is not None:
        version_problems = check_version(source)
        problems.extend(version_problems)
        if not version_problems:
            project = _check_valid_version(source, Path(path), problems, files)
    problems.sort(key=lambda p: (p.line, p.column, p.severity, p.message))
    if any(p.severity == "error" for p in problems):
        project = None
    return Validation(file, project, problems)


def summarize(project: ResolvedProject) -> Summary:
    """Shots, images (boards, counted per request), distinct images by content, and the estimated cost of every
    take of every variant."""
    boards = [image for shot in project.shots for image in shot.images]
    pricing = Pricing.from_overrides(project.pricing)
    units = sum(pricing.shot_units(shot) * shot.takes for shot in project.shots)
    return Summary(len(project.shot_ids), len(boards), len({image.identity for image in boards}), units)


# Schema problems at these paths leave nothing to resolve: the shape every shot depends on is wrong.
_BLOCKING: frozenset[PathKey] = frozenset({(), ("shots",), ("vars",), ("defaults",), ("image_sets",), ("project",)})


def _check_valid_version(
    source: Source, path: Path, problems: list[Problem], files: SpecFiles
) -> ResolvedProject | None:
    schema_problems = validate(source)
    # A value YAML could not build (`!!float abc`) is null to the schema: its "must be a number" would only repeat
    # the YAML problem already reported at the same place.
    unbuilt = {(p.line, p.column) for p in source.problems if p.message.startswith("bad YAML value")}
    problems.extend(problem for _, problem in schema_problems if (problem.line, problem.column) not in unbuilt)
    paths = [where for where, _ in schema_problems]
    if any(where[:1] in _BLOCKING and len(where) <= 1 for where in paths):
        return None
    resolver = _Resolver(source, path.resolve(), invalid=paths, files=files)
    project = resolver.resolve()
    problems.extend(resolver.problems)
    return None if schema_problems else project


# Cached per distinct spec item: a resolved image (None when unusable) and its problems (message, severity).
_ImageResult = tuple[ImageRef | None, tuple[tuple[str, str], ...]]


class _Resolver:
    """Runs the semantic checks over a document and, when nothing at all is wrong, builds the ResolvedProject.

    Values the schema rejected (``invalid``) are skipped rather than judged again, so one pass reports the
    schema's problems and every semantic problem of the values that are well-formed.
    """

    def __init__(self, source: Source, spec_path: Path, *, invalid: list[PathKey], files: SpecFiles) -> None:
        self.source = source
        self.files = files
        self.data: dict[str, Any] = source.data
        self.spec_path = spec_path
        self.base = spec_path.parent
        self.problems: list[Problem] = []
        self.templates = TemplateRenderer()
        self.defaults: dict[str, Any] = self.data.get("defaults") or {}
        self.project_name: str = self.data["project"]
        self.project_vars: dict[str, Any] = self.data.get("vars") or {}
        self._images: dict[tuple[str, str, bool], _ImageResult] = {}
        self._sets: dict[str, tuple[ImageRef, ...] | None] = {}
        self._warned: set[tuple[PathKey, str]] = set()
        # Errors in `defaults`, gathered over the shots that inherit the field: one line each, with the count.
        self._inherited: dict[tuple[PathKey, str], _Inherited] = {}
        self._inherited_errors = 0  # how many were gathered: a shot with one fails like one with its own error
        # Where the schema already complained: those values are skipped here (reported once is enough), and
        # a shot that is not even a mapping with an id is skipped whole.
        self._bad_defaults = frozenset(str(p[1]) for p in invalid if len(p) >= 2 and p[0] == "defaults")
        self._bad_sets = {str(p[1]) for p in invalid if len(p) >= 2 and p[0] == "image_sets"}
        self._schema_failed = bool(invalid)
        self._invalid = invalid
        self._bad_shot_keys: dict[int, set[str]] = {}
        self._bad_shots: set[int] = set()
        for p in invalid:
            if len(p) >= 2 and p[0] == "shots" and isinstance(p[1], int):
                if len(p) == 2 or p[2] == "id":
                    self._bad_shots.add(p[1])
                else:
                    self._bad_shot_keys.setdefault(p[1], set()).add(str(p[2]))

    # ---- project -------------------------------------------------------------------------------------------

    def resolve(self) -> ResolvedProject | None:
        """The project, or None when anything was wrong (the problems are in ``self.problems``)."""
        self._resolve_sets()
        shots = self.data["shots"]
        self._check_ids(shots)
        resolved: list[ResolvedShot | None] = []
        for index, shot in enumerate(shots):
            if index not in self._bad_shots:
                requests = self._shot(index, shot)
                resolved.extend(requests if requests is not None else [None])
        self._check_pricing([shot for shot in resolved if shot is not None and isinstance(shot.model, str)])
        self._report_inherited(shots)
        # A problem of a field every variant inherits is found once per variant: said once.
        self.problems = list(dict.fromkeys(self.problems))
        if self._schema_failed:
            return None  # any value may be of the wrong type: only check, never build
        if any(p.severity == "error" for p in self.problems):
            return None
        limits = self.data.get("limits") or {}
        return ResolvedProject(
            path=self.spec_path,
            sha256=hashlib.sha256(self.source.text_bytes).hexdigest(),
            version=int(self.data["version"]),
            project=self.project_name,
            model=self.data.get("model", DEFAULT_MODEL),
            output_dir=Path(os.path.normpath(self.base / self.data.get("output_dir", DEFAULT_OUTPUT_DIR))),
            shots=tuple(shot for shot in resolved if shot is not None),
            limits=Limits(
                concurrency=int(limits.get("concurrency", Limits.concurrency)),
                requests_per_second=float(limits.get("requests_per_second", Limits.requests_per_second)),
            ),
            provider=self.data.get("provider"),
            pricing=_pricing_numbers(self.data.get("pricing") or {}),
            vars=dict(self.project_vars),
            budget=_budget_entry(self.data.get("budget")),
        )

    def _resolve_sets(self) -> None:
        for name, items in (self.data.get("image_sets") or {}).items():
            if name in self._bad_sets:
                self._sets[name] = None
                continue
            refs = [self._image(item, ("image_sets", name, i), shot=None) for i, item in enumerate(items)]
            self._sets[name] = None if any(ref is None for ref in refs) else tuple(r for r in refs if r is not None)

    def _check_ids(self, shots: list[Any]) -> None:
        seen: dict[str, int] = {}
        for index, shot in enumerate(shots):
            shot_id = shot.get("id") if isinstance(shot, dict) else None
            if not isinstance(shot_id, str):
                continue
            folded = shot_id.casefold()
            first = seen.get(folded)
            if first is None:
                seen[folded] = index
                continue
            first_id = shots[first]["id"]
            line = self.source.location(("shots", first, "id")).line
            if first_id == shot_id:
                message = f"duplicate shot id `{shot_id}` (first used at line {line}); shot ids must be unique"
            else:
                message = (
                    f"shot id `{shot_id}` differs from `{first_id}` (line {line}) only in case; they would share "
                    "an output folder on case-insensitive file systems"
                )
            self.problems.append(self.source.problem(("shots", index, "id"), message, shot=shot_id))

    # ---- pricing --------------------------------------------------------------------------------------------

    def _check_pricing(self, shots: list[ResolvedShot]) -> None:
        """The rate cards: the older form warned about, incomplete cards and cards no shot uses, unpriced models."""
        if any(where[:1] == ("pricing",) for where in self._invalid):
            return  # the schema said what is wrong with ``pricing:``; its numbers cannot be trusted here
        given: dict[str, Any] = self.data.get("pricing") or {}
        legacy = [key for key in LEGACY_KEYS if key in given]
        if legacy:
            self._warn(("pricing", legacy[0]), _LEGACY_PRICING_WARNING, None)
        builtin = Pricing()
        used = {shot.model for shot in shots}
        for model, table in given.items():
            if model in LEGACY_KEYS:
                continue
            if legacy and model == DEFAULT_MODEL:
                message = f"pricing: both {', '.join(legacy)} and this `{model}` table price {model}; keep the table"
                self._error(("pricing", model), message, None)
            missing = [key for key in CARD_KEYS if key not in table]
            if missing and not builtin.has_card(model):
                message = (
                    f"pricing `{model}` has no built-in rate card to start from: give all four of "
                    f"{', '.join(CARD_KEYS)} (missing {', '.join(missing)})"
                )
                self._error(("pricing", model), message, None)
            if model not in used:
                close = difflib.get_close_matches(model, sorted(used), n=1)
                hint = f"; did you mean `{close[0]}`?" if close else ""
                self._warn(("pricing", model), f"pricing `{model}`: no shot uses this model{hint}", None)
        # Once per model, not per shot: the clause builds a price list each time.
        unpriced = {model for model in used if model in KNOWN_MODELS and self._unpriced_clause(model)}
        for shot in shots:
            # An unknown model's warning (see ``_shot``) already says how it is costed.
            if shot.model in unpriced:
                self._warn(self._model_path(shot.index), _unpriced_warning(shot.model), shot.id)

    def _unpriced_clause(self, model: object) -> str:
        """For a model with no rate card, how its cost is estimated (to end a warning with); else ``""``."""
        given = self.data.get("pricing")
        if not isinstance(model, str):
            return ""  # the schema says what is wrong with it
        tables = {key for key in given if key not in LEGACY_KEYS} if isinstance(given, dict) else set()
        if Pricing().has_card(model) or model in tables:
            return ""
        return f"; it has no rate card, so its cost is estimated at {DEFAULT_MODEL}'s rates (add one under `pricing:`)"

    def _model_path(self, index: int) -> PathKey:
        """Where a shot's model was set: on the shot, in ``defaults``, or at the top of the spec."""
        raw = self.data["shots"][index]
        if isinstance(raw, dict) and "model" in raw:
            return ("shots", index, "model")
        return ("defaults", "model") if "model" in self.defaults else ("model",)

    # ---- one shot -------------------------------------------------------------------------------------------

    def _shot(self, index: int, raw: dict[str, Any]) -> list[ResolvedShot] | None:
        """The shot's requests: itself, or one per variant (``variants:`` and ``matrix:``); None if any is wrong."""
        shot_id: str = raw["id"]
        bad = frozenset(self._bad_shot_keys.get(index, ()))
        view = ShotView(index, raw, self.defaults, bad=bad, bad_defaults=frozenset(self._bad_defaults))
        views = self._variant_views(view, shot_id)
        if views is None:
            return None
        requests = [self._request(one, shot_id) for one in (views or [view])]
        if any(request is None for request in requests):
            return None
        return [request for request in requests if request is not None]

    def _variant_views(self, view: ShotView, shot_id: str) -> list[ShotView] | None:
        """A view per variant, explicit ones first, then the matrix's; ``[]`` without variants; None on a clash."""
        index = view.index
        # Where the schema found a variant (or the matrix) wrong, it said what: those are not judged again, the
        # other variants are.
        broken = {p[3] for p in self._invalid if len(p) >= 4 and p[:3] == ("shots", index, "variants")}
        if any(
            p[:3] in (("shots", index, "variants"), ("shots", index, "matrix")) and len(p) <= 3 for p in self._invalid
        ):
            return None
        named: dict[str, ShotView] = {}
        for name, fields in (view.raw.get("variants") or {}).items():
            if name in broken:
                continue
            where: PathKey = ("shots", index, "variants", name)
            paths = {key: (*where, key) for key in fields}
            named[name] = view.with_variant(name, fields, paths)
        bad_matrix = any(p[:3] == ("shots", index, "matrix") for p in self._invalid)
        matrix: dict[str, list[Any]] = {} if bad_matrix else view.raw.get("matrix") or {}
        keys = [key for key in matrix if key in MATRIX_KEYS]
        clashed = False
        combos = itertools.product(*(enumerate(matrix[key]) for key in keys)) if keys else ()
        for combo in combos:
            name = "-".join(str(value).replace(":", "x") for _, value in combo)
            fields = {key: value for key, (_, value) in zip(keys, combo, strict=True)}
            paths = {key: ("shots", index, "matrix", key, j) for key, (j, _) in zip(keys, combo, strict=True)}
            if name in named:
                line = self.source.location(("shots", index, "matrix")).line
                message = f"variant `{name}` is also a name the matrix gives (line {line}); rename the variant"
                self._error(("shots", index, "variants", name), message, shot_id)
                clashed = True
                continue
            named[name] = view.with_variant(name, fields, paths)
        clashed = self._check_variant_case(named, index, shot_id) or clashed
        return None if clashed else list(named.values())

    def _check_variant_case(self, named: Mapping[str, ShotView], index: int, shot_id: str) -> bool:
        """Variant names that differ only in case would share files on case-insensitive file systems."""
        seen: dict[str, str] = {}
        clashed = False
        for name in named:
            first = seen.setdefault(name.casefold(), name)
            if first != name:
                message = f"variant `{name}` differs from `{first}` only in case; they would share output files"
                self._error(("shots", index, "variants", name), message, shot_id)
                clashed = True
        return clashed

    def _request(self, view: ShotView, shot_id: str) -> ResolvedShot | None:
        """One request of the shot (the shot itself, or one variant of it), with its fingerprint."""
        index = view.index
        before, inherited_before = len(self.problems), self._inherited_errors
        images = self._shot_images(view, shot_id)
        variables = template_variables(
            project_vars=self.project_vars,
            shot_vars=view.merged_vars(),
            shot_id=shot_id,
            shot_index=index,
            project_name=self.project_name,
            variant=view.variant,
        )
        prompt = self._render(view, "prompt", shot_id, variables, limit=MAX_PROMPT, required=True)
        negative = self._render(view, "negative_prompt", shot_id, variables, limit=MAX_NEGATIVE_PROMPT, required=False)
        model = view.get("model", self.data.get("model", DEFAULT_MODEL))
        if model not in KNOWN_MODELS:
            where = view.path("model") if view.has("model") else ("model",)
            known = ", ".join(KNOWN_MODELS)
            message = f"model `{model}` is not one this tool knows ({known}); sending it as written"
            self._warn(where, message + self._unpriced_clause(model), shot_id)
        self._check_enums(view, shot_id)
        static_mask, dynamic_masks = self._masks(view, shot_id, images)
        callback = view.get("callback_url")
        if isinstance(callback, str):
            self._check_url(callback, view.path("callback_url"), shot_id)
        if self._inherited_errors > inherited_before:
            return None
        if len(self.problems) > before and any(p.severity == "error" for p in self.problems[before:]):
            return None
        if images is None or prompt is None:
            return None
        cfg = view.get("cfg_scale")
        fields: dict[str, Any] = dict(
            id=shot_id,
            index=index,
            project=self.project_name,
            model=model,
            images=images,
            prompt=prompt,
            mode=view.get("mode", DEFAULT_MODE),
            duration=int(view.get("duration", DEFAULT_DURATION)),
            aspect_ratio=view.get("aspect_ratio", DEFAULT_ASPECT_RATIO),
            negative_prompt=negative,
            cfg_scale=float(cfg) if cfg is not None else None,
            static_mask=static_mask,
            dynamic_masks=dynamic_masks,
            callback_url=callback,
            location=self.source.location(("shots", index)),
        )
        # Every render field is in ``fields``: the shot is built once, with its fingerprint (of the request alone: the
        # variant's name and the number of takes are not part of it).
        return ResolvedShot(
            **fields,
            fingerprint=fingerprint_of(fields),
            variant=view.variant,
            takes=int(view.get("takes", DEFAULT_TAKES)),
        )

    def _shot_images(self, view: ShotView, shot_id: str) -> tuple[ImageRef, ...] | None:
        if view.unusable("images"):
            return None
        if not view.has("images"):
            self._error(("shots", view.index), "has no `images`; set them on the shot or in `defaults`", shot_id)
            return None
        value = view.get("images")
        where = view.path("images")
        if isinstance(value, str):
            return self._named_set(value, where, shot_id)
        refs = [self._image(item, (*where, i), shot=shot_id) for i, item in enumerate(value)]
        if not MIN_IMAGES <= len(refs) <= MAX_IMAGES:
            self._error(where, f"has {len(refs)} image(s); a shot needs {MIN_IMAGES} to {MAX_IMAGES}", shot_id)
            return None
        return None if any(ref is None for ref in refs) else tuple(r for r in refs if r is not None)

    def _named_set(self, name: str, where: PathKey, shot_id: str) -> tuple[ImageRef, ...] | None:
        if name not in self._sets:
            known = sorted(self._sets)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean `{close[0]}`?" if close else (f"; known sets: {', '.join(known)}" if known else "")
            self._error(where, f"unknown image set `{name}`{hint}", shot_id)
            return None
        refs = self._sets[name]
        if refs is not None and not MIN_IMAGES <= len(refs) <= MAX_IMAGES:
            self._error(where, f"image set `{name}` has {len(refs)} image(s); a shot needs 2 to 4", shot_id)
            return None
        return refs  # None: the set itself is broken, and was reported where it is defined

    def _render(
        self, view: ShotView, key: str, shot_id: str, variables: dict[str, Any], *, limit: int, required: bool
    ) -> str | None:
        if not view.has(key):
            if required and not view.unusable(key):
                self._error(("shots", view.index), f"has no `{key}`; set it on the shot or in `defaults`", shot_id)
            return None
        rendered = self.templates.render(view.get(key), variables=variables)
        where = view.path(key)
        if rendered.error is not None:
            self._error(where, f"{key}: {rendered.error}", shot_id)
            return None
        text = rendered.text.strip()
        if required and not text:
            self._error(where, f"{key} is empty once rendered", shot_id)
            return None
        if len(text) > limit:
            if where[0] == "defaults":
                # Each inheriting shot renders its own length: one line for all of them, with the longest.
                self._inherit_error(where, f"{key} is over {limit} characters once rendered", shot_id, len(text))
            else:
                self._error(where, f"{key} is {len(text)} characters once rendered; the limit is {limit}", shot_id)
            return None
        return text or None

    def _check_enums(self, view: ShotView, shot_id: str) -> None:
        # The schema already holds these; kept as a guard so a resolved shot can never carry a value Kling rejects.
        for key, allowed in (("mode", MODES), ("duration", DURATIONS), ("aspect_ratio", ASPECT_RATIOS)):
            if view.has(key) and view.get(key) not in allowed:
                options = ", ".join(str(a) for a in allowed)
                self._error(view.path(key), f"`{key}` must be one of {options}", shot_id)
        cfg = view.get("cfg_scale")
        if cfg is not None and not 0 <= cfg <= 1:
            self._error(view.path("cfg_scale"), "`cfg_scale` must be between 0 and 1", shot_id)

    # ---- masks ----------------------------------------------------------------------------------------------

    def _masks(
        self, view: ShotView, shot_id: str, images: tuple[ImageRef, ...] | None
    ) -> tuple[ImageRef | None, tuple[DynamicMask, ...]]:
        first = images[0] if images else None
        size = (first.width, first.height) if first and first.width and first.height else None
        static_mask = None
        if view.has("static_mask"):
            where = view.path("static_mask")
            static_mask = self._image(view.get("static_mask"), where, shot=shot_id, mask=True)
            self._check_mask_size(static_mask, size, where, shot_id)
        groups = self._dynamic_masks(view, shot_id, size)
        if view.has("static_mask") or view.has("dynamic_masks"):
            where = view.path("static_mask") if view.has("static_mask") else view.path("dynamic_masks")
            self._warn(where, MASK_WARNING, shot_id)
        return static_mask, groups

    def _check_mask_size(
        self, mask: ImageRef | None, size: tuple[int, int] | None, where: PathKey, shot_id: str
    ) -> None:
        # Masks cover the frame pixel for pixel (the API does not scale them). URL images have no known size.
        if mask is None or size is None or mask.width is None or (mask.width, mask.height) == size:
            return
        message = (
            f"{_field_name(where)} is {mask.width}x{mask.height} px; a mask must be the same size as the first "
            f"image ({size[0]}x{size[1]})"
        )
        self._error(where, message, shot_id)

    def _dynamic_masks(self, view: ShotView, shot_id: str, size: tuple[int, int] | None) -> tuple[DynamicMask, ...]:
        if not view.has("dynamic_masks"):
            return ()
        where = view.path("dynamic_masks")
        groups_raw: list[dict[str, Any]] = view.get("dynamic_masks")
        if len(groups_raw) > MAX_MASK_GROUPS:
            self._error(where, f"has {len(groups_raw)} mask groups; at most {MAX_MASK_GROUPS} are allowed", shot_id)
        groups: list[DynamicMask] = []
        for g, group in enumerate(groups_raw):
            mask = self._image(group["mask"], (*where, g, "mask"), shot=shot_id, mask=True)
            self._check_mask_size(mask, size, (*where, g, "mask"), shot_id)
            points = self._trajectory(group["trajectories"], (*where, g, "trajectories"), shot_id, size)
            if mask is not None:
                groups.append(DynamicMask(mask=mask, trajectories=points))
        return tuple(groups)

    def _trajectory(
        self, raw: list[dict[str, int]], where: PathKey, shot_id: str, size: tuple[int, int] | None
    ) -> tuple[TrajectoryPoint, ...]:
        if not MIN_POINTS <= len(raw) <= MAX_POINTS:
            self._error(where, f"has {len(raw)} points; a trajectory needs {MIN_POINTS} to {MAX_POINTS}", shot_id)
        points = tuple(TrajectoryPoint(x=int(p["x"]), y=int(p["y"])) for p in raw)
        if size is not None:
            width, height = size
            for i, point in enumerate(points):
                if not (0 <= point.x < width and 0 <= point.y < height):
                    message = (
                        f"{_field_name(where)}[{i}] ({point.x}, {point.y}) is outside the first image "
                        f"({width}x{height} px)"
                    )
                    self._error((*where, i), message, shot_id)
        return points

    # ---- images ---------------------------------------------------------------------------------------------

    def _image(self, item: Any, where: PathKey, *, shot: str | None, mask: bool = False) -> ImageRef | None:
        kind, value = _image_item(item)
        key = (kind, value, mask)
        cached = self._images.get(key)
        if cached is None:
            cached = self._identify(kind, value, mask=mask)
            self._images[key] = cached
        ref, messages = cached
        if not messages:
            return ref  # the usual case: nothing to say, so no names to build
        name = _field_name(where)
        shown = "inline base64 image" if kind == "base64" else f"`{value}`"
        for message, severity in messages:
            text = f"{name} {shown} {message}"
            if severity == "warning":
                self._warn(where, text, shot)
            else:
                self._error(where, text, shot)
        return ref

    def _identify(self, kind: str, value: str, *, mask: bool) -> _ImageResult:
        if kind == "url":
            problem = imagelib.url_problem(value)
            if problem is not None:
                return None, ((problem.replace(f"URL {value!r} ", "", 1), "error"),)
            return ImageRef(source="url", ref=value, url=value), ()
        messages: list[tuple[str, str]] = []
        if kind == "base64":
            payload, had_prefix = imagelib.strip_data_prefix(value)
            if had_prefix:
                messages.append(
                    ("had a `data:...;base64,` prefix; it was removed (the provider wants raw base64)", "warning")
                )
            check = imagelib.inspect_base64(payload)
            path = None
        else:
            payload = ""
            path = Path(os.path.normpath(self.base / value))
            check = self.files.inspect_image(path)
        if check.facts is None:
            return None, (*messages, (check.error or "cannot be used", "error"))
        facts = check.facts
        if not mask:
            messages.extend((problem, "error") for problem in imagelib.board_problems(facts))
        if any(severity == "error" for _, severity in messages):
            return None, tuple(messages)
        ref = ImageRef(
            source="base64" if kind == "base64" else "path",
            ref="<base64>" if kind == "base64" else value,
            path=path,
            base64=payload if kind == "base64" else None,
            sha256=facts.sha256,
            width=facts.width,
            height=facts.height,
            format=facts.format,
            bytes=facts.bytes,
        )
        return ref, tuple(messages)

    def _check_url(self, url: str, where: PathKey, shot_id: str) -> None:
        problem = imagelib.url_problem(url)
        if problem is not None:
            self._error(where, f"callback_url: {problem}", shot_id)

    # ---- problems -------------------------------------------------------------------------------------------

    def _error(self, where: PathKey, message: str, shot: str | None) -> None:
        if where[0] == "defaults" and shot is not None:
            self._inherit_error(where, message, shot)
            return
        self.problems.append(self.source.problem(where, message, shot=_labelled(where, shot)))

    def _inherit_error(self, where: PathKey, message: str, shot: str, length: int = 0) -> None:
        self._inherited_errors += 1
        found = self._inherited.setdefault((where, message), _Inherited())
        if shot not in found.shots[-1:]:  # a shot's variants inherit it together: the shot counts once
            found.shots.append(shot)
        found.longest = max(found.longest, length)

    def _report_inherited(self, shots: list[Any]) -> None:
        """One problem per error in ``defaults``, at its entry, saying how many of the shots inheriting it fail."""
        for (where, message), found in self._inherited.items():
            key = str(where[1])
            inheriting = sum(
                1
                for index, shot in enumerate(shots)
                if index not in self._bad_shots and isinstance(shot, dict) and key not in shot
            )
            text = f"{message} (up to {found.longest:,})" if found.longest else message
            failing = len(found.shots)
            ids = ", ".join(found.shots[:3]) + (", ..." if failing > 3 else "")
            if inheriting == 1:
                count = "the 1 shot that inherits"
            elif failing == inheriting:
                count = f"all {failing} shots that inherit"
            else:
                count = f"{failing} of the {inheriting} shots that inherit"
            text += f"; in {count} it ({ids})"
            self.problems.append(self.source.problem(where, text))

    def _warn(self, where: PathKey, message: str, shot: str | None) -> None:
        if where[0] != "shots":
            # From defaults or the project level: the same warning for every shot would drown the output.
            if (where, message) in self._warned:
                return
            self._warned.add((where, message))
            shot = None
        self.problems.append(self.source.warning(where, message, shot=_labelled(where, shot)))


@dataclass
class _Inherited:
    """The shots for which one error in ``defaults`` occurred, and the longest rendered length if it is a limit."""

    shots: list[str] = dataclasses.field(default_factory=list)
    longest: int = 0


def _labelled(where: PathKey, shot: str | None) -> str | None:
    """The shot a problem names, with the variant when the problem is inside one: ``s03 variant wide``."""
    if shot is not None and len(where) >= 4 and where[0] == "shots" and where[2] == "variants":
        return f"{shot} variant {where[3]}"
    return shot


def _field_name(where: PathKey) -> str:
    """How a message names a field: relative to the shot inside ``shots`` (the shot id is said already), and to the
    variant inside ``variants`` (named already)."""
    if len(where) >= 4 and where[0] == "shots" and where[2] == "variants":
        return describe_path(where[4:])
    if len(where) >= 2 and where[0] == "shots" and isinstance(where[1], int):
        return describe_path(where[2:])
    return describe_path(where)


def _image_item(item: Any) -> tuple[str, str]:
    """What a (schema-valid) image item means: (``path`` | ``url`` | ``base64``, the text the spec gave)."""
    if isinstance(item, dict):
        kind, value = next(iter(item.items()))
        return str(kind), str(value)
    text = str(item)
    if text.lower().startswith("data:"):
        return "base64", text
    if imagelib.looks_like_url(text):
        return "url", text
    return "path", text


_LEGACY_PRICING_WARNING = (
    "pricing: std_5s, pro_multiplier and ten_second_multiplier are the older form, still read as before (a missing "
    f"key is 1, 3.5 or 2; the card prices {DEFAULT_MODEL} and every model without its own); write a table per model "
    "instead, e.g. "
    f"`pricing: {{{DEFAULT_MODEL}: {{std_5s: 2, std_10s: 4, pro_5s: 3.5, pro_10s: 7}}}}`"
)


def _unpriced_warning(model: str) -> str:
    return (
        f"model `{model}` has no rate card: its cost is estimated at {DEFAULT_MODEL}'s rates; give its own with "
        f"`pricing: {{{model}: {{std_5s: ..., std_10s: ..., pro_5s: ..., pro_10s: ...}}}}`"
    )


def _pricing_numbers(given: Mapping[str, Any]) -> dict[str, float | dict[str, float]]:
    """``pricing:`` (already checked) with every number a float: old keys to numbers, models to their tables."""
    numbers: dict[str, float | dict[str, float]] = {}
    for key, value in given.items():
        numbers[key] = {k: float(v) for k, v in value.items()} if isinstance(value, dict) else float(value)
    return numbers


__all__ = ["SpecFiles", "Summary", "Validation", "WorkingTree", "check_project", "load_project", "summarize"]


def _budget_entry(given: Mapping[str, Any] | None) -> BudgetEntry | None:
    """``budget:`` (already checked by the schema) as a record; None when the spec has none."""
    if given is None:
        return None
    cap = given.get("units_cap")
    slots = given.get("slots")
    return BudgetEntry(
        url=given.get("url"),
        slots=int(slots) if slots is not None else None,
        units_cap=float(cap) if cap is not None else None,
    )
