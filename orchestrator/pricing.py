"""What a render costs, in provider units. The one pricing table lives here.

Kling bills by mode and duration: ``std`` 5 s is one unit, 10 s doubles it, ``pro`` costs about 3.5 times ``std``.
A spec's ``pricing:`` mapping (or a CLI flag) overrides any of these numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
        return cls(**{key: float(value) for key, value in overrides.items()})

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
