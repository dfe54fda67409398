"""Local models: the registry of bundled and user models, loading with a safetensors cache, engines."""

from lorebook.models.engine import Completion, Engine, GenerationOptions, load_engine
from lorebook.models.registry import ModelSpec, list_models, resolve_model

__all__ = [
    "Completion",
    "Engine",
    "GenerationOptions",
    "ModelSpec",
    "list_models",
    "load_engine",
    "resolve_model",
]
