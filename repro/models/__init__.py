"""Paper-faithful models. Importing this package registers every builder."""

import importlib
import pkgutil

from repro.models.registry import (
    ModelSpec,
    build_model,
    get_model_spec,
    list_models,
    register_model,
)

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "registry" and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["ModelSpec", "build_model", "get_model_spec", "list_models", "register_model"]
