"""Placeholder: this command module is filled in by its owner."""

from __future__ import annotations
