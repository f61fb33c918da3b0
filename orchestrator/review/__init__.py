"""The review: decisions about takes (select, approve, retake, hold) in ``<spec stem>.review.yaml``, and the app.

    from orchestrator.review import Review

    review = Review.open(Path("specs/pilot.yaml"))
    review.select("s03", 2)              # take 2 of s03 (as ``orchestrator takes`` numbers them) is the one
    review.approve("s03")                # bound to the select's fingerprint: stale once the spec changes it
    review.retake("s04", "slower pan")   # plan and run render one more take of s04
    review.pending_retakes()             # what plan must render for retakes
    review.stale_approvals()             # approvals the spec no longer matches

See docs/review.md. The app (``orchestrator.review.server``) is imported only by ``orchestrator review``.
"""

from __future__ import annotations

from orchestrator.review.api import (
    RetakeWanted,
    Review,
    ShotReview,
    approve,
    default_user,
    hold,
    retake,
    select,
    takes,
    wanted_fingerprints,
)
from orchestrator.review.decisions import (
    APPROVED,
    HOLD,
    PENDING_REVIEW,
    RETAKE,
    REVIEW_STATUSES,
    Decision,
    DecisionChange,
    Decisions,
    TakeRef,
    decision_changes,
    decisions_path,
    load_decisions,
    parse_decisions,
    save_decisions,
)
from orchestrator.review.takes import STALE_SUFFIX, UNRENDERED, TakeRow, review_status, take_rows

__all__ = [
    "APPROVED",
    "HOLD",
    "PENDING_REVIEW",
    "RETAKE",
    "REVIEW_STATUSES",
    "STALE_SUFFIX",
    "UNRENDERED",
    "Decision",
    "DecisionChange",
    "Decisions",
    "RetakeWanted",
    "Review",
    "ShotReview",
    "TakeRef",
    "TakeRow",
    "approve",
    "decision_changes",
    "decisions_path",
    "default_user",
    "hold",
    "load_decisions",
    "parse_decisions",
    "retake",
    "review_status",
    "save_decisions",
    "select",
    "take_rows",
    "takes",
    "wanted_fingerprints",
]
