"""Run configuration: everything that determines a run, hashed into its cache key."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .cache import digest
from .errors import ConfigError

BUILTIN_DATASETS = {
    "synthetic": "seeded generator with planted shared / private factors (offline default, ground truth)",
    "ml-100k": "MovieLens-100K (943 users, 1,682 movies, 100k ratings), fetched on first use",
}


@dataclass
class RunConfig:
    """What to compute. ``dataset`` is a built-in name or ``"files"`` with ``data_path``."""

    dataset: str = "synthetic"
    data_path: str | None = None
    data_format: str = "auto"
    item_path: str | None = None
    #: refuse interactions whose item id is missing from the item file (default: warn and
    #: keep them with empty metadata). It only refuses input, never changes a result, so
    #: it is not part of the cache key.
    strict: bool = False
    synthetic: dict[str, Any] = field(default_factory=dict)
    rating_threshold: float | None = None
    kcore: int = 0
    split: str = "random"
    seed: int = 0
    keep_fraction: float = 1.0
    cold_item_share: float = 0.0
    ks: tuple[int, ...] = (10, 20)
    k_neighbors: int = 10
    #: "auto" (planted vectors for synthetic, MiniLM otherwise), "minilm", a
    #: sentence-transformers name/path, or a vectors file (.npy/.npz/.parquet)
    semantic: str = "auto"
    semantic_ids: str | None = None
    #: "ials", "bpr", or a vectors file of collaborative item vectors
    collab: str = "ials"
    collab_ids: str | None = None
    compare_semantic: str = "trained"
    device: str = "auto"
    backend: str | None = None
    #: where the heavy stages' independent jobs run: "local" (in-process) or "ray" (analysis.executor);
    #: ray_address: "auto", HOST:PORT, or None ($SEMCOLLAB_RAY_ADDRESS, else a local cluster). Results
    #: do not depend on either, so neither is in the cache key.
    executor: str = "local"
    ray_address: str | None = None
    n_boot: int = 1000
    #: users evaluated (ranked, scored, bootstrapped): every user up to this many, then a seeded
    #: sample of this size (0: always every user). Training always uses every user.
    eval_users: int = 50_000
    #: the fusion curves (21 α × both parts × blending methods) and the alignment probes' rankings use
    #: at most this many of the evaluated users (a seeded sample; 0: all); the fused lists cover all
    curve_users: int = 10_000
    n_alphas: int = 21
    rrf_k: int = 60
    umap: bool = True
    #: permutations of the item pairing for the null of every global similarity score
    n_perm: int = 200
    #: per-kind overrides of the tuning grids / budgets, e.g.
    #: ``{"ials": {"grid": {"factors": [32]}, "fixed": {"iterations": 10}}}`` (kinds: ials,
    #: bpr, ease, semantic_trained). Default: the recorded grids of analysis.models.tuning.
    tuning: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ks = tuple(sorted({int(k) for k in self.ks}))
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"K values must be positive integers, got {self.ks}")
        if self.dataset not in BUILTIN_DATASETS and self.dataset != "files":
            raise ConfigError(f"unknown dataset {self.dataset!r}: use {sorted(BUILTIN_DATASETS)} or --data PATH")
        if self.dataset == "files" and not self.data_path:
            raise ConfigError("dataset 'files' needs data_path (--data PATH)")
        if self.compare_semantic not in {"trained", "zeroshot"}:
            raise ConfigError(f"compare_semantic must be 'trained' or 'zeroshot', got {self.compare_semantic!r}")
        if self.k_neighbors < 1:
            raise ConfigError("k_neighbors must be >= 1")
        if self.eval_users < 0 or self.curve_users < 0:
            raise ConfigError(f"eval_users and curve_users must be >= 0 (0 = every user), got {self.eval_users}, "
                              f"{self.curve_users}")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"unknown executor {self.executor!r}: use 'local' or 'ray'")
        if self.n_alphas < 2:
            raise ConfigError("n_alphas must be >= 2")

    @property
    def K(self) -> int:
        return max(self.ks)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ks"] = list(self.ks)
        return d

    def key(self) -> str:
        """Cache key of the run: the config minus what does not change results."""
        d = self.to_dict()
        for k in ("device", "backend", "strict", "executor", "ray_address"):
            d.pop(k)
        return digest(d)[:16]
