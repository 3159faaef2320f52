"""Where each dataset is: its root from the environment (``REPRO_DATA_<NAME>``) or params.yaml's
``data:``, and whether it is present. Datasets that ship with a dependency need no root."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from repro.claims import Claim

# The datasets `repro data verify` knows.
VERIFIABLE_DATASETS = (
    "imagenet", "imagefolder", "voc", "voc2007", "voc2010", "voc2012", "coco", "sun397", "mnist",
    "fashion_mnist",
)  # fmt: skip
# Datasets that ship with a dependency: always present, no root to set.
BUNDLED_DATASETS = {"digits": "scikit-learn's load_digits"}


def data_root(dataset: str, data_roots: Mapping[str, str] | None) -> str | None:
    env = os.environ.get(f"REPRO_DATA_{dataset.upper()}")
    return env or (data_roots or {}).get(dataset) or BUNDLED_DATASETS.get(dataset) or None


def dataset_present(dataset: str, root: str | None) -> bool:
    return dataset in BUNDLED_DATASETS or bool(root and Path(root).exists())


def data_roots_of(claims: Iterable[Claim], data_roots: Mapping[str, str] | None) -> dict[str, str]:
    """The resolved root of every dataset these claims use (all present: the plan checked)."""
    return {
        c.dataset: str(data_root(c.dataset, data_roots)) for c in claims if c.dataset is not None
    }
