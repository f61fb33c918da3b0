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
    "SpecError",
    "__version__",
]
