"""What a render costs, in provider units. The one pricing table lives here.

Kling bills by mode and duration: ``std`` 5 s is one unit, 10 s doubles it, ``pro`` costs about 3.5 times ``std``.
A spec's ``pricing:`` mapping (or a CLI flag) overrides any of these numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.errors import ConfigError
from orchestrator.shot import ResolvedShot


@dataclass(frozen=True)
class Pricing:
    """Units per render: ``std_5s`` for a 5 s standard render, times ``per_second`` scaling, times ``pro`` factor."""

    std_5s: float = 1.0
    pro_multiplier: float = 3.5
    ten_second_multiplier: float = 2.0

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, float] | None) -> Pricing:
        if not overrides:
            return cls()
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown pricing key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, float] = {}
        for key, value in overrides.items():
            number = _number(value)
            if number is None or number < 0:
                raise ConfigError(f"pricing {key} must be a number of units, at least 0 (got {value!r})")
            values[key] = number
        return cls(**values)

    def units(self, *, mode: str, duration: int) -> float:
        cost = self.std_5s
        if duration == 10:
            cost *= self.ten_second_multiplier
        if mode == "pro":
            cost *= self.pro_multiplier
        return cost

    def shot_units(self, shot: ResolvedShot) -> float:
        return self.units(mode=shot.mode, duration=shot.duration)

    def total_units(self, shots: Iterable[ResolvedShot]) -> float:
        return sum(self.shot_units(shot) for shot in shots)


DEFAULT_PRICING = Pricing()


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_price_options(values: Sequence[str]) -> dict[str, float]:
    """``["pro_multiplier=4", "std_5s=0.5"]`` (the ``--price KEY=VALUE`` flags) as a mapping of overrides."""
    overrides: dict[str, float] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        number = _number(raw.strip()) if sep else None
        if not key.strip() or number is None:
            raise ConfigError(f"--price {item!r}: expected KEY=NUMBER, for example pro_multiplier=3.5")
        overrides[key.strip()] = number
    return overrides


def project_pricing(*, spec: Mapping[str, float] | None = None, flags: Sequence[str] = ()) -> Pricing:
    """The pricing in force: the default table, then the spec's ``pricing:`` mapping, then ``--price`` flags."""
    return Pricing.from_overrides({**(spec or {}), **parse_price_options(flags)})
