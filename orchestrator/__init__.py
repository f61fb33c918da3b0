"""orchestrator: a declarative, YAML-driven render orchestrator for Kling multi-image-to-video.

The public API, for scripts and notebooks::

    import orchestrator

    project = orchestrator.load_project("specs/demo/project.yaml")     # raises SpecError with every problem
    plan = orchestrator.plan_project(project)                           # new / changed / unchanged / failed / removed
    result = orchestrator.run_project("specs/demo/project.yaml", provider="local")

Heavier parts (the run API and its HTTP client) are imported on first use, so ``import orchestrator`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from orchestrator.errors import (
    AccountError,
    ConfigError,
    DownloadError,
    ManifestError,
    ManifestLockedError,
    OrchestratorError,
    Problem,
    ProviderError,
    RunAbortedError,
    SpecError,
)
from orchestrator.spec.shot import ImageRef, Limits, ResolvedProject, ResolvedShot

__version__ = "0.1.0"

if TYPE_CHECKING:
    from orchestrator.api import RunResult, arun_project, run_project
    from orchestrator.plan.plan import Plan, plan_project
    from orchestrator.spec.load import Validation, check_project, load_project

# name -> module that defines it; resolved lazily by __getattr__ below (PEP 562).
_LAZY: dict[str, str] = {
    "RunResult": "orchestrator.api",
    "arun_project": "orchestrator.api",
    "run_project": "orchestrator.api",
    "Plan": "orchestrator.plan.plan",
    "plan_project": "orchestrator.plan.plan",
    "Validation": "orchestrator.spec.load",
    "check_project": "orchestrator.spec.load",
    "load_project": "orchestrator.spec.load",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AccountError",
    "ConfigError",
    "DownloadError",
    "ImageRef",
    "Limits",
    "ManifestError",
    "ManifestLockedError",
    "OrchestratorError",
    "Plan",
    "Problem",
    "ProviderError",
    "ResolvedProject",
    "ResolvedShot",
    "RunAbortedError",
    "RunResult",
    "SpecError",
    "Validation",
    "__version__",
    "arun_project",
    "check_project",
    "load_project",
    "plan_project",
    "run_project",
]
