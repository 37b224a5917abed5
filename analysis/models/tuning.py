"""Validation tuning of every trainable view, per regime, with comparable grids.

DIAGNOSTICS.md ("Fair comparison"): each view is tuned on validation *in every regime*
(a model tuned on dense data and reused on sparse data manufactures complementarity),
and the grids and budgets of the views are comparable and recorded. :func:`tune`
trains every grid point with the same early-stopping rule (validation NDCG@K), picks
the best, and caches the outcome (best parameters + the full table, JSON, never pickle)
under ``cache_dir("tuning")``, keyed by the split's matrices, the kind, the grid, the
fixed settings, the seed (and the item vectors for the semantic view). Since every
regime gives a different split, tuning per regime happens by construction. On a cache
hit only the best configuration is retrained (deterministic for a given seed).

Default grids (``DEFAULT_GRIDS``) were sized so each kind tunes in well under a minute
on a 943 x 1,682 problem on 2 CPU cores; the fixed settings (``DEFAULT_FIXED``) hold the
per-config budget (maximum epochs / sweeps, evaluation interval, patience).

Tuning that scales (issue 10). Two things change with the size of the problem, and nothing
changes below it:

- the criterion is computed on a seeded sample of at most ``valid_sample`` validation users
  (:func:`.validation.valid_users`; 10,000 by default), for every grid point and every
  early-stopping evaluation;
- above ``halving_above`` training interactions (1M by default; ML-1M has 0.8M) the grid is
  searched by *successive halving over user subsamples* (:func:`_halving`): every configuration
  is trained (with early stopping) on the users of a seeded subsample holding about
  ``first_rung_pairs`` training interactions (scored on at most ``first_rung_valid`` of its
  validation users); the best third (``eta`` = 3) go on to a subsample three times larger
  (nested: the same users plus more; three times more validation users, up to ``valid_sample``),
  and so on until one is left; that one is retrained once on every user (the returned model is
  always trained on every user).
  Configurations are thus compared on growing data, and the final choice is made between the
  survivors on the largest subsample, so a regularisation whose optimum moves with the amount of
  data is judged where it matters. EASE is never halved (its cost is the item count, not the
  users; a user subsample would shift its ridge optimum), only validated on the user sample.

Every choice is recorded in ``TuneResult.budget``: the search, the validation users (sampled
and total), the rounds (configurations, users, training pairs, validation users, epochs run,
seconds) and the final retraining.
"""
from __future__ import annotations

import itertools
import json
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..cache import atomic_save_json, cache_dir, digest
from ..errors import CacheWarning, ConfigError
from ..split import Split
from .base import Recommender
from .validation import DEFAULT_K, DEFAULT_VALID_SAMPLE, criterion, valid_users, validate

KINDS = ("ials", "bpr", "ease", "semantic_trained")
_VERSION = "tune-v3"  # v2: standard cold-start protocol, removed pairs masked, configurable K; v3: sampled
# softmax above 10,000 items (was 20,000)

DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "ials": {"factors": [64, 128], "regularization": [1.0, 10.0, 100.0], "alpha": [1.0, 5.0, 20.0]},
    "bpr": {"dim": [64, 128], "reg": [3e-3, 1e-2, 3e-2]},
    "ease": {"lam": [10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0]},
    "semantic_trained": {"dim": [64, 128], "weight_decay": [0.0, 0.01, 0.1]},
}
DEFAULT_FIXED: dict[str, dict[str, Any]] = {
    "ials": {"iterations": 30, "eval_every": 1, "patience": 3},
    "bpr": {"lr": 1e-2, "epochs": 60, "eval_every": 2, "patience": 3},
    "ease": {},
    "semantic_trained": {"lr": 1e-2, "epochs": 60, "eval_every": 2, "patience": 3, "epoch_users": 20_000},
}
#: successive halving replaces the full grid above this many training interactions (ML-1M: 0.8M)
HALVING_ABOVE = 1_000_000
#: the first round of successive halving trains every configuration on users holding about this many
#: training interactions (a seeded subsample of whole users)
FIRST_RUNG_PAIRS = 150_000
#: the first round of successive halving scores configurations on at most this many validation users,
#: each later round on ETA times more (never more than ``valid_sample``): a validation ranking over a
#: large catalogue costs more than an iteration on the first round's few users
FIRST_RUNG_VALID = 2_000
#: successive halving keeps the best 1/ETA of the configurations per round, on ETA times more users
ETA = 3
SEARCHES = ("auto", "grid", "halving")
_ALLOWED = {
    "ials": {"factors", "regularization", "alpha", "iterations", "eval_every", "patience", "num_threads"},
    "bpr": {"dim", "lr", "reg", "epochs", "eval_every", "patience", "batch_size", "num_threads"},
    "ease": {"lam"},
    "semantic_trained": {
        "dim", "lr", "weight_decay", "epochs", "eval_every", "patience", "holdout", "user_map", "batch_size",
        "full_softmax_max_items", "n_negatives", "num_threads", "epoch_users",
    },
}


@dataclass
class TuneResult:
    """The tuned model, its parameters, and every grid point's validation scores."""

    kind: str
    model: Recommender
    best_params: dict[str, Any]
    #: one row per grid point: the grid parameters, ndcg@K, recall@K, best_epoch, seconds
    table: pd.DataFrame
    grid: dict[str, list]
    fixed: dict[str, Any]
    #: n_configs, criterion, per-config limits, the seconds the tuning took, the search ("grid" or
    #: "halving"), the validation users ranked (``valid_users`` of ``valid_users_total``), the
    #: training users; for halving also ``rounds`` and ``final`` (see the module docstring)
    budget: dict[str, Any] = field(default_factory=dict)
    cache_hit: bool = False
    key: str = ""
    #: grid parameters (with >= 3 numeric values) whose best value is the grid's min or max
    #: (a minimum of 0 is a natural bound, not an edge): the optimum may lie outside the grid
    at_edge: list[str] = field(default_factory=list)


def _at_edge(grid: dict[str, list], best: dict[str, Any]) -> list[str]:
    out = []
    for name, values in grid.items():
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        edges = {max(nums)} | ({min(nums)} if min(nums) != 0 else set()) if nums else set()
        if len(nums) >= 3 and len(nums) == len(values) and best[name] in edges:
            out.append(name)
    return out


def _grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    names = list(grid)
    return [dict(zip(names, vals)) for vals in itertools.product(*(grid[n] for n in names))]


def _check(kind: str, grid: dict[str, list], fixed: dict[str, Any]) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r} to tune: use one of {list(KINDS)}")
    for name, values in grid.items():
        if name not in _ALLOWED[kind]:
            raise ConfigError(f"{kind}: unknown grid parameter {name!r}; allowed: {sorted(_ALLOWED[kind])}")
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ConfigError(f"{kind}: grid parameter {name!r} needs a non-empty list of values, got {values!r}")
    for name in fixed:
        if name not in _ALLOWED[kind]:
            raise ConfigError(f"{kind}: unknown fixed parameter {name!r}; allowed: {sorted(_ALLOWED[kind])}")


def _split_key(split: Split) -> list:
    parts: list = []
    for m in (split.train, split.valid, split.removed):
        parts += [np.asarray(m.shape), m.indptr.astype(np.int64), m.indices.astype(np.int64)]
    return parts + [np.asarray(split.cold_items, dtype=bool), np.asarray(split.held_out_items, dtype=bool)]


def train_one(
    kind: str,
    split: Split,
    params: dict[str, Any],
    seed: int = 0,
    vectors: np.ndarray | None = None,
    device: str = "auto",
    gram: np.ndarray | None = None,
    k: int = DEFAULT_K,
    stop_users: np.ndarray | None = None,
) -> Recommender:
    """Train one configuration of ``kind`` (what :func:`tune` runs for each grid point);
    trainable kinds stop early on validation NDCG@``k`` of ``stop_users`` (default
    :func:`.validation.valid_users`)."""
    if kind == "ials":
        from .collaborative import train_ials

        return train_ials(split, seed=seed, k=k, stop_users=stop_users, **params)
    if kind == "bpr":
        from .collaborative import train_bpr

        return train_bpr(split, seed=seed, device=device, k=k, stop_users=stop_users, **params)
    if kind == "ease":
        from .reference import EASE

        return EASE(split.train, G=gram, **params)
    if kind == "semantic_trained":
        from .semantic import train_semantic

        if vectors is None:
            raise ConfigError("tuning 'semantic_trained' needs the item vectors (vectors=...)")
        return train_semantic(vectors, split, seed=seed, device=device, k=k, stop_users=stop_users, **params)
    raise ConfigError(f"unknown model kind {kind!r} to tune: use one of {list(KINDS)}")


def _json_safe(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def user_subsplit(split: Split, users: np.ndarray) -> Split:
    """``split`` restricted to the rows of ``users`` (sorted indices; every item kept): their
    training, validation, test and removed pairs. Cold items = the held-out ones plus every item
    without a training interaction among these users (the collaborative view cannot score them)."""
    users = np.asarray(users, dtype=np.int64)
    train = split.train[users]
    held = np.asarray(split.held_out_items, dtype=bool)
    cold = held | (np.bincount(train.indices, minlength=split.n_items) == 0)
    return Split(train=train, valid=split.valid[users], test=split.test[users], cold_items=cold,
                 regime=dict(split.regime), held_out_items=held.copy(), removed=split.removed[users])


@dataclass
class _Job:
    """One tuning job: what is trained, on what, and where its outcome is cached."""

    kind: str
    split: Split
    grid: dict[str, list]
    fixed: dict[str, Any]
    seed: int
    vectors: np.ndarray | None
    device: str
    k: int
    key: str = ""
    #: at most this many validation users score each configuration (a seeded sample above it; 0: all)
    valid_sample: int | None = DEFAULT_VALID_SAMPLE

    def stop_users(self, split: Split | None = None, cap: int | None = None) -> np.ndarray:
        """The validation users that score configurations (and stop their training) on ``split``: a
        seeded sample of at most ``valid_sample`` (and at most ``cap``) of them."""
        n = min(x for x in (self.valid_sample, cap) if x) if (self.valid_sample or cap) else 0
        return valid_users(self.split if split is None else split, n, self.seed)

    def train(self, params: dict[str, Any], gram: np.ndarray | None = None, split: Split | None = None,
              stop_users: np.ndarray | None = None) -> Recommender:
        split = self.split if split is None else split
        stop_users = self.stop_users(split) if stop_users is None else stop_users
        return train_one(self.kind, split, {**self.fixed, **params}, self.seed, self.vectors, self.device, gram,
                         k=self.k, stop_users=stop_users)


def _from_cache(job: _Job, path) -> TuneResult | None:
    """The cached outcome (the best configuration retrained on every user), or None -- with a warning
    naming the file when the entry exists but cannot be read (it is then tuned again and overwritten)."""
    try:
        rec = json.loads(path.read_text())
        table = pd.DataFrame(rec["table"], columns=rec["table_columns"])  # JSON keys are sorted
        best_params = {name: rec["best_params"][name] for name in job.grid}
        budget = dict(rec["budget"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        warnings.warn(f"tuning cache entry {path} is unreadable ({type(e).__name__}: {e}); tuning again",
                      CacheWarning, stacklevel=3)
        return None
    for name, value in _sizes(job).items():  # entries written before these were recorded (full grid only)
        budget.setdefault(name, value)
    return TuneResult(job.kind, job.train(best_params), best_params, table, job.grid, job.fixed, budget, True, job.key,
                      _at_edge(job.grid, best_params))


def _sizes(job: _Job) -> dict[str, Any]:
    """What the criterion and the training saw: validation users ranked (of how many), training users."""
    n_valid = int((np.diff(job.split.valid.indptr) > 0).sum())
    return {"search": "grid", "valid_users": int(len(job.stop_users())), "valid_users_total": n_valid,
            "valid_sample": int(job.valid_sample or 0), "train_users": int(job.split.n_users),
            "train_pairs": int(job.split.train.nnz)}


def _scores(job: _Job, model: Recommender, split: Split, users: np.ndarray) -> dict[str, float]:
    """A trained configuration's validation scores: those of its best epoch (recorded by the trainer
    on the same users), else ranked now (EASE)."""
    info = getattr(model, "params", {}) or {}
    return info.get("valid") or validate(model, split, job.k, users)


def _epochs_run(model: Recommender) -> int | None:
    info = getattr(model, "params", {}) or {}
    n = info.get("iterations_run", info.get("epochs_run"))
    return None if n is None else int(n)


def _grid_search(job: _Job, progress: bool) -> tuple[pd.DataFrame, Recommender, dict[str, Any], float]:
    """Train every grid point; (table, best model, best point, seconds). Best = highest validation NDCG@k."""
    crit, k = criterion(job.k), job.k
    points = _grid_points(job.grid)
    users = job.stop_users()
    gram = None
    if job.kind == "ease":
        from .reference import gram as _gram

        gram = _gram(job.split.train)
    rows, best_model, best_score, best_point = [], None, -np.inf, points[0]
    t_all = time.perf_counter()
    for p in tqdm(points, desc=f"tune {job.kind}", disable=not progress, leave=False):
        t0 = time.perf_counter()
        model = job.train(p, gram, stop_users=users)
        scores = _scores(job, model, job.split, users)
        rows.append({**p, f"ndcg@{k}": float(scores[f"ndcg@{k}"]), f"recall@{k}": float(scores[f"recall@{k}"]),
                     "best_epoch": (getattr(model, "params", {}) or {}).get("best_epoch"),
                     "seconds": round(time.perf_counter() - t0, 3)})
        if scores[crit] > best_score:
            best_model, best_score, best_point = model, scores[crit], p
    if best_model is None:  # every grid point scored NaN (no validation users)
        best_model = job.train(best_point, gram, stop_users=users)
    return pd.DataFrame(rows), best_model, best_point, time.perf_counter() - t_all


def _rung_users(n_pairs_cum: np.ndarray, target_pairs: float) -> int:
    """How many users of the seeded order hold at least ``target_pairs`` training pairs (all at most)."""
    return int(min(np.searchsorted(n_pairs_cum, target_pairs) + 1, len(n_pairs_cum)))


def _halving(job: _Job, progress: bool, first_rung_pairs: int, eta: int, first_rung_valid: int
             ) -> tuple[pd.DataFrame, Recommender, dict[str, Any], float, dict[str, Any]]:
    """Successive halving over nested user subsamples (module docstring); (table, model trained on
    every user, best point, seconds, budget of the rounds). Table: one row per configuration, with
    the scores of the last round it reached (``round``, ``users``)."""
    crit, k = criterion(job.k), job.k
    points = _grid_points(job.grid)
    sp_ = job.split
    n_users = sp_.n_users
    order = np.random.default_rng([job.seed, 0x4A1F]).permutation(n_users)  # own stream, nested rounds
    cum = np.cumsum(np.diff(sp_.train.indptr)[order])
    alive, rows, rounds = list(range(len(points))), {}, []
    target, r, last = float(first_rung_pairs), 0, None  # last: (config, model) of a round on every user
    t_all = time.perf_counter()
    n_trainings = len(points) + sum(len(points) // eta**j for j in range(1, 64) if len(points) // eta**j > 1)
    bar = tqdm(total=n_trainings, desc=f"tune {job.kind} (halving)", disable=not progress, leave=False)
    while len(alive) > 1:
        n_r = _rung_users(cum, target)
        full = n_r >= n_users
        sub = sp_ if full else user_subsplit(sp_, np.sort(order[:n_r]))
        users = job.stop_users(sub, cap=first_rung_valid * eta**r)
        t_r = time.perf_counter()
        scored, epochs, best = [], [], (-np.inf, None)
        for i in alive:
            t0 = time.perf_counter()
            model = job.train(points[i], split=sub, stop_users=users)
            sc = _scores(job, model, sub, users)
            e = _epochs_run(model)
            epochs.append(e)
            rows[i] = {**points[i], f"ndcg@{k}": float(sc[f"ndcg@{k}"]), f"recall@{k}": float(sc[f"recall@{k}"]),
                       "best_epoch": (getattr(model, "params", {}) or {}).get("best_epoch"),
                       "seconds": round(time.perf_counter() - t0, 3), "round": r, "users": n_r}
            v = float(sc[crit]) if np.isfinite(sc[crit]) else -np.inf
            scored.append((v, i))
            if v > best[0] or best[1] is None:
                best = (v, (i, model))
            del model
            bar.update(1)
        keep = max(1, len(alive) // eta)
        ranked = sorted(scored, key=lambda x: -x[0])  # stable: ties keep grid order
        alive = sorted(i for _, i in ranked[:keep])
        last = best[1] if full and keep == 1 else None
        ran = [e for e in epochs if e is not None]
        rounds.append({"round": r, "configs": len(scored), "kept": keep, "users": n_r,
                       "train_pairs": int(sub.train.nnz), "valid_users": int(len(users)),
                       "epochs_run": int(sum(ran)) if ran else None, "max_epochs_run": max(ran) if ran else None,
                       "seconds": round(time.perf_counter() - t_r, 2)})
        target *= eta
        r += 1
    bar.close()
    best_i = alive[0]
    t0 = time.perf_counter()
    users = job.stop_users()
    if last is not None and last[0] == best_i:
        model, retrained = last[1], False
    else:
        model, retrained = job.train(points[best_i], stop_users=users), True
    sc = _scores(job, model, sp_, users)
    final = {"users": int(n_users), "train_pairs": int(sp_.train.nnz), "valid_users": int(len(users)),
             "retrained": retrained, "epochs_run": _epochs_run(model),
             "best_epoch": (getattr(model, "params", {}) or {}).get("best_epoch"),
             f"ndcg@{k}": float(sc[f"ndcg@{k}"]), "seconds": round(time.perf_counter() - t0, 2)}
    table = pd.DataFrame([rows[i] for i in range(len(points))])
    budget = {"search": "halving", "eta": int(eta), "first_rung_pairs": int(first_rung_pairs),
              "first_rung_valid": int(first_rung_valid), "rounds": rounds, "final": final}
    return table, model, points[best_i], time.perf_counter() - t_all, budget


def _resolve_search(kind: str, split: Split, n_configs: int, search: str, halving_above: int) -> str:
    if search not in SEARCHES:
        raise ConfigError(f"unknown tuning search {search!r}: use one of {list(SEARCHES)}")
    if search == "halving" and kind == "ease":
        raise ConfigError("EASE is tuned on its full ridge-weight grid (its cost is the item count, and a user "
                          "subsample would move its optimum): use search='grid' or 'auto'")
    if search == "auto":
        return "halving" if kind != "ease" and n_configs > 1 and split.train.nnz > halving_above else "grid"
    return search


def tune(
    kind: str,
    split: Split,
    grid: dict[str, list] | None = None,
    seed: int = 0,
    cache: bool = True,
    progress: bool = True,
    vectors: np.ndarray | None = None,
    fixed: dict[str, Any] | None = None,
    device: str = "auto",
    k: int = DEFAULT_K,
    valid_sample: int | None = DEFAULT_VALID_SAMPLE,
    search: str = "auto",
    halving_above: int = HALVING_ABOVE,
    first_rung_pairs: int = FIRST_RUNG_PAIRS,
    eta: int = ETA,
    first_rung_valid: int = FIRST_RUNG_VALID,
) -> TuneResult:
    """Tune ``kind`` in {ials, bpr, ease, semantic_trained} on ``split``'s validation part.

    ``grid`` replaces the default grid (parameters it leaves out take their ``fixed`` /
    trainer defaults); ``fixed`` overrides ``DEFAULT_FIXED[kind]``. ``vectors`` (the frozen
    item text vectors) are required for ``semantic_trained``. ``k``: the criterion is
    validation NDCG@k (the run's configured K). A cache entry that cannot be read is reported
    (:class:`analysis.errors.CacheWarning`) and rebuilt.

    Scale (module docstring): ``valid_sample`` caps the validation users that score each
    configuration and stop its training (a seeded sample above it; 0 / None: every one);
    ``search``: ``"grid"`` trains every grid point on every user, ``"halving"`` runs successive
    halving over user subsamples (first round on users holding ~``first_rung_pairs`` training
    pairs, scored on at most ``first_rung_valid`` validation users, keeping the best 1/``eta`` per
    round, each round on ``eta`` times more users and validation users) and retrains the winner on
    every user, ``"auto"`` halves above ``halving_above`` training pairs (never for EASE).
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r} to tune: use one of {list(KINDS)}")
    grid = {n: list(v) if isinstance(v, (list, tuple)) else v for n, v in (grid or DEFAULT_GRIDS[kind]).items()}
    fixed = {**DEFAULT_FIXED[kind], **(fixed or {})}
    _check(kind, grid, fixed)
    for name, v, low in (("valid_sample", valid_sample or 0, 0), ("halving_above", halving_above, 0),
                         ("first_rung_pairs", first_rung_pairs, 1), ("eta", eta, 2),
                         ("first_rung_valid", first_rung_valid, 1)):
        if not (isinstance(v, (int, np.integer)) and v >= low):
            raise ConfigError(f"tuning {name} must be an integer >= {low}, got {v!r}")
    if kind == "semantic_trained":
        if vectors is None:
            raise ConfigError("tuning 'semantic_trained' needs the item vectors (vectors=...)")
        vectors = np.asarray(vectors, dtype=np.float32)
    grid = {n: [_json_safe(x) for x in v] for n, v in grid.items()}
    n_configs = len(_grid_points(grid))
    how = _resolve_search(kind, split, n_configs, search, halving_above)
    job = _Job(kind, split, grid, fixed, int(seed), vectors, device, int(k), valid_sample=int(valid_sample or 0))
    sizes = _sizes(job)
    # the key changes only with what changes the outcome: a sample that is drawn, a halving search
    plan = {**({"valid_sample": job.valid_sample} if sizes["valid_users"] < sizes["valid_users_total"] else {}),
            **({"search": "halving", "first_rung_pairs": int(first_rung_pairs), "eta": int(eta),
                "first_rung_valid": int(first_rung_valid)}
               if how == "halving" else {})}
    job.key = digest(_VERSION, kind, *_split_key(split), grid, fixed, int(seed), int(k),
                     *([vectors] if vectors is not None else []), *([plan] if plan else []))
    path = cache_dir("tuning") / f"{kind}-{job.key[:32]}.json"
    if cache and path.exists():
        hit = _from_cache(job, path)
        if hit is not None:
            return hit
    extra: dict[str, Any] = {}
    if how == "halving":
        table, best_model, best_point, seconds, extra = _halving(job, progress, int(first_rung_pairs), int(eta),
                                                                  int(first_rung_valid))
    else:
        table, best_model, best_point, seconds = _grid_search(job, progress)
    budget = {"n_configs": len(table), "criterion": f"validation {criterion(k)}", "per_config": dict(fixed),
              "seconds": round(seconds, 2), **sizes, **extra}
    if cache:
        atomic_save_json(path, {"version": _VERSION, "kind": kind, "key": job.key, "grid": grid, "fixed": fixed,
                                "seed": int(seed), "best_params": best_point, "table": table.to_dict(orient="records"),
                                "table_columns": list(table.columns), "budget": budget})
    return TuneResult(kind, best_model, dict(best_point), table, grid, fixed, budget, False, job.key,
                      _at_edge(grid, best_point))
