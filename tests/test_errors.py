from __future__ import annotations

import pytest

from orchestrator.errors import (
    AccountError,
    ConcurrencyLimitError,
    DuplicateExternalIdError,
    ModelNotEnabledError,
    NetworkError,
    OrchestratorError,
    Problem,
    ProviderError,
    RateLimitedError,
    ServerError,
    ShotRejectedError,
    SpecError,
    TransientError,
    UpstreamSaturatedError,
)


def test_problem_formats_as_file_line_col_shot_message() -> None:
    problem = Problem("specs/p.yaml", 12, 5, "mode must be one of std, pro", shot="s01")
    assert problem.format() == "specs/p.yaml:12:5: shot s01: mode must be one of std, pro"


def test_warning_is_labelled_and_shotless_problem_has_no_shot_prefix() -> None:
    problem = Problem("p.yaml", 1, 1, "unknown model", severity="warning")
    assert problem.format() == "p.yaml:1:1: warning: unknown model"


def test_spec_error_summarises_first_error_and_counts_the_rest() -> None:
    problems = [
        Problem("p.yaml", 3, 1, "warned", severity="warning"),
        Problem("p.yaml", 4, 1, "first", shot="a"),
        Problem("p.yaml", 9, 1, "second", shot="b"),
    ]
    error = SpecError(problems)
    assert str(error) == "p.yaml:4:1: shot a: first (and 1 more)"
    assert error.problems == problems


@pytest.mark.parametrize(
    ("error", "family"),
    [
        (ConcurrencyLimitError("busy", retry_after=1.0, code=1303), TransientError),
        (NetworkError("dropped"), TransientError),
        (DuplicateExternalIdError("dup", code=1201), ShotRejectedError),
        (AccountError("arrears", code=1101), ProviderError),
        (UpstreamSaturatedError("saturated", retry_after=5.0), ConcurrencyLimitError),
        (ModelNotEnabledError("no channel", http_status=503), AccountError),
    ],
)
def test_error_tree(error: OrchestratorError, family: type[OrchestratorError]) -> None:
    assert isinstance(error, family)
    assert isinstance(error, OrchestratorError)


def test_transient_error_keeps_context() -> None:
    error = ConcurrencyLimitError("busy", retry_after=2.5, code=1303, http_status=429, request_id="r1")
    assert (error.retry_after, error.code, error.http_status, error.request_id) == (2.5, 1303, 429, "r1")


def test_network_error_is_ambiguous_unless_told_otherwise() -> None:
    assert NetworkError("timeout").ambiguous
    assert not NetworkError("refused", ambiguous=False).ambiguous


def test_only_server_errors_and_connections_lost_after_sending_may_have_reached_the_provider() -> None:
    assert ServerError("HTTP 502").may_have_reached_provider
    assert NetworkError("read timeout").may_have_reached_provider
    assert not NetworkError("connection refused", ambiguous=False).may_have_reached_provider
    assert not RateLimitedError("1302").may_have_reached_provider
    assert not ConcurrencyLimitError("1303").may_have_reached_provider


def test_a_saturated_gateway_was_refused_before_anything_reached_upstream() -> None:
    assert not UpstreamSaturatedError("busy", retry_after=5.0).may_have_reached_provider
