"""The model layer's errors a user can fix, in a module that imports nothing else, so that a
command line can name them in its ``except`` clauses before it has imported torch."""

from __future__ import annotations

__all__ = ["ModelLoadError", "NoWeightsError"]


class ModelLoadError(RuntimeError):
    """A model or checkpoint could not be found, read safely, or matched to the config."""


class NoWeightsError(ModelLoadError):
    """A model folder with a config but no weights, where random weights were not allowed."""
