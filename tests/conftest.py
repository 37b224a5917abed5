"""Shared test set-up: an isolated cache folder and small tuning grids for pipeline runs."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Datasets, encoded vectors and tuning results are cached here across test sessions (CI
# points it into the clone); never the user's own cache.
os.environ.setdefault("SEMCOLLAB_CACHE", str(ROOT / ".cache" / "semcollab-test"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: small tuning grids so end-to-end pipeline tests stay fast (the defaults are for real runs)
QUICK_TUNING = {
    "ials": {"grid": {"factors": [32], "regularization": [1.0, 10.0], "alpha": [1.0]}, "fixed": {"iterations": 10}},
    "bpr": {"grid": {"dim": [32], "reg": [1e-2]}, "fixed": {"epochs": 10}},
    "ease": {"grid": {"lam": [50.0, 200.0]}},
    "semantic_trained": {"grid": {"dim": [32], "weight_decay": [0.0]}, "fixed": {"epochs": 10}},
}
