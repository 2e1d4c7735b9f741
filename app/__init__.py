"""Composition root: CLI, root config, supervisor."""

__version__ = "0.1.0"
