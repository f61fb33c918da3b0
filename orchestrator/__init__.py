"""orchestrator: a declarative, YAML-driven render orchestrator for Kling multi-image-to-video."""

from __future__ import annotations

from orchestrator.errors import (
    AccountError,
    ConfigError,
    DownloadError,
    ManifestError,
    OrchestratorError,
    Problem,
    ProviderError,
    SpecError,
)
from orchestrator.shot import ImageRef, Limits, ResolvedProject, ResolvedShot

__version__ = "0.1.0"

# After __version__: the run API reads it when it writes a manifest.
from orchestrator.api import RunResult, arun_project, run_project

__all__ = [
    "AccountError",
    "ConfigError",
    "DownloadError",
    "ImageRef",
    "Limits",
    "ManifestError",
    "OrchestratorError",
    "Problem",
    "ProviderError",
    "ResolvedProject",
    "ResolvedShot",
    "RunResult",
    "SpecError",
    "__version__",
    "arun_project",
    "run_project",
]
