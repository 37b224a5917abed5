"""A complementarity-aware fusion recommender, its baselines, and one honest comparison.

DIAGNOSTICS.md ("Shared + private structure", "Fusion", "Fair comparison"). Plain score
fusion blends the two views with one global weight α, so an item whose signal is mostly
private to one view (a tail item the collaborative view barely knows, a "taste" item the
text cannot describe) gets the same mix as every other. The model here lets the mix depend
on the item and the user.

Gated fusion (:class:`GatedFusion`)
    a(u, i), b(u, i) = per-user min-max normalised scores of the semantic and collaborative
    views over the whole catalogue (as :mod:`analysis.fusion`);
    s(u, i) = b + g(u, i) · (a − b)  (= g·a + (1 − g)·b, exact when a = b)
    g(u, i) = sigmoid(θ0 + f_i·θ_item + f_u·θ_user + f_u[0] · (f_i·θ_cross))
    f_i: standardised log(1 + training popularity) and any extra per-item features (e.g. the
    shared / private energies of the shared + private analysis); f_u: standardised
    log(1 + training activity).
    Items only one view can score (cold items: only the semantic view) get the gate forced to
    that view (g = 1 for cold items: the collaborative view contributes nothing) and are
    *calibrated* exactly as :mod:`analysis.fusion`'s cold-aware fusion: an item that view v
    ranks below q of the user's unseen warm candidates W is placed right after the q-th best
    blended warm item (its score is that blend value plus a few float spacings; below every
    warm item when q = |W|), items sharing a slot ordered by their own score. So among
    themselves cold items follow the semantic score, and they enter the list where the
    semantic view would put them. Their calibrated scores are then multiplied by ρ
    (``cold_scale``, chosen on validation from a small grid): ρ = 1 is cold-aware fusion,
    ρ < 1 demotes them (plain score fusion's zero fill does so implicitly, and validates
    better when the sparse regime's cold items are rarely relevant). Items
    neither view can score are -inf. Hence a constant gate g ≡ α with ρ = 1 ranks exactly like
    cold-aware score fusion at α, and when both views give identical scores every gate gives exactly that
    single view's ranking. ``with_seen(seen)`` tells the model which items are masked (W is
    unseen warm items, as in ``analysis.fusion``); without it W is every warm item.

Training (why validation, not training interactions). The gate is a *combiner* of two
trained views (stacking): it must be fitted on interactions the views did not see, or it
learns to trust whichever view overfits the training data most (the collaborative view
reproduces its training pairs almost perfectly). Without refitting both views per fold, the
only such data is the validation part — the same data score fusion's α is chosen on, so the
comparison is like for like. The few gate parameters (2 + 2p for p item features) are
fitted by a listwise softmax loss: for each user, the warm validation items against a
candidate set = each view's top-C warm items (training items masked) ∪ the targets, with a
learned temperature; each fold starts from score fusion at the α that is best on its own fit
users (θ0 = logit α, other weights 0). Early stopping uses the exact protocol metric (validation NDCG@K, full
ranking, training items masked) on *other* users: validation users are split in two seeded
folds; the gate is fitted on one fold and stopped on the other, both ways, and the two
parameter vectors are averaged. The test part is never touched until the final evaluation.

Baselines (:func:`evaluate_fusion_models`)
- best single view: semantic or collaborative, whichever has the higher validation NDCG@K;
- score fusion at the validation α (plain or cold-aware, whichever validates better, as the
  pipeline does);
- alignment baseline (:func:`alignment_baseline`): the collaborative user vectors scored
  against the best probe's mapped semantic vectors (:func:`analysis.probes.run_probes`:
  ``mapped`` is cross-fitted for warm items; ``mapped_all`` also maps cold items, which is
  what a cold-start alignment baseline uses), score-fused with the collaborative view at a
  validation α (items only one of them can score are handled cold-aware).
Every system is ranked and evaluated on test with the same protocol (full ranking, train +
valid masked, :func:`analysis.ranking.rank` + :func:`analysis.metrics.evaluate`), with
bootstrap CIs over users and paired bootstraps of the gated fusion against each system.
Whether the gated model wins is an empirical question; nothing here assumes it does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from .backend import Backend, get_backend
from .bootstrap import ci_rows, paired_rows
from .calibration import best_first, calibrated_scores, single_view_slots
from .errors import ConfigError, VectorError
from .fusion import best_single, choose_fusion, fuse_topk, fusion_curve, fusion_methods, minmax_rows
from .metrics import evaluate
from .models.base import EmbeddingRecommender, Recommender
from .models.validation import torch_threads, validate
from .ranking import check_scores, mask_seen, rank
from .seen import Seen, as_seen
from .split import Split

#: the systems this comparison adds to the two views (names of :mod:`analysis.systems`)
FUSION_MODEL_SYSTEMS = ("best_single", "fusion", "alignment", "complementarity_fusion")


# ------------------------------------------------------------------- features
def _standardise(F: np.ndarray, ref: np.ndarray) -> np.ndarray:
    F = np.asarray(F, np.float64)
    mu = np.nanmean(F[ref], 0) if ref.any() else np.zeros(F.shape[1])
    sd = np.nanstd(F[ref], 0) if ref.any() else np.ones(F.shape[1])
    sd = np.where(sd > 0, sd, 1.0)
    Z = (F - mu) / sd
    return np.nan_to_num(Z, nan=0.0)  # a missing feature sits at the mean


def gate_features(
    split: Split, item_features: pd.DataFrame | np.ndarray | Mapping[str, np.ndarray] | None = None,
    warm: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Standardised item features (n_items, p), user features (n_users, 1) and the item feature names.

    Item: log(1 + training popularity) and every column of ``item_features`` (one row per
    item; NaN = unknown, set to the mean), standardised over ``warm`` items (default: items with
    training interactions). User: log(1 + number of training interactions).
    """
    n_i = split.n_items
    pop = np.asarray(split.train.sum(0)).ravel()
    warm = pop > 0 if warm is None else np.asarray(warm, bool)
    cols, names = [np.log1p(pop)], ["log_popularity"]
    if item_features is not None:
        if isinstance(item_features, pd.DataFrame):
            items = {str(c): item_features[c].to_numpy() for c in item_features.columns}
        elif isinstance(item_features, Mapping):
            items = {str(k): np.asarray(v) for k, v in item_features.items()}
        else:
            arr = np.asarray(item_features)
            arr = arr[:, None] if arr.ndim == 1 else arr
            items = {f"feature_{j}": arr[:, j] for j in range(arr.shape[1])}
        for name, v in items.items():
            v = np.asarray(v, dtype=np.float64)
            if v.shape != (n_i,):
                raise ConfigError(f"item feature {name!r} has shape {v.shape}, expected ({n_i},) (one value per item)")
            if np.isinf(v).any():
                raise ConfigError(f"item feature {name!r} is infinite at item {int(np.argmax(np.isinf(v)))}")
            cols.append(v)
            names.append(name)
    Fi = _standardise(np.stack(cols, 1), warm)
    act = np.log1p(np.diff(split.train.indptr)).astype(np.float64)[:, None]
    Fu = _standardise(act, act[:, 0] > 0)
    return Fi, Fu, names


# ---------------------------------------------------------------------- model
@dataclass
class GatedFusion:
    """Recommender: s = b + g·(a − b) on warm items; single-view items calibrated (module docstring)."""

    sem: Recommender
    col: Recommender
    item_feats: np.ndarray  # (n_items, p) standardised
    user_feats: np.ndarray  # (n_users, 1) standardised
    theta: np.ndarray  # [θ0, θ_item (p), θ_user (1), θ_cross (p)]
    name: str = "complementarity_fusion"
    feature_names: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    #: the user's known items (masked by ``rank`` anyway); they are left out of the warm
    #: candidates that single-view items are calibrated against. None: calibrate against all.
    seen: Seen | None = None
    #: ρ: single-view items' calibrated scores are multiplied by ρ (1: as cold-aware fusion;
    #: < 1 demotes them, as plain fusion's zero fill does; 0: after every warm item)
    cold_scale: float = 1.0
    #: K when :meth:`score` only has to be exact for each row's top K (:meth:`for_topk`), else None
    topk: int | None = None

    def __post_init__(self):
        n_s, n_c = len(self.sem.scorable), len(self.col.scorable)
        if n_s != n_c:
            raise ConfigError(f"views score different catalogues: {n_s} vs {n_c} items")
        p = self.item_feats.shape[1]
        if len(self.theta) != 2 + 2 * p:
            raise ConfigError(f"gate has {len(self.theta)} parameters, expected {2 + 2 * p} for {p} item features")
        self.sem_ok = np.asarray(self.sem.scorable, bool)
        self.col_ok = np.asarray(self.col.scorable, bool)
        self.scorable = self.sem_ok | self.col_ok

    def with_seen(self, seen: Seen | sp.spmatrix | None) -> "GatedFusion":
        """A copy that calibrates single-view items against the *unseen* warm items (as ``rank`` masks ``seen``)."""
        return replace(self, theta=np.asarray(self.theta).copy(), feature_names=list(self.feature_names),
                       params=dict(self.params), seen=as_seen(seen))

    def for_topk(self, k: int) -> "GatedFusion":
        """A copy whose :meth:`score` is exact for each row's top ``k`` only, what ``rank(..., k)`` with the same
        ``seen`` reads (deeper single-view items may score -inf): the slots are capped at ``k``
        (:func:`analysis.calibration.single_view_slots`) and each row is certified: an item with ``k`` or more
        warm candidates above it scores at most ρ·(b_k + n·ε) (b_k the row's (k+1)-th best warm blend, n its
        single-view items, ε the spacing of its largest blend), so a row whose k-th best unseen score is above
        that bound has the same top ``k`` without them; other rows are computed in full. Needs ``with_seen``."""
        if int(k) < 1:
            raise ConfigError(f"for_topk needs k >= 1, got {k}")
        return replace(self, topk=int(k))

    def gate_logits(self, users: np.ndarray) -> np.ndarray:
        p = self.item_feats.shape[1]
        t = np.asarray(self.theta, np.float64)
        fu = self.user_feats[np.asarray(users, np.int64), 0]
        item = self.item_feats @ t[1 : 1 + p]
        cross = self.item_feats @ t[2 + p :]
        return t[0] + item[None, :] + (t[1 + p] * fu)[:, None] + fu[:, None] * cross[None, :]

    def gate(self, users: np.ndarray) -> np.ndarray:
        """g(u, i) in [0, 1]: forced to 1 where only the semantic view scores, 0 where only the collaborative does."""
        g = 1.0 / (1.0 + np.exp(-self.gate_logits(users)))
        g[:, self.sem_ok & ~self.col_ok] = 1.0
        g[:, self.col_ok & ~self.sem_ok] = 0.0
        return g

    def fuse(self, a: np.ndarray, b: np.ndarray, users: np.ndarray) -> np.ndarray:
        """Fused float64 scores from the views' normalised scores ``a``, ``b`` of ``users``."""
        users = np.asarray(users, np.int64)
        g = self.gate(users)
        s = b + g * (a - b)  # exactly a where g = 1, b where g = 0, and a when a == b
        s[:, ~self.scorable] = -np.inf
        only_a, only_b = self.sem_ok & ~self.col_ok, self.col_ok & ~self.sem_ok
        if not (only_a.any() or only_b.any()):
            return s
        n, m = s.shape
        seen = np.zeros((n, m), bool) if self.seen is None else self.seen.dense(users)
        if self.cold_scale == 0.0:  # every single-view item scores ρ · (its calibrated score) = 0: no slots needed
            cols = np.flatnonzero(only_a | only_b)
            s[:, cols] = np.where(seen[:, cols], s[:, cols], 0.0)
            return s
        fa, fb = np.broadcast_to(self.sem_ok, (n, m)), np.broadcast_to(self.col_ok, (n, m))
        blend = np.where((self.sem_ok & self.col_ok)[None, :] & ~seen, s, -np.inf)
        if self.topk is None or self.seen is None or self.topk >= m or self.cold_scale < 0:  # the bound needs ρ >= 0
            return self._calibrate(s, single_view_slots(a, b, fa, fb, seen), blend)
        K = self.topk
        slots = single_view_slots(a, b, fa, fb, seen, cap=K)
        if slots.key is None:
            return s
        self._calibrate(s, slots, blend, depth=K + 1, drop=slots.single & (slots.slot >= K))
        top = best_first(blend, K + 1)
        bk = top[np.arange(n), np.clip(np.minimum(K, slots.n_warm - 1), 0, None)]
        eps = np.spacing(np.maximum(np.abs(top[:, 0]), np.abs(bk)))
        bound = self.cold_scale * (bk + (slots.single.sum(1) + 1) * eps)
        kth = np.partition(np.where(seen, -np.inf, s), m - K, axis=1)[:, m - K]
        redo = np.flatnonzero(~(kth > bound) | (slots.n_warm <= K))
        if len(redo):  # rows the cap cannot certify: every slot exact
            r = self._calibrate(s[redo], single_view_slots(a[redo], b[redo], fa[redo], fb[redo], seen[redo]), blend[redo])
            s[redo] = r
        return s

    def _calibrate(self, s: np.ndarray, slots, blend: np.ndarray, depth: int | None = None,
                   drop: np.ndarray | None = None) -> np.ndarray:
        """``s`` with its single-view items' calibrated scores × ρ (in place); ``drop`` (n, c) of them -inf."""
        if slots.key is None:
            return s
        val = calibrated_scores(blend, slots, depth=depth)
        val = val * self.cold_scale if self.cold_scale != 1.0 else val
        if drop is not None:
            val = np.where(drop, -np.inf, val)
        s[:, slots.cols] = np.where(slots.single, val, s[:, slots.cols])
        return s

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, np.int64)
        sa, sb = self.sem.score(users), self.col.score(users)
        check_scores(sa, users, getattr(self.sem, "name", "semantic"))
        check_scores(sb, users, getattr(self.col, "name", "collaborative"))
        return self.fuse(minmax_rows(sa, fill=0.0), minmax_rows(sb, fill=0.0), users)


# ------------------------------------------------------------------- training
def _candidates(model: GatedFusion, users: np.ndarray, split: Split, C: int, be: Backend) -> dict[str, np.ndarray]:
    """Per user: warm candidates (each view's top-C unseen warm items ∪ warm validation targets), -1 padded.

    Only items both views score: the gate acts on them alone (single-view items are calibrated).
    """
    seen = split.seen_for("valid")
    tgt = split.target("valid").tocsr()
    warm = model.sem_ok & model.col_ok
    sa, sb = model.sem.score(users), model.col.score(users)
    check_scores(sa, users, "semantic")
    check_scores(sb, users, "collaborative")
    a, b = minmax_rows(sa, fill=0.0), minmax_rows(sb, fill=0.0)
    ma = mask_seen(np.where(warm[None, :], a, -np.inf), seen, users)
    mb = mask_seen(np.where(warm[None, :], b, -np.inf), seen, users)
    ta, tb = be.topk(ma, C), be.topk(mb, C)
    rows = []
    for j, u in enumerate(users):
        t = tgt.indices[tgt.indptr[u] : tgt.indptr[u + 1]]
        t = t[warm[t]]
        c = np.concatenate([ta[0][j][np.isfinite(ta[1][j])], tb[0][j][np.isfinite(tb[1][j])], t])
        rows.append((np.unique(c), t))
    width = max(1, max(len(c) for c, _ in rows))
    cand = np.full((len(users), width), -1, np.int64)
    is_t = np.zeros((len(users), width), bool)
    for j, (c, t) in enumerate(rows):
        cand[j, : len(c)] = c
        is_t[j, : len(c)] = np.isin(c, t)
    cz = np.maximum(cand, 0)
    ridx = np.arange(len(users))[:, None]
    return {"users": users, "cand": cand, "valid": cand >= 0, "target": is_t & (cand >= 0),
            "a": a[ridx, cz], "b": b[ridx, cz]}


def _fit_gate(
    model: GatedFusion, data: dict, split: Split, stop_users: np.ndarray,
    lr: float = 0.02, max_steps: int = 300, eval_every: int = 10, patience: int = 5, l2: float = 1e-3,
    K: int = 20,
) -> tuple[np.ndarray, dict]:
    """Fit θ from ``model``'s current value on ``data`` users by the candidate softmax.

    Early stopping on ``stop_users``' validation NDCG@K (full ranking, training items
    masked), step 0 (the initial θ) included, so the result is never worse than the start
    on those users. ``l2`` penalises every gate weight except the bias.
    """
    import torch

    from .models.validation import EarlyStopping

    p = model.item_feats.shape[1]
    cand = np.maximum(data["cand"], 0)
    fi = torch.from_numpy(model.item_feats[cand])  # (n, w, p)
    fu = torch.from_numpy(model.user_feats[data["users"], 0])[:, None]  # (n, 1)
    a, b = torch.from_numpy(data["a"]), torch.from_numpy(data["b"])
    excl = ~torch.from_numpy(data["valid"])
    target = torch.from_numpy(data["target"])
    n_t = target.sum().clamp(min=1)
    theta = torch.nn.Parameter(torch.from_numpy(np.asarray(model.theta, np.float64).copy()))
    log_tau = torch.nn.Parameter(torch.tensor(float(np.log(20.0)), dtype=torch.float64))
    opt = torch.optim.Adam([theta, log_tau], lr=lr)
    probe = model.with_seen(split.seen_for("valid")).for_topk(K)
    es = EarlyStopping(patience, k=K)
    best = probe.theta.copy()
    es.step(0, validate(probe, split, K, users=stop_users))
    for step in range(1, max_steps + 1):
        z = theta[0] + fi @ theta[1 : 1 + p] + theta[1 + p] * fu + fu * (fi @ theta[2 + p :])
        s = b + torch.sigmoid(z) * (a - b)
        logits = (torch.exp(log_tau) * s).masked_fill(excl, -torch.inf)
        logp = torch.log_softmax(logits, dim=1)
        loss = -(logp.masked_fill(~target, 0.0)).sum() / n_t + l2 * (theta[1:] ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every and step != max_steps:
            continue
        probe.theta = theta.detach().numpy().copy()
        stop = es.step(step, validate(probe, split, K, users=stop_users))
        if es.improved:
            best = probe.theta.copy()
        if stop:
            break
    return best, es.summary()


def _logit(x: float, eps: float = 0.02) -> float:
    x = min(max(float(x), eps), 1 - eps)
    return float(np.log(x / (1 - x)))


def train_gated_fusion(
    sem_model: Recommender,
    col_model: Recommender,
    split: Split,
    item_features: pd.DataFrame | np.ndarray | Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    n_candidates: int = 100,
    max_users: int = 4000,
    cold_scales: Iterable[float] = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0),
    backend: Backend | None = None,
    K: int = 20,
    **fit_kw,
) -> GatedFusion:
    """Fit the gated fusion on the validation part (two user folds, see module docstring).

    Each fold starts from the score fusion tuned on its own fit users (θ0 = logit α, the
    other weights 0: with single-view items calibrated, that *is* cold-aware score fusion),
    is fitted on those users and early-stopped on the other fold; the two θ are averaged.
    ``n_candidates``: C, each view's top-C items per user in the training softmax;
    ``max_users``: at most this many validation users (seeded sample) are used;
    ``cold_scales``: the grid for ρ (single-view items only), chosen on validation NDCG@K of
    those users after θ (ties: the larger ρ); under the standard cold-start protocol (held-out
    items, never in validation) ρ = 1, as :func:`analysis.fusion.fusion_methods` fixes cold-aware
    blending; ``K``: the run's list length (α, early stopping, ρ).
    """
    be = backend or get_backend()
    if split.n_items != len(sem_model.scorable) or split.n_items != len(col_model.scorable):
        raise ConfigError(f"views score {len(sem_model.scorable)} / {len(col_model.scorable)} items, split has {split.n_items}")
    Fi, Fu, names = gate_features(split, item_features, warm=np.asarray(col_model.scorable, bool))
    p = Fi.shape[1]
    rng = np.random.default_rng(seed)
    users = np.flatnonzero(np.diff(split.valid.indptr) > 0)
    if len(users) < 4:
        raise ConfigError(f"gated fusion needs at least 4 users with validation interactions, got {len(users)}")
    users = rng.permutation(users)[: int(max_users)]
    half = len(users) // 2
    folds = (np.sort(users[:half]), np.sort(users[half:]))
    C = int(min(max(1, n_candidates), split.n_items))
    only_one = (np.asarray(sem_model.scorable, bool) ^ np.asarray(col_model.scorable, bool)).any()
    t0 = time.perf_counter()
    fits, hist, inits = [], [], []
    with torch_threads(1):
        for f in range(2):
            fit_u, stop_u = folds[f], folds[1 - f]
            alpha, _, _ = _choose_fusion(sem_model, col_model, split, fit_u, K, be, methods=(bool(only_one),))
            init = GatedFusion(sem_model, col_model, Fi, Fu, np.r_[_logit(alpha), np.zeros(1 + 2 * p)])
            data = _candidates(init, fit_u, split, C, be)
            th, h = _fit_gate(init, data, split, stop_u, K=K, **fit_kw)
            fits.append(th)
            hist.append(h)
            inits.append(float(alpha))
    theta = np.mean(fits, 0)
    model = GatedFusion(sem_model, col_model, Fi, Fu, theta, feature_names=names)
    cold_grid = {}
    if only_one and np.asarray(split.held_out_items, bool).any():
        cold_scales = (1.0,)  # validation never sees held-out items: calibrated as cold-aware fusion (ρ = 1)
    if only_one:  # ρ for single-view items, on the validation users (like α for score fusion)
        for rho in cold_scales:
            model.cold_scale = float(rho)
            probe = model.with_seen(split.seen_for("valid")).for_topk(K)
            cold_grid[float(rho)] = validate(probe, split, K, users=users)[f"ndcg@{K}"]
        best = max(cold_grid.values())
        model.cold_scale = max(r for r, v in cold_grid.items() if v >= best - 1e-12)  # ties: the larger ρ
    model.params = {
        "model": "gated_fusion",
        "trained_on": "validation interactions, 2 user folds (fit on one, early-stop on the other), θ averaged",
        "feature_names": names,
        "theta": {"bias": float(theta[0]),
                  **{f"item:{n}": float(v) for n, v in zip(names, theta[1 : 1 + p])},
                  "user:log_activity": float(theta[1 + p]),
                  **{f"cross:{n}": float(v) for n, v in zip(names, theta[2 + p :])}},
        "folds": [{"init_alpha": i, "best_step": h["best_epoch"], "stop_fold_valid": h["valid"],
                   "start_stop_fold_valid": {k: v for k, v in h["history"][0].items() if k != "epoch"},
                   "theta": th.tolist()}
                  for i, h, th in zip(inits, hist, fits)],
        "cold_scale": float(model.cold_scale), "cold_scale_valid_ndcg": cold_grid,
        "n_candidates": C, "n_fit_users": int(len(users)), "seed": int(seed),
        "train_s": time.perf_counter() - t0,
    }
    return model


# ------------------------------------------------------------------ baselines
def _choose_fusion(model_a, model_b, split: Split, users, K: int, be: Backend,
                   methods: tuple[bool, ...] | None = None) -> tuple[float, bool, dict]:
    """α and plain / cold-aware blending chosen on validation NDCG@K of ``users`` with
    :func:`analysis.fusion.choose_fusion` (the pipeline's rule; candidate methods from
    :func:`analysis.fusion.fusion_methods` unless ``methods`` (cold-aware flags) is given)."""
    if methods is None:
        methods = tuple(m == "cold_aware" for m in fusion_methods(split, model_a, model_b))
    curves = pd.concat([fusion_curve(model_a, model_b, users, split.seen_for("valid"), split.target("valid"), ks=(K,),
                                     metrics=("ndcg",), cold_aware=ca, backend=be)
                        .assign(part="valid", method="cold_aware" if ca else "score") for ca in methods],
                       ignore_index=True)
    method, alpha, best = choose_fusion(curves, K)
    return alpha, method == "cold_aware", {m: {"valid_ndcg": v, "alpha": a} for m, (v, a) in best.items()}


def alignment_baseline(
    col_model: Recommender, mapped: np.ndarray, split: Split, K: int = 20, backend: Backend | None = None,
    users: np.ndarray | None = None,
) -> dict[str, Any]:
    """Mapped semantic vectors scored with the collaborative users, fused with the collaborative view.

    ``mapped`` (n_items, d): item vectors in the collaborative space (rows of NaN: the map
    gives no vector; those items are unscorable by the mapped view). Returns dict(mapped_model,
    alpha, cold_aware, valid) with α (and plain vs cold-aware) chosen on validation NDCG@K of
    ``users`` (default: every user; those without validation pairs do not count).
    """
    be = backend or get_backend()
    U = getattr(col_model, "user_vecs", None)
    if U is None:
        raise ConfigError("the alignment baseline needs a collaborative model with user vectors (user_vecs)")
    M = np.asarray(mapped, np.float32)
    if M.ndim != 2 or M.shape[0] != split.n_items or M.shape[1] != np.shape(U)[1]:
        raise VectorError(f"mapped vectors must have shape ({split.n_items}, {np.shape(U)[1]}), got {M.shape}")
    ok = np.isfinite(M).all(1)
    if not ok.any():
        raise VectorError("mapped vectors are NaN for every item")
    mapped_model = EmbeddingRecommender("alignment_mapped", np.asarray(U, np.float32), np.nan_to_num(M), ok,
                                        {"model": "collaborative users x mapped semantic vectors"})
    users = np.arange(split.n_users) if users is None else np.asarray(users, np.int64)
    users = users[np.diff(split.valid.indptr)[users] > 0]
    alpha, ca, valid = _choose_fusion(mapped_model, col_model, split, users, K, be)
    return {"mapped_model": mapped_model, "alpha": alpha, "cold_aware": ca, "valid": valid}


# ---------------------------------------------------------------- comparison
def evaluate_fusion_models(
    sem_model: Recommender,
    col_model: Recommender,
    split: Split,
    mapped: np.ndarray | None = None,
    item_features: pd.DataFrame | np.ndarray | Mapping[str, np.ndarray] | None = None,
    ks: Iterable[int] = (10, 20),
    seed: int = 0,
    n_boot: int = 1000,
    backend: Backend | None = None,
    gated: GatedFusion | None = None,
    gate_kw: Mapping[str, Any] | None = None,
    users: np.ndarray | None = None,
    given: Mapping[str, Any] | None = None,
    curve_users: np.ndarray | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Gated fusion vs best single view, validation-α score fusion and the alignment baseline, on test.

    Systems are named with :mod:`analysis.systems`' vocabulary: the two views by their models'
    ``name`` (the pipeline's ``semantic`` / ``semantic_zs`` and ``collab``), ``best_single``
    (:func:`analysis.fusion.best_single`), ``fusion``, ``alignment``, ``complementarity_fusion``.
    Returns dict(table: DataFrame[system, metric, k, mean, lo, hi, n_users] (test, 95 % bootstrap
    CI over users), differences: DataFrame[system_a, system_b, metric, k, diff, lo, hi, p_value,
    n_users] (paired bootstrap, system_a = complementarity_fusion), per_user: DataFrame[user_idx,
    "<system>_<metric>@<k>"...], valid: DataFrame[system, metric, k, mean], model: the fitted
    :class:`GatedFusion`, summary: dict). The alignment rows are absent when ``mapped`` is None.
    ``gated``: an already fitted model to evaluate instead of fitting one; ``gate_kw``: extra
    arguments of :func:`train_gated_fusion` (e.g. ``n_candidates``, ``max_steps``); ``users``: the
    users evaluated (default: every user; the pipeline passes its evaluation sample). ``given``:
    what the caller already computed for the same ``users`` and split, so it is not ranked again:
    ``{"per_user": {part: {system: {"recall@k": values, ...}}}, "fusion": (alpha, cold_aware, valid)}``
    (the views' and the score fusion's per-user metrics; the fusion as :func:`_choose_fusion` returns it).
    ``curve_users``: the users whose validation curves choose α (default: ``users``; the pipeline
    passes its fusion-curve sample). ``progress``: a progress bar (with ETA) over the six steps (views, score
    fusion, alignment baseline, gate fit, its valid and test lists, bootstrap).
    """
    t0 = time.perf_counter()
    bar = tqdm(total=6, desc="fusion models", disable=not progress, leave=False)
    be = backend or get_backend()
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ConfigError(f"ks must be positive integers, got {ks}")
    ev = _Comparison(split, ks, be, users)
    names = view_names(sem_model, col_model)
    given = dict(given or {})
    known = given.get("per_user") or {}
    timings = {"single_s": sum(ev.add_ranked(n, m, known) for n, m in zip(names, (sem_model, col_model)))}
    bar.update(1)
    best = best_single({n: ev.valid_mean(n) for n in names}, collaborative=names[1])
    ev.res["valid"]["best_single"], ev.res["test"]["best_single"] = ev.res["valid"][best], ev.res["test"][best]
    t = time.perf_counter()
    cu = ev.vusers if curve_users is None else np.intersect1d(ev.vusers, curve_users)
    alpha, cold_aware, fusion_valid = given.get("fusion") or _choose_fusion(sem_model, col_model, split, cu, ev.K, be)
    if not ev.reuse("fusion", known):
        ev.add_fused("fusion", sem_model, col_model, alpha, cold_aware)
    timings["fusion_s"] = time.perf_counter() - t
    bar.update(1)
    align = None
    if mapped is not None:
        t = time.perf_counter()
        align = alignment_baseline(col_model, mapped, split, ev.K, be, users=cu)
        ev.add_fused("alignment", align["mapped_model"], col_model, align["alpha"], align["cold_aware"])
        timings["alignment_s"] = time.perf_counter() - t
    bar.update(1)
    t = time.perf_counter()
    model = gated or train_gated_fusion(sem_model, col_model, split, item_features, seed=seed, backend=be,
                                        **{"K": ev.K, **dict(gate_kw or {})})
    bar.update(1)
    for part in ("valid", "test"):
        ranker = model.with_seen(split.seen_for(part)).for_topk(ev.K)  # exact for the K the lists hold
        ev.res[part]["complementarity_fusion"] = ev.per_user(ev.top(ranker, part), part)
    timings["complementarity_fusion_s"] = time.perf_counter() - t
    bar.update(1)
    t = time.perf_counter()
    out = ev.tables([*names, *FUSION_MODEL_SYSTEMS], n_boot, seed)
    timings["bootstrap_s"] = time.perf_counter() - t
    bar.update(1)
    bar.close()
    timings["total_s"] = time.perf_counter() - t0
    out["model"] = model
    out["summary"] = {
        "K": ev.K, "ks": ks, "views": list(names), "best_single": best, "criterion": f"validation ndcg@{ev.K}",
        "fusion": {"alpha": alpha, "method": "cold_aware" if cold_aware else "score", "valid": fusion_valid},
        "alignment": None if align is None else {"alpha": align["alpha"],
                                                 "method": "cold_aware" if align["cold_aware"] else "score",
                                                 "valid": align["valid"],
                                                 "n_mapped_items": int(align["mapped_model"].scorable.sum())},
        "complementarity_fusion": model.params,
        "n_cold_items": int(np.asarray(split.cold_items).sum()),
        "timings": timings,
    }
    return out


def view_names(sem_model: Recommender, col_model: Recommender) -> tuple[str, str]:
    """The two views' system names: their models' ``name`` (the pipeline sets the vocabulary's)."""
    a, b = getattr(sem_model, "name", "semantic"), getattr(col_model, "name", "collab")
    if a == b:
        raise ConfigError(f"the two views must have different names, both are {a!r}")
    return str(a), str(b)


class _Comparison:
    """Per-user validation and test metrics of several systems on one split, then their tables."""

    def __init__(self, split: Split, ks: list[int], be: Backend, users: np.ndarray | None = None):
        self.split, self.ks, self.be, self.K = split, ks, be, max(ks)
        self.users = np.arange(split.n_users) if users is None else np.asarray(users, np.int64)
        self.vusers = self.users[np.diff(split.valid.indptr)[self.users] > 0]
        self.res: dict[str, dict[str, dict[str, np.ndarray]]] = {"valid": {}, "test": {}}

    def top(self, model: Recommender, part: str) -> np.ndarray:
        return rank(model, self.users, self.split.seen_for(part), self.K, backend=self.be)

    def per_user(self, top: np.ndarray, part: str) -> dict[str, np.ndarray]:
        return evaluate(top, self.split.target(part), self.users, self.ks, metrics=("recall", "ndcg"))

    def reuse(self, name: str, known: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]) -> bool:
        """Take ``name``'s per-user metrics from ``known`` ({part: {system: {metric@k: values}}}) when both
        parts hold every metric@k this comparison reports; False when they do not."""
        keys = [f"{m}@{k}" for k in self.ks for m in ("recall", "ndcg")]
        if not all(key in (known.get(part) or {}).get(name, {}) for part in ("valid", "test") for key in keys):
            return False
        for part in ("valid", "test"):
            self.res[part][name] = {key: np.asarray(known[part][name][key]) for key in keys}
        return True

    def add_ranked(self, name: str, model: Recommender, known: Mapping | None = None) -> float:
        t = time.perf_counter()
        if not self.reuse(name, known or {}):
            for part in ("valid", "test"):
                self.res[part][name] = self.per_user(self.top(model, part), part)
        return time.perf_counter() - t

    def add_fused(self, name: str, a: Recommender, b: Recommender, alpha: float, cold_aware: bool) -> None:
        for part in ("valid", "test"):
            top = fuse_topk(a, b, self.users, self.split.seen_for(part), self.K, alpha, cold_aware=cold_aware,
                            backend=self.be)
            self.res[part][name] = self.per_user(top, part)

    def valid_mean(self, name: str) -> float:
        return float(np.nanmean(self.res["valid"][name][f"ndcg@{self.K}"]))

    def tables(self, order: list[str], n_boot: int, seed: int) -> dict[str, pd.DataFrame]:
        """CI rows, validation means, per-user columns and paired differences vs complementarity_fusion."""
        systems = [s for s in order if s in self.res["test"]]
        test = {s: self.res["test"][s] for s in systems}
        rows = ci_rows(test, n_boot=n_boot, seed=seed)
        vrows = [{"system": s, "metric": key.split("@")[0], "k": int(key.split("@")[1]),
                  "mean": float(np.nanmean(v))} for s in systems for key, v in self.res["valid"][s].items()]
        pu = pd.DataFrame({"user_idx": self.users, **{f"{s}_{key}": v for s, d in test.items() for key, v in d.items()}})
        pairs = [("complementarity_fusion", s) for s in systems if s != "complementarity_fusion"]
        return {"table": rows, "differences": paired_rows(test, pairs, n_boot=n_boot, seed=seed), "per_user": pu,
                "valid": pd.DataFrame(vrows)}
