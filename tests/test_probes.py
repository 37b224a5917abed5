"""Alignment probes (analysis.probes): planted shared / private factors must be recovered.

X and Y are built directly from planted factors (fast): X = [shared, sem_private] A + noise,
Y = [shared, w * col_private] B + noise, with orthonormal A, B rows, so the share of Y's
variance that X can explain is known in closed form. The shared / private R² split is checked
on the synthetic generator's factors (as tests/test_structure.py builds them).

The evaluation protocol (DIAGNOSTICS.md, "Alignment probes") is checked through the
evaluator seam ``_Evaluator(...)(P, y_mean)``, which judges any matrix ``P`` of vectors for the
evaluated items exactly as the probes' outputs are judged: a uniformly shrunk copy of the true
vectors must score the ceiling, random vectors the floor, and the true vectors overlap 1.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import Ridge

from analysis.errors import ConfigError, VectorError
from analysis.metrics import evaluate
from analysis.models.base import EmbeddingRecommender
from analysis.neighbors import knn_cosine
from analysis.backend import get_backend
import analysis.probes as probes_mod
from analysis.probes import (
    CURVE_COLUMNS,
    RowNeighbours,
    _Evaluator,
    _RidgePath,
    fit_ridge,
    item_regimes,
    r2_parts,
    readability,
    reduced_rank,
    run_probes,
    warm_mask,
)
from analysis.ranking import rank
from analysis.split import Split
from analysis.synthetic import generate


def _orth(rng, k, d):
    """k orthonormal rows in R^d."""
    return np.linalg.qr(rng.standard_normal((d, k)))[0].T


def make_split(Y, n_users=300, per_user=25, pop=None, seed=0, cold=None):
    """Users U (n_users, d2) and a Split whose interactions follow U·Y (+ popularity)."""
    rng = np.random.default_rng(seed)
    n, d2 = Y.shape
    Yf = np.nan_to_num(Y)
    U = rng.standard_normal((n_users, d2)) / np.sqrt(d2)
    util = U @ Yf.T + (0 if pop is None else pop[None, :])
    if cold is not None:
        util[:, cold] -= 0.0  # cold items keep their valid/test pairs, lose train below
    keys = util + rng.gumbel(size=util.shape)
    top = np.argsort(-keys, axis=1)[:, :per_user]
    users = np.repeat(np.arange(n_users), per_user)
    items = top.ravel()
    part = rng.choice(3, size=len(users), p=[0.8, 0.1, 0.1])
    if cold is not None:
        part = np.where((part == 0) & cold[items], 2, part)

    def csr(mask):
        return sp.csr_matrix((np.ones(mask.sum(), np.float32), (users[mask], items[mask])), shape=(n_users, n))

    train = csr(part == 0)
    c = np.asarray(train.sum(0)).ravel() == 0
    return U.astype(np.float32), Split(csr(part == 0), csr(part == 1), csr(part == 2), c)


def planted(n=600, d_s=6, d_sem=4, d_col=6, w_col=1.0, d1=32, d2=16, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((n, d_s))
    sem_p = rng.standard_normal((n, d_sem))
    col_p = rng.standard_normal((n, d_col))
    X = np.hstack([shared, sem_p]) @ _orth(rng, d_s + d_sem, d1) + noise * rng.standard_normal((n, d1))
    Y = np.hstack([shared, w_col * col_p]) @ _orth(rng, d_s + d_col, d2) + noise * rng.standard_normal((n, d2))
    return X, Y


def generator_views(n_items=800, d2=32, seed=0):
    """X = the synthetic generator's semantic vectors ([shared, sem_private] + noise); Y = its
    [shared, col_private, popularity] factors through a random map + noise (no model training)."""
    ds = generate(n_users=60, n_items=n_items, seed=seed, mean_per_user=10)
    pl = ds.planted
    X = ds.vectors["semantic"][1].astype(np.float64)
    rng = np.random.default_rng(seed + 100)
    lat = np.hstack([pl["shared"], pl["col_private"], pl["popularity"][:, None]])
    Y = lat @ rng.standard_normal((lat.shape[1], d2)) + 0.5 * rng.standard_normal((n_items, d2))
    return X, Y, pl


def in_distribution_evaluator(Y, U, split, K=10, k=10, seed=0):
    """The evaluator of the in-distribution regime (its evaluated items E) as run_probes builds it."""
    warm = warm_mask(Y)
    pop = np.asarray(split.train.sum(0)).ravel()
    E = item_regimes(warm, pop, None, seed)[0]["in_distribution"][2]
    return _Evaluator(Y, U, split, warm, E, k, K, get_backend("numpy")), E


def row(curves, regime, probe, capacity):
    r = curves[(curves.regime == regime) & (curves.probe == probe) & (curves.capacity == capacity)]
    assert len(r) == 1, (regime, probe, capacity)
    return r.iloc[0]


# ----------------------------------------------------------------- building blocks
def test_ridge_matches_sklearn_primal_and_dual():
    rng = np.random.default_rng(1)
    for n, d in ((200, 12), (30, 50)):  # n >= d (primal) and n < d (dual)
        X = rng.standard_normal((n, d))
        Y = X @ rng.standard_normal((d, 5)) + rng.standard_normal((n, 5))
        path = _RidgePath(X, Y)
        for lr in (1e-3, 1.0, 10.0):
            m = path.fit(lr)
            ref = Ridge(alpha=m.lam, fit_intercept=True, solver="svd").fit(X, Y)
            Xt = rng.standard_normal((7, d))
            np.testing.assert_allclose(m.predict(Xt), ref.predict(Xt), rtol=1e-7, atol=1e-8)


def test_ridge_lambda_chosen_on_validation():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 40))
    Y = X[:, :1] + 3.0 * rng.standard_normal((60, 1))  # weak signal: heavy shrinkage must win
    Xv = rng.standard_normal((400, 40))
    Yv = Xv[:, :1] + 3.0 * rng.standard_normal((400, 1))
    _, lr_noisy = fit_ridge(X, Y, Xv, Yv)
    Y2 = X @ rng.standard_normal((40, 1))  # exactly linear: the smallest λ must win
    _, lr_exact = fit_ridge(X, Y2, Xv, Xv @ np.linalg.lstsq(X, Y2, rcond=None)[0])
    assert lr_noisy >= 1.0
    assert lr_exact == pytest.approx(1e-4)


def test_reduced_rank_is_best_rank_r_approximation_of_fitted_values():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((150, 10))
    Y = X @ rng.standard_normal((10, 6)) + 0.5 * rng.standard_normal((150, 6))
    m = _RidgePath(X, Y).fit(0.1)
    F = (X - m.x_mean) @ m.W
    sv = np.linalg.svd(F, compute_uv=False)
    for r in (1, 2, 4):
        Fr = (X - m.x_mean) @ reduced_rank(m, X, r).W
        assert np.linalg.matrix_rank(Fr, tol=1e-8) == r
        # Eckart-Young: the error is the norm of the trailing singular values
        assert np.linalg.norm(F - Fr) == pytest.approx(np.sqrt((sv[r:] ** 2).sum()), rel=1e-8)


def test_row_neighbours_match_neighbors_knn_cosine():
    rng = np.random.default_rng(4)
    Z = rng.standard_normal((80, 6))
    valid = np.ones(80, bool)
    valid[[3, 17, 40]] = False
    ref, _ = knn_cosine(Z, 5, valid=valid)
    rows = np.array([0, 5, 22, 79])
    nb = RowNeighbours(Z, np.flatnonzero(valid), get_backend("numpy"))
    np.testing.assert_array_equal(nb(rows, 5), ref[rows])
    # mapped queries among a strict subset of candidates: brute force, the query's own item left out
    cand = np.flatnonzero(valid)
    Q = Z[rows] + rng.standard_normal((len(rows), 6))
    U = Z[cand] / np.linalg.norm(Z[cand], axis=1)[:, None]
    S = (Q / np.linalg.norm(Q, axis=1)[:, None]) @ U.T
    S[np.arange(len(rows)), np.searchsorted(cand, rows)] = -np.inf
    want = cand[np.argsort(-S, axis=1, kind="stable")[:, :5]]
    # the same index serves every later search (the probes' evaluator): other queries, other k
    np.testing.assert_array_equal(nb(rows, 5, queries=Q), want)
    np.testing.assert_array_equal(nb(rows[:2], 3, queries=Q[:2]), want[:2, :3])
    with pytest.raises(ConfigError, match="every query item must be a candidate"):
        nb(np.array([3]), 5)


# ---------------------------------------------------------------- planted structure
def test_exact_linear_map_is_recovered():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((500, 24))
    Y = X @ rng.standard_normal((24, 12))
    U, split = make_split(Y, seed=5)
    out = run_probes(X, Y, U, split, widths=(), seed=0)
    r = row(out["curves"], "in_distribution", "ridge", "full")
    assert r.r2 > 0.999 and r.mean_cos > 0.999
    assert r.overlap > 0.97
    assert abs(r.recall - r.ceiling_recall) < 0.01 and abs(r.ndcg - r.ceiling_ndcg) < 0.01
    assert out["summary"]["crossfit_r2"] > 0.999
    assert np.nanmax(out["residuals"]["residual"]) < 1e-3


def test_r2_falls_as_collaborative_private_share_rises():
    """R² ≈ d_s / (d_s + w² d_col) when X carries the shared factors and noise is small."""
    r2 = []
    for w in (0.0, 1.0, 2.0):
        X, Y = planted(w_col=w, seed=6)
        U, split = make_split(Y, seed=6)
        out = run_probes(X, Y, U, split, widths=(), ranks=(), seed=0)
        r = row(out["curves"], "in_distribution", "ridge", "full")
        expected = 6 / (6 + w**2 * 6 + 16 * 0.05**2)
        assert abs(r.r2 - expected) < 0.08, (w, r.r2, expected)
        r2.append(r.r2)
        if w == 0.0:
            assert r.overlap > 0.8
    assert r2[0] > r2[1] + 0.2 > r2[2] + 0.2


def test_rank_sweep_is_monotone_and_full_rank_equals_ridge():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((600, 20))
    W = rng.standard_normal((20, 3)) @ rng.standard_normal((3, 16))  # a rank-3 map
    Y = X @ W + 0.3 * rng.standard_normal((600, 16))
    U, split = make_split(Y, seed=7)
    out = run_probes(X, Y, U, split, widths=(), seed=0)
    c = out["curves"]
    rr = c[(c.regime == "in_distribution") & (c.probe == "reduced_rank")]
    assert rr.capacity.tolist() == ["1", "2", "4", "8", "full"]
    r2 = rr.r2.to_numpy()
    assert (np.diff(r2) > -0.02).all(), r2
    assert r2[0] < r2[1] - 0.05 and r2[1] < rr[rr.capacity == "4"].r2.iloc[0] - 0.05
    assert abs(rr[rr.capacity == "4"].r2.iloc[0] - r2[-1]) < 0.01  # rank 3 already explains the map
    ridge = row(c, "in_distribution", "ridge", "full")
    full = row(c, "in_distribution", "reduced_rank", "full")
    for col in ("r2", "mean_cos", "overlap", "recall", "ndcg", "valid_r2"):
        assert full[col] == pytest.approx(ridge[col], abs=1e-9)


def test_mlp_minibatches_learn_the_nonlinear_map_full_batch_learns():
    """Above MLP_FULL_BATCH_MAX fit items the MLP trains on mini-batches: on a planted nonlinear
    map it reaches the full-batch fit's held-out R² (both far above ridge), in far fewer epochs,
    and the same seed gives the same weights."""
    from analysis.probes import _r2, fit_mlp, fit_ridge

    rng = np.random.default_rng(9)
    X = rng.standard_normal((6000, 8))
    Y = np.tanh(3 * X[:, :4]) @ rng.standard_normal((4, 8)) + np.abs(X[:, 4:6]) @ rng.standard_normal((2, 8))
    f, v, t = slice(0, 4000), slice(4000, 5000), slice(5000, None)
    full = fit_mlp(X[f], Y[f], X[v], Y[v], 64, lr=1e-2, max_epochs=400)
    mini = fit_mlp(X[f], Y[f], X[v], Y[v], 64, lr=1e-2, max_epochs=400, batch_size=256)
    again = fit_mlp(X[f], Y[f], X[v], Y[v], 64, lr=1e-2, max_epochs=400, batch_size=256)
    ridge, _ = fit_ridge(X[f], Y[f], X[v], Y[v])
    r2 = {name: _r2(Y[t], m.predict(X[t]), m.y_mean) for name, m in
          (("full", full), ("mini", mini), ("ridge", ridge))}
    assert r2["ridge"] < 0.8 and r2["full"] > 0.9
    assert r2["mini"] > r2["full"] - 0.02
    np.testing.assert_array_equal(mini.predict(X[t]), again.predict(X[t]))
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        fit_mlp(X[f], Y[f], X[v], Y[v], 8, batch_size=0)


def test_mlp_batches_switch_at_the_size_limit_and_are_equal(monkeypatch):
    from analysis import probes

    assert probes._batches(16_384, None) == (16_384, 1)  # full batch up to the limit
    assert probes._batches(16_385, None) == (3_277, 5)  # 5 steps of 3,277 rows, never a last step of 1
    assert probes._batches(4000, 256) == (250, 16)
    with pytest.raises(ConfigError, match="at least one fit item"):
        probes._batches(0, None)
    rng = np.random.default_rng(10)
    X, Y = rng.standard_normal((1200, 6)), rng.standard_normal((1200, 5))
    monkeypatch.setattr(probes, "MLP_FULL_BATCH_MAX", 500)
    monkeypatch.setattr(probes, "MLP_BATCH", 256)
    auto = probes.fit_mlp(X[:1000], Y[:1000], X[1000:], Y[1000:], 16, max_epochs=60)
    given = probes.fit_mlp(X[:1000], Y[:1000], X[1000:], Y[1000:], 16, max_epochs=60, batch_size=256)
    np.testing.assert_array_equal(auto.predict(X), given.predict(X))


def test_full_batch_mlp_is_the_original_loop():
    """Below the limit the fit is bit for bit the original full-batch loop (ml-100k's probes unchanged)."""
    import torch

    from analysis.probes import fit_mlp

    rng = np.random.default_rng(11)
    X, Y = rng.standard_normal((400, 6)), np.tanh(rng.standard_normal((400, 6))) @ rng.standard_normal((6, 4))
    got = fit_mlp(X[:300], Y[:300], X[300:], Y[300:], 16, seed=3, max_epochs=80, patience=5)
    xm, ym = X[:300].mean(0), Y[:300].mean(0)
    xs, ys = float(np.sqrt(((X[:300] - xm) ** 2).mean())), float(np.sqrt(((Y[:300] - ym) ** 2).mean()))
    t = lambda A, m, sc: torch.from_numpy(((A - m) / sc).astype(np.float32))  # noqa: E731
    Xf, Yf, Xv, Yv = t(X[:300], xm, xs), t(Y[:300], ym, ys), t(X[300:], xm, xs), t(Y[300:], ym, ys)
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.1)
    best, state, best_epoch, bad = np.inf, None, 0, 0
    for epoch in range(1, 81):  # the loop as it was before mini-batches
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(net(Xf), Yf).backward()
        opt.step()
        with torch.no_grad():
            v = float(torch.nn.functional.mse_loss(net(Xv), Yv))
        if v < best - 1e-7:
            best, best_epoch, bad, state = v, epoch, 0, [p.detach().clone() for p in net.parameters()]
        else:
            bad += 1
            if bad > 5:
                break
    with torch.no_grad():
        for p, b in zip(net.parameters(), state):
            p.copy_(b)
        ref = net(t(X, xm, xs)).numpy().astype(np.float64) * ys + ym
    assert got.best_epoch == best_epoch
    np.testing.assert_array_equal(got.predict(X), ref)


def test_mlp_beats_linear_on_a_nonlinear_map():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((700, 8))
    Y = np.tanh(2 * X[:, :4]) @ rng.standard_normal((4, 8)) + np.abs(X[:, 4:6]) @ rng.standard_normal((2, 8))
    U, split = make_split(Y, seed=8)
    out = run_probes(X, Y, U, split, widths=(64,), ranks=(), seed=0, device="cpu", mlp_kw={"lr": 1e-2, "max_epochs": 300})
    c = out["curves"]
    mlp = row(c, "in_distribution", "mlp", "64")
    ridge = row(c, "in_distribution", "ridge", "full")
    assert mlp.r2 > ridge.r2 + 0.1
    assert out["summary"]["best_probe"] == "mlp"  # chosen on validation R²
    assert set(out["residuals"]["best_probe"]) == {"mlp:64"}


def test_shift_regimes_are_worse_when_head_and_tail_maps_differ():
    rng = np.random.default_rng(9)
    n = 800
    X = rng.standard_normal((n, 16))
    W1 = rng.standard_normal((16, 12))
    W2 = W1 + 1.2 * rng.standard_normal((16, 12))
    head = np.zeros(n, bool)
    head[rng.permutation(n)[: n // 2]] = True
    Y = np.where(head[:, None], X @ W1, X @ W2) + 0.1 * rng.standard_normal((n, 12))
    pop = np.where(head, 3.0, -3.0)  # head items are the popular ones
    U, split = make_split(Y / 4, n_users=400, per_user=30, pop=pop, seed=9)
    order = np.where(head, 0.0, 1.0) + 0.01 * rng.random(n)  # head items are also the older ones
    out = run_probes(X, Y, U, split, order=order, widths=(), ranks=(), seed=0)
    c = out["curves"]
    ind = row(c, "in_distribution", "ridge", "full").r2
    pop_shift = row(c, "shift_popularity", "ridge", "full").r2
    time_shift = row(c, "shift_time", "ridge", "full").r2
    assert pop_shift < ind - 0.2, (ind, pop_shift)
    assert time_shift < ind - 0.2, (ind, time_shift)
    n_warm = out["summary"]["n_warm"]
    assert row(c, "shift_time", "ridge", "full").n_eval == n_warm // 2


def test_residuals_mapped_and_curve_contract_with_cold_items():
    X, Y = planted(n=500, w_col=1.0, seed=10)
    rng = np.random.default_rng(10)
    cold = np.zeros(len(Y), bool)
    cold[rng.permutation(len(Y))[:40]] = True
    U, split = make_split(Y, seed=10, cold=cold)
    Yc = Y.copy()
    Yc[split.cold_items] = np.nan
    out = run_probes(X, Yc, U, split, widths=(16,), ranks=(2,), seed=0)
    c, res, summ = out["curves"], out["residuals"], out["summary"]
    assert list(c.columns) == CURVE_COLUMNS
    assert set(c.regime) == {"in_distribution", "shift_popularity"}
    assert summ["skipped_regimes"] == {"shift_time": "no item release order given"}
    assert len(c) == 2 * 4  # ridge, rr 2, rr full, mlp 16 per regime
    warm = ~split.cold_items
    assert summ["n_warm"] == warm.sum() and (res["warm"].to_numpy() == warm).all()
    r = res["residual"].to_numpy()
    assert np.isfinite(r[warm]).all() and (r[warm] >= 0).all() and np.isnan(r[~warm]).all()
    assert np.isfinite(out["mapped"][warm]).all() and np.isnan(out["mapped"][~warm]).all()
    assert np.isfinite(out["mapped_all"]).all()
    np.testing.assert_array_equal(out["mapped_all"][warm], out["mapped"][warm])
    ind = c[c.regime == "in_distribution"].iloc[0]
    assert np.isfinite(res["residual_heldout"]).sum() == ind.n_eval
    assert ind.n_train + ind.n_valid + ind.n_eval == warm.sum()
    assert summ["chance_overlap"] == pytest.approx(10 / (warm.sum() - 1))


def test_ceiling_is_recall_within_the_evaluated_items():
    """The ceiling equals an independent computation: true vectors, only the evaluated items are
    candidates (every other item unscorable), test pairs of evaluated items only, history masked."""
    X, Y = planted(n=400, seed=11)
    U, split = make_split(Y, seed=11)
    out = run_probes(X, Y, U, split, widths=(), ranks=(), seed=3, K=10)
    res = out["residuals"]
    E = res.item_idx[np.isfinite(res.residual_heldout)].to_numpy()
    inE = np.zeros(len(Y), bool)
    inE[E] = True
    tgt = split.test.multiply(sp.csr_matrix(inE.astype(np.float32))).tocsr()
    tgt.eliminate_zeros()
    users = np.flatnonzero(np.diff(tgt.indptr) > 0)
    top = rank(EmbeddingRecommender("c", U, Y.astype(np.float32), inE), users, split.seen_for("test"), 10)
    m = evaluate(top, tgt, users, ks=(10,))
    r = row(out["curves"], "in_distribution", "ridge", "full")
    assert r.ceiling_recall == pytest.approx(np.nanmean(m["recall@10"]), abs=1e-12)
    assert r.ceiling_ndcg == pytest.approx(np.nanmean(m["ndcg@10"]), abs=1e-12)
    assert r.n_eval_users == len(users)


def test_bad_inputs_raise_specific_errors():
    X, Y = planted(n=200, seed=12)
    U, split = make_split(Y, seed=12)
    Xb = X.copy()
    Xb[7, 0] = np.nan
    with pytest.raises(VectorError, match="row 7"):
        run_probes(Xb, Y, U, split)
    with pytest.raises(VectorError, match="user vectors"):
        run_probes(X, Y, U[:, :3], split)
    with pytest.raises(ConfigError, match="order"):
        run_probes(X, Y, U, split, order=np.arange(5))
    with pytest.raises(VectorError, match="rows"):
        run_probes(X[:50], Y, U, split)


# ------------------------------------------------------------- evaluation protocol
def test_uniformly_shrunk_true_vectors_score_the_ceiling():
    """Ridge / low-rank shrinkage must not be punished: 0.3 × the true vectors = the ceiling.

    (Ranked in one list with the true vectors of the other items, as before, the shrunk
    vectors were buried: Recall far below the ceiling.)"""
    X, Y = planted(n=600, seed=20)
    U, split = make_split(Y, n_users=600, seed=20)
    ev, E = in_distribution_evaluator(Y, U, split)
    got = ev(0.3 * Y[E], Y.mean(0))
    assert got["recall"] == pytest.approx(got["ceiling_recall"], abs=1e-12)
    assert got["ndcg"] == pytest.approx(got["ceiling_ndcg"], abs=1e-12)
    assert got["ceiling_recall"] > got["floor_recall"] + 0.2  # the ceiling is far from trivial


def test_random_map_scores_the_random_floor():
    X, Y = planted(n=600, seed=21)
    U, split = make_split(Y, n_users=1500, per_user=50, seed=21)
    ev, E = in_distribution_evaluator(Y, U, split)
    rng = np.random.default_rng(99)  # not the floor's own draws
    rand = [ev(rng.standard_normal((len(E), Y.shape[1])), Y.mean(0)) for _ in range(10)]
    floor = rand[0]["floor_recall"]
    assert rand[0]["ceiling_recall"] > floor + 0.1
    assert np.mean([r["recall"] for r in rand]) == pytest.approx(floor, abs=0.02)
    assert np.mean([r["ndcg"] for r in rand]) == pytest.approx(rand[0]["floor_ndcg"], abs=0.02)


def test_overlap_is_leave_one_out_against_the_true_vectors():
    """True vectors give overlap 1, and an item's overlap does not depend on what the map does to
    the other evaluated items (their true vectors are the candidates, never their mapped ones)."""
    X, Y = planted(n=500, seed=22)
    U, split = make_split(Y, seed=22)
    ev, E = in_distribution_evaluator(Y, U, split)
    assert ev(Y[E], Y.mean(0))["overlap"] == 1.0
    P = Y[E].copy()
    half = np.arange(len(E)) % 2 == 1
    P[half] = np.random.default_rng(0).standard_normal((half.sum(), Y.shape[1]))  # garbage for half of E
    assert ev(P, Y.mean(0))["overlap"] >= (~half).mean()  # the intact half keeps overlap 1
    ov = ev.overlap_items(P)
    np.testing.assert_array_equal(ov[~half], 1.0)
    assert ov[half].mean() < 0.2


def test_readability_rule():
    assert readability(500, 0.30, 0.05, 0.01) == (True, "")
    ok, why = readability(10, 0.30, 0.05, 0.01)
    assert not ok and "only 10 users" in why
    ok, why = readability(500, 0.00008, 0.00002, 0.00001)  # the old popularity-shift ceiling
    assert not ok and "nothing to recover" in why
    ok, why = readability(500, 0.06, 0.05, 0.004)  # true vectors hardly better than random ones
    assert not ok and "hardly better than random" in why


def test_unreadable_regime_is_flagged_in_curves_and_summary():
    """Interactions unrelated to the collaborative vectors: the true vectors rank the evaluated
    items no better than random ones, so no regime's Recall can be read."""
    X, Y = planted(n=500, seed=23)
    _, Y_other = planted(n=500, seed=24)
    U, split = make_split(Y_other, seed=23)  # users pick items by other vectors
    out = run_probes(X, Y, U, split, widths=(), ranks=(), seed=0)
    summ, c = out["summary"], out["curves"]
    for regime, d in summ["regimes"].items():
        assert d["readable"] is False
        assert "hardly better than random" in d["reason"]
        assert summ["unreadable_regimes"][regime] == d["reason"]
        rows = c[c.regime == regime]
        assert (~rows.readable.astype(bool)).all() and (rows.reason == d["reason"]).all()


# ------------------------------------------------------------- shared / private R²
def test_ridge_recovers_the_shared_part_and_not_the_private_part():
    """Planted shared + private blocks (synthetic generator): the map explains the shared part of
    the held-out collaborative vectors and none of the private part, in and out of distribution."""
    X, Y, pl = generator_views(seed=0)
    U, split = make_split(Y / 4, seed=0)
    out = run_probes(X, Y, U, split, widths=(), ranks=(2,), seed=0)
    c, summ = out["curves"], out["summary"]
    for regime in ("in_distribution", "shift_popularity"):
        r = row(c, regime, "ridge", "full")
        assert r.r2_shared > 0.5, (regime, r.r2_shared)
        assert r.r2_private < 0.1, (regime, r.r2_private)
        assert r.shared_dim == pl["shared"].shape[1]  # held-out CCA on the fit items finds the planted 8
        # Π is orthogonal: R² is the variance-weighted average of the two parts
        w = summ["regimes"][regime]["shared_var_eval"]
        assert r.r2 == pytest.approx(w * r.r2_shared + (1 - w) * r.r2_private, abs=1e-9)
    assert summ["regimes"]["in_distribution"]["r2_shared"] == row(c, "in_distribution", "ridge", "full").r2_shared


def test_shared_subspace_is_fitted_on_fit_items_only(monkeypatch):
    X, Y = planted(n=400, seed=25)
    U, split = make_split(Y, seed=25)
    seen = []
    real = probes_mod.shared_basis

    def spy(X_fit, Y_fit, **kw):
        seen.append(np.array(X_fit))
        return real(X_fit, Y_fit, **kw)

    monkeypatch.setattr(probes_mod, "shared_basis", spy)
    run_probes(X, Y, U, split, widths=(), ranks=(), seed=4)
    regimes, _ = item_regimes(warm_mask(Y), np.asarray(split.train.sum(0)).ravel(), None, 4)
    assert len(seen) == len(regimes)
    for got, (fi, _vi, _ei) in zip(seen, regimes.values()):
        np.testing.assert_array_equal(got, X[fi])


def test_r2_parts_hand_computed():
    Y = np.array([[1.0, 2.0, 0.0], [3.0, -1.0, 1.0], [0.0, 0.0, 2.0]])
    P = np.array([[1.5, 0.0, 0.0], [2.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    ybar = np.zeros(3)
    Q = np.array([[1.0], [0.0], [0.0]])  # the shared subspace = the first axis
    r2s, r2p = r2_parts(Y, P, ybar, Q)
    assert r2s == pytest.approx(1 - (0.25 + 1 + 0.25) / (1 + 9 + 0))
    assert r2p == pytest.approx(1 - (4 + 1 + 1 + 4) / (4 + 1 + 1 + 4))  # P predicts nothing off the axis: 0
