"""Exceptions raised by the model library; every failure to read a model is a `ModelLoadError`."""

from __future__ import annotations


class ModelLoadError(Exception):
    """A model file or folder could not be read or understood."""


class CorruptModelError(ModelLoadError):
    """The file is damaged: truncated, a bad header, or not the format its name says."""


class UnsupportedModelError(ModelLoadError):
    """The file is readable but is not a model family Loom can load (e.g. a LoRA or an embedding)."""
