"""The old import paths of modules that moved when the library was laid out by job (issue 15):
importing one still works, gives the module at its new path and warns once (DeprecationWarning)
with the new name. Nothing in repro imports an old path."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

_ACCURACY = {
    "augment": "repro.data.augment",
    "datasets": "repro.data.training_sets",
    "detection_data": "repro.data.detection_loaders",
    "schedules": "repro.recipes.schedules",
    "yolo_v1": "repro.methods.yolo_v1",
    "yolo_v2": "repro.methods.yolo_v2",
    "detection": "repro.methods.detection",
    "proposals": "repro.methods.rpn_proposals",
    "transfer": "repro.methods.transfer",
    "rcnn": "repro.methods.rcnn.system",
    "rcnn_regions": "repro.methods.rcnn.regions",
    "rcnn_svm": "repro.methods.rcnn.svm",
    "fit": "repro.train.fit",
    "detector_fit": "repro.train.detector_fit",
    "settings": "repro.suites.accuracy_settings",
    "reasons": "repro.suites.accuracy.reasons",
    "suite": "repro.suites.accuracy.suite",
    "dataset_suite": "repro.suites.dataset",
}
_SPEED = {
    "suite": "repro.suites.speed.suite",
    "groups": "repro.suites.speed.groups",
    "verdicts": "repro.suites.speed.verdicts",
    "scene": "repro.suites.speed.scene",
    "pipelines": "repro.suites.speed.pipelines",
    "settings": "repro.suites.speed_settings",
    "rcnn": "repro.methods.rcnn.detector",
    "fast_rcnn": "repro.methods.fast_rcnn",
    "proposals": "repro.methods.region_proposals",
}
# Packages that no longer exist: a stand-in that holds their old submodules.
GONE_PACKAGES = {"repro.accuracy": _ACCURACY, "repro.speed": _SPEED}
MOVED: dict[str, str] = {
    **{f"repro.accuracy.{k}": v for k, v in _ACCURACY.items()},
    **{f"repro.speed.{k}": v for k, v in _SPEED.items()},
    "repro.bench.timing": "repro.runtime.timing",
    "repro.bench.precision": "repro.runtime.precision",
    "repro.bench.device": "repro.runtime.device",
    "repro.bench.parallel": "repro.bench.multi_worker",
    "repro.train.parallel": "repro.train.parallelize",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: object = None, target: object = None):  # type: ignore[override]
        if name in GONE_PACKAGES:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        if name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=False)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        if spec.name in GONE_PACKAGES:
            return None  # a plain module, made a stand-in package by exec_module
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; import it from there.", DeprecationWarning, stacklevel=2
        )
        module = importlib.import_module(new)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        if name in GONE_PACKAGES:
            module.__path__ = []
            module.__doc__ = f"Moved: {', '.join(sorted(set(GONE_PACKAGES[name].values())))}."

            def submodule(attr: str, package: str = name) -> ModuleType:
                if attr not in GONE_PACKAGES[package]:
                    raise AttributeError(f"module {package!r} has no attribute {attr!r}")
                return importlib.import_module(f"{package}.{attr}")

            module.__getattr__ = submodule  # type: ignore[method-assign]
            return
        module.__spec__ = self._spec  # the import system set the old name's spec on it


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())  # before the path finder: no second copy
