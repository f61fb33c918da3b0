"""What a render costs, in provider units. The one pricing table lives here.

Kling bills each render by model, mode and duration. The built-in rate card is kling-v1-6's on the multi-image
route (see docs/wire.md, "Limits"): std 5 s = 2 units, std 10 s = 4, pro 5 s = 3.5, pro 10 s = 7 (pro is 1.75x std
here; the often-quoted 3.5x is kling-v1's). A spec's ``pricing:`` gives a card per model::

    pricing:
      kling-v2-1: {std_5s: 2.5, std_10s: 5, pro_5s: 4.5, pro_10s: 9}
      kling-v1-6: {pro_10s: 6.5}          # a model with a built-in card may change some numbers only

The older form (``std_5s``, ``pro_multiplier``, ``ten_second_multiplier`` at the top of ``pricing:``) is still read
as before, a missing key taking its old default (1, 3.5, 2): a card built from the three numbers, which prices the
default model (and so every model without a card of its own). A shot whose model has no card is costed at the
default model's card, and the callers say so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import InitVar, dataclass, fields, replace

from orchestrator.errors import ConfigError
from orchestrator.spec.shot import DEFAULT_MODEL, ResolvedShot

# The older, model-less form of ``pricing:``; read as before, with a warning that names the per-model form.
LEGACY_KEYS: tuple[str, ...] = ("std_5s", "pro_multiplier", "ten_second_multiplier")

# A spec's ``pricing:`` once loaded: old keys to numbers, model names to (partial) cards.
PricingSpec = Mapping[str, float | Mapping[str, float]]


@dataclass(frozen=True)
class RateCard:
    """Units for each of the four renders Kling bills for one model."""

    std_5s: float
    std_10s: float
    pro_5s: float
    pro_10s: float

    @classmethod
    def from_multipliers(cls, *, std_5s: float, pro_multiplier: float, ten_second_multiplier: float) -> RateCard:
        """The older three-number form: a 5 s std price, a pro factor and a 10 s factor."""
        pro_5s = std_5s * pro_multiplier
        return cls(std_5s, std_5s * ten_second_multiplier, pro_5s, pro_5s * ten_second_multiplier)

    def units(self, *, mode: str, duration: int) -> float:
        if mode == "pro":
            return self.pro_10s if duration == 10 else self.pro_5s
        return self.std_10s if duration == 10 else self.std_5s

    def describe(self) -> str:
        return ", ".join(f"{key} {getattr(self, key):g}" for key in CARD_KEYS)


CARD_KEYS: tuple[str, ...] = tuple(f.name for f in fields(RateCard))

# kling-v1-6 on the multi-image route, as the wire contract quotes it (docs/wire.md).
KLING_V1_6 = RateCard(std_5s=2.0, std_10s=4.0, pro_5s=3.5, pro_10s=7.0)
DEFAULT_CARDS: tuple[tuple[str, RateCard], ...] = ((DEFAULT_MODEL, KLING_V1_6),)

# What a missing older key meant, and still means, so that a spec written in the older form keeps its estimates.
_LEGACY_DEFAULTS: dict[str, float] = {"std_5s": 1.0, "pro_multiplier": 3.5, "ten_second_multiplier": 2.0}


@dataclass(frozen=True, kw_only=True)
class Pricing:
    """Rate cards per model, and the model whose card prices the models that have none.

    ``cards`` is a tuple of ``(model, card)`` pairs, sorted by model, so that a ``Pricing`` is hashable and two
    equal tables compare equal. ``Pricing(std_5s=..., pro_multiplier=..., ten_second_multiplier=...)`` still builds
    the older single-card table, for code written against it.
    """

    cards: tuple[tuple[str, RateCard], ...] = DEFAULT_CARDS
    fallback_model: str = DEFAULT_MODEL
    std_5s: InitVar[float | None] = None
    pro_multiplier: InitVar[float | None] = None
    ten_second_multiplier: InitVar[float | None] = None

    def __post_init__(
        self, std_5s: float | None, pro_multiplier: float | None, ten_second_multiplier: float | None
    ) -> None:
        given = {
            k: v
            for k, v in zip(LEGACY_KEYS, (std_5s, pro_multiplier, ten_second_multiplier), strict=True)
            if v is not None
        }
        cards = dict(self.cards)
        if given:
            cards[self.fallback_model] = _legacy_card({k: float(v) for k, v in given.items()})
        object.__setattr__(self, "cards", tuple(sorted(cards.items())))

    @classmethod
    def from_overrides(cls, overrides: PricingSpec | None) -> Pricing:
        """The built-in cards with a spec's ``pricing:`` (either form) on top; bad values are ``ConfigError``."""
        if not overrides:
            return cls()
        legacy = {key: value for key, value in overrides.items() if key in LEGACY_KEYS}
        tables = {key: value for key, value in overrides.items() if key not in LEGACY_KEYS}
        cards = dict(DEFAULT_CARDS)
        if legacy:
            # A spec may not give both (``validate`` says so at its line); a ``--price`` flag for the default model
            # changes one number of the card the older keys built.
            cards[DEFAULT_MODEL] = _legacy_card({key: _units(key, value) for key, value in legacy.items()})
        for model, table in tables.items():
            cards[model] = _model_card(model, table, cards.get(model))
        return cls(cards=tuple(sorted(cards.items())))

    # --- looking up ---------------------------------------------------------------------------------------------

    @property
    def models(self) -> tuple[str, ...]:
        """The models that have a card of their own."""
        return tuple(model for model, _ in self.cards)

    def has_card(self, model: str) -> bool:
        return model in self.models

    def card(self, model: str) -> RateCard:
        """``model``'s card, or the fallback model's when it has none (see ``unpriced``)."""
        table = dict(self.cards)
        found = table.get(model) or table.get(self.fallback_model)
        return found if found is not None else KLING_V1_6

    def units(self, *, mode: str, duration: int, model: str = DEFAULT_MODEL) -> float:
        return self.card(model).units(mode=mode, duration=duration)

    def shot_units(self, shot: ResolvedShot) -> float:
        return self.units(mode=shot.mode, duration=shot.duration, model=shot.model)

    def total_units(self, shots: Iterable[ResolvedShot]) -> float:
        return sum(self.shot_units(shot) for shot in shots)

    def unpriced(self, shots: Iterable[ResolvedShot]) -> tuple[str, ...]:
        """The models of ``shots`` that have no card, sorted: their cost is only the fallback model's guess."""
        return tuple(sorted({shot.model for shot in shots if not self.has_card(shot.model)}))

    def estimate_note(self, shots: Iterable[ResolvedShot]) -> str | None:
        """``"kling-v2-1 estimated at kling-v1-6's rates"`` when some shots' models have no card, else ``None``."""
        missing = self.unpriced(shots)
        if not missing:
            return None
        return f"{', '.join(missing)} estimated at {self.fallback_model}'s rates"


DEFAULT_PRICING = Pricing()


def _legacy_card(given: Mapping[str, float]) -> RateCard:
    numbers = {**_LEGACY_DEFAULTS, **given}
    return RateCard.from_multipliers(
        std_5s=numbers["std_5s"],
        pro_multiplier=numbers["pro_multiplier"],
        ten_second_multiplier=numbers["ten_second_multiplier"],
    )


def _model_card(model: str, table: object, base: RateCard | None) -> RateCard:
    if not isinstance(table, Mapping):
        known = ", ".join(LEGACY_KEYS)
        raise ConfigError(
            f"pricing {model}: expected a table of {', '.join(CARD_KEYS)} for model {model} "
            f"(or one of the older keys {known})"
        )
    unknown = sorted(set(table) - set(CARD_KEYS))
    if unknown:
        raise ConfigError(f"pricing {model}: unknown key(s) {', '.join(unknown)}; known: {', '.join(CARD_KEYS)}")
    values = {key: _units(f"{model}.{key}", value) for key, value in table.items()}
    if base is None:
        missing = [key for key in CARD_KEYS if key not in values]
        if missing:
            raise ConfigError(
                f"pricing {model}: no built-in rate card to start from, so give all four of "
                f"{', '.join(CARD_KEYS)} (missing {', '.join(missing)})"
            )
        return RateCard(**values)
    return replace(base, **values)


def _units(key: str, value: object) -> float:
    number = _number(value)
    if number is None or number < 0:
        raise ConfigError(f"pricing {key} must be a number of units, at least 0 (got {value!r})")
    return number


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_price_options(values: Sequence[str]) -> dict[str, float | dict[str, float]]:
    """The ``--price`` flags as a ``pricing:`` mapping.

    ``MODEL.KEY=N`` sets one number of a model's card (``kling-v1-6.pro_10s=6.5``); ``KEY=N`` with one of the older
    keys (``pro_multiplier=4``) is read as before.
    """
    overrides: dict[str, float | dict[str, float]] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        key = key.strip()
        number = _number(raw.strip()) if sep else None
        if not key or number is None:
            raise ConfigError(
                f"--price {item!r}: expected KEY=NUMBER or MODEL.KEY=NUMBER, for example {DEFAULT_MODEL}.pro_10s=7"
            )
        model, dot, card_key = key.rpartition(".")  # rate keys have no dot; model names might
        if dot and model:
            table = overrides.setdefault(model.strip(), {})
            if isinstance(table, dict):
                table[card_key.strip()] = number
                continue
        if key not in LEGACY_KEYS:
            raise ConfigError(
                f"unknown pricing key(s) {key} (--price {item!r}); use MODEL.KEY=NUMBER with KEY one of "
                f"{', '.join(CARD_KEYS)}, or one of {', '.join(LEGACY_KEYS)}"
            )
        overrides[key] = number
    return overrides


def merge_overrides(spec: PricingSpec | None, flags: PricingSpec) -> dict[str, float | Mapping[str, float]]:
    """The spec's ``pricing:`` with the flags on top, card by card (a flag changes one number, not a whole card)."""
    merged: dict[str, float | Mapping[str, float]] = dict(spec or {})
    for key, value in flags.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = {**current, **value}
        else:
            merged[key] = value
    return merged


def project_pricing(*, spec: PricingSpec | None = None, flags: Sequence[str] = ()) -> Pricing:
    """The pricing in force: the built-in cards, then the spec's ``pricing:``, then the ``--price`` flags."""
    return Pricing.from_overrides(merge_overrides(spec, parse_price_options(flags)))


__all__ = [
    "CARD_KEYS",
    "DEFAULT_PRICING",
    "KLING_V1_6",
    "LEGACY_KEYS",
    "Pricing",
    "PricingSpec",
    "RateCard",
    "merge_overrides",
    "parse_price_options",
    "project_pricing",
]
