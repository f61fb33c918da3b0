"""The studio's budget, shared through Redis by every run on one provider account (docs/budget.md).

``orchestrator.budget.config`` never imports redis; ``orchestrator.budget.shared`` needs the ``studio`` extra.
"""

from __future__ import annotations

from orchestrator.budget.config import BudgetConfig, redact, resolve_budget

__all__ = ["BudgetConfig", "redact", "resolve_budget"]
