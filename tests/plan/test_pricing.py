"""Rate cards: the built-in one, per-model tables from a spec or ``--price`` flags, and the older three-key form."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.errors import ConfigError
from orchestrator.plan.pricing import (
    DEFAULT_PRICING,
    KLING_V1_6,
    Pricing,
    RateCard,
    parse_price_options,
    project_pricing,
)
from orchestrator.spec.load import check_project, summarize
from tests.helpers import hand_shot
from tests.plan.test_plan import image

V2 = {"std_5s": 2.5, "std_10s": 5.0, "pro_5s": 4.5, "pro_10s": 9.0}


def shot(shot_id: str, **overrides: object) -> object:
    return hand_shot(shot_id, images=(image("a" * 64), image("b" * 64)), **overrides)


def test_the_built_in_card_is_kling_v1_6s_from_the_wire_contract() -> None:
    # docs/wire.md, "Limits": std 5 s = 2, std 10 s = 4, pro 5 s = 3.5, pro 10 s = 7.
    prices = [DEFAULT_PRICING.units(mode=m, duration=d) for m in ("std", "pro") for d in (5, 10)]
    assert prices == [2, 4, 3.5, 7]
    assert DEFAULT_PRICING.card("kling-v1-6") == KLING_V1_6


def test_shot_units_follow_the_shots_model() -> None:
    pricing = project_pricing(spec={"kling-v2-1": V2})
    assert pricing.shot_units(shot("a", model="kling-v2-1", mode="pro", duration=10)) == 9
    assert pricing.shot_units(shot("b", mode="pro", duration=10)) == 7
    assert pricing.unpriced([shot("a", model="kling-v2-1")]) == ()


def test_a_model_without_a_card_is_costed_at_the_default_models_rates_and_said_so() -> None:
    shots = [shot("a", model="kling-v2-1"), shot("b", model="kling-v1-5", mode="pro"), shot("c")]
    assert DEFAULT_PRICING.total_units(shots) == 2 + 3.5 + 2
    assert DEFAULT_PRICING.unpriced(shots) == ("kling-v1-5", "kling-v2-1")
    assert DEFAULT_PRICING.estimate_note(shots) == "kling-v1-5, kling-v2-1 estimated at kling-v1-6's rates"
    assert DEFAULT_PRICING.estimate_note([shot("c")]) is None


def test_a_partial_table_changes_only_the_numbers_it_gives() -> None:
    pricing = project_pricing(spec={"kling-v1-6": {"pro_10s": 6.5}})
    assert pricing.card("kling-v1-6") == dataclasses.replace(KLING_V1_6, pro_10s=6.5)


def test_a_model_without_a_built_in_card_must_give_all_four() -> None:
    with pytest.raises(ConfigError, match=r"kling-v2-1: no built-in rate card.*missing std_10s, pro_5s, pro_10s"):
        project_pricing(spec={"kling-v2-1": {"std_5s": 1.0}})


def test_the_older_keys_are_read_as_before() -> None:
    # A 5 s std price times the pro and 10 s factors; a key left out keeps its old default (1, 3.5, 2), so a spec
    # in the older form keeps the estimates it had.
    assert project_pricing(spec={"std_5s": 1.0, "pro_multiplier": 1.75}).card("kling-v1-6") == RateCard(1, 2, 1.75, 3.5)
    assert project_pricing(spec={"std_5s": 2.0}).card("kling-v1-6") == RateCard(2, 4, 7, 14)
    assert project_pricing(spec={"ten_second_multiplier": 2.0}).card("kling-v1-6") == RateCard(1, 2, 3.5, 7)
    # ... and, as before, they price every model (those without a card of their own).
    legacy = project_pricing(spec={"std_5s": 1.0})
    assert legacy.shot_units(shot("a", model="kling-v2-1", duration=10)) == 2
    # The constructor keeps its older keywords.
    assert Pricing(std_5s=1.0, pro_multiplier=3.5) == project_pricing(spec={"std_5s": 1.0, "pro_multiplier": 3.5})


def test_a_flag_changes_one_number_of_the_card_the_older_keys_built() -> None:
    pricing = project_pricing(spec={"std_5s": 1.0}, flags=["kling-v1-6.pro_10s=6"])
    assert pricing.card("kling-v1-6") == RateCard(1, 2, 3.5, 6)


def test_a_spec_may_not_give_both_forms_for_the_default_model(tmp_path: Path) -> None:
    result = check_project(write_spec(tmp_path, "pricing: {std_5s: 1, kling-v1-6: {pro_5s: 3}}"))
    assert [(p.line, p.message) for p in result.errors] == [
        (4, "pricing: both std_5s and this `kling-v1-6` table price kling-v1-6; keep the table")
    ]


def test_pricing_is_a_frozen_hashable_value() -> None:
    pricing = project_pricing(spec={"kling-v2-1": V2})
    assert pricing == project_pricing(spec={"kling-v2-1": dict(reversed(V2.items()))})
    assert len({pricing, project_pricing(spec={"kling-v2-1": V2})}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        pricing.fallback_model = "x"  # type: ignore[misc]


def test_price_flags_set_one_number_of_a_card_over_the_spec() -> None:
    assert parse_price_options(["kling-v2-1.pro_10s = 8", "pro_multiplier=4"]) == {
        "kling-v2-1": {"pro_10s": 8.0},
        "pro_multiplier": 4.0,
    }
    pricing = project_pricing(spec={"kling-v2-1": V2}, flags=["kling-v2-1.pro_10s=8"])
    assert pricing.card("kling-v2-1") == RateCard(2.5, 5, 4.5, 8)
    older = project_pricing(spec={"std_5s": 2.0, "pro_multiplier": 3.0}, flags=["pro_multiplier=4"])
    assert older.card("kling-v1-6") == RateCard(2, 4, 8, 16)


@pytest.mark.parametrize("flag", ["std_5s", "std_5s=", "=1", "std_5s=abc", "std_5s=nan"])
def test_bad_price_flags_are_config_errors(flag: str) -> None:
    with pytest.raises(ConfigError, match="KEY=NUMBER"):
        parse_price_options([flag])


def test_unknown_or_negative_pricing_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown pricing key"):
        project_pricing(flags=["pro=2"])
    with pytest.raises(ConfigError, match=r"unknown key.*std_15s"):
        project_pricing(flags=["kling-v1-6.std_15s=2"])
    with pytest.raises(ConfigError, match="at least 0"):
        project_pricing(spec={"std_5s": -1.0})
    with pytest.raises(ConfigError, match="at least 0"):
        project_pricing(flags=["kling-v1-6.pro_5s=-1"])


# --- the spec's ``pricing:`` ------------------------------------------------------------------------------------


def write_spec(tmp_path: Path, pricing: str, *, model: str = "kling-v1-6") -> Path:
    for name in ("a", "b"):
        Image.new("RGB", (640, 360), (10, 20, 30)).save(tmp_path / f"{name}.png")
    text = textwrap.dedent(
        f"""\
        version: 1
        project: p
        model: {model}
        {pricing}
        shots:
          - {{id: s1, images: [a.png, b.png], prompt: go, mode: pro}}
        """
    )
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_a_spec_table_per_model_prices_its_shots(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path, "pricing: {kling-v2-1: {std_5s: 2.5, std_10s: 5, pro_5s: 4.5, pro_10s: 9}}", model="kling-v2-1"
    )
    result = check_project(path)
    assert result.errors == []
    assert result.project is not None and result.project.pricing == {"kling-v2-1": V2}
    assert summarize(result.project).units == 4.5
    # kling-v2-1 is still an unknown model (a warning), but not an unpriced one.
    assert [w.message for w in result.warnings if "rate card" in w.message] == []


def test_a_spec_model_without_a_card_warns_at_the_model(tmp_path: Path) -> None:
    result = check_project(write_spec(tmp_path, "", model="kling-v2-1"))
    [warning] = result.warnings
    assert (warning.line, warning.column) == (3, 8)
    assert "estimated at kling-v1-6's rates" in warning.message
    assert result.project is not None and summarize(result.project).units == 3.5


def test_the_older_form_warns_and_names_the_new_one(tmp_path: Path) -> None:
    result = check_project(write_spec(tmp_path, "pricing: {std_5s: 1, pro_multiplier: 4}"))
    [warning] = result.warnings
    assert warning.line == 4 and "older form, still read as before" in warning.message
    assert "pricing: {kling-v1-6: {std_5s: 2, std_10s: 4, pro_5s: 3.5, pro_10s: 7}}" in warning.message
    assert result.project is not None and summarize(result.project).units == 4


def test_spec_pricing_problems_are_located(tmp_path: Path) -> None:
    text = "pricing:\n  kling-v1-6: {pro_10s: 6}\n  kling-v2-1: {std_5s: 1}\n  kling-v1-6x: {std_5s: 1}"
    result = check_project(write_spec(tmp_path, text.replace("\n", "\n        ")))
    errors = [(p.line, p.message) for p in result.errors]
    assert errors == [
        (
            6,
            "pricing `kling-v2-1` has no built-in rate card to start from: give all four of std_5s, std_10s, "
            "pro_5s, pro_10s (missing std_10s, pro_5s, pro_10s)",
        ),
        (
            7,
            "pricing `kling-v1-6x` has no built-in rate card to start from: give all four of std_5s, std_10s, "
            "pro_5s, pro_10s (missing std_10s, pro_5s, pro_10s)",
        ),
    ]
    unused = [(p.line, p.message) for p in result.warnings]
    assert (6, "pricing `kling-v2-1`: no shot uses this model; did you mean `kling-v1-6`?") in unused
    assert (7, "pricing `kling-v1-6x`: no shot uses this model; did you mean `kling-v1-6`?") in unused


@pytest.mark.parametrize(
    ("pricing", "message"),
    [
        ("pricing: {kling-v2-1: {std_5s: -1}}", "`pricing.kling-v2-1.std_5s` is -1; it must be at least 0"),
        ("pricing: {kling-v2-1: {}}", "`pricing.kling-v2-1`: {} should be non-empty"),
        (
            "pricing: {kling-v2-1: {std_15s: 1}}",
            "unknown key `std_15s` in `pricing.kling-v2-1`; did you mean `std_5s`?",
        ),
        ("pricing: {kling-v2-1: 3}", "`pricing.kling-v2-1` must be a mapping, not a number (3)"),
    ],
)
def test_the_schema_checks_each_card(tmp_path: Path, pricing: str, message: str) -> None:
    result = check_project(write_spec(tmp_path, pricing))
    assert result.project is None
    assert [(p.line, p.message) for p in result.errors] == [(4, message)]
