"""Maps at scale: the stratified fit sample, UMAP's transform for the other items, the plot sample.

umap-learn compiles with numba on first use, so the UMAP fits are few and small (a few hundred
points, a fit budget of 150) and shared through a module-scoped fixture.
"""
from __future__ import annotations

import numpy as np
import pytest
from app_fixtures import app_env, app_run, app_run_path, app_test, arr, assert_clean, figure  # noqa: F401
from sklearn.neighbors import NearestNeighbors

from analysis.errors import ConfigError
from analysis.neighbors import knn_cosine
from analysis.projection import (STRATA, MapLayouts, _ExactIndex, fit_strata, map_layouts, plot_sample,
                                 stratified_sample, umap_layouts)
from analysis.split import pop_buckets

N_PER, D, BUDGET = 200, 20, 150


def _counts(labels: np.ndarray, sample: np.ndarray) -> dict[str, int]:
    return {str(v): int((labels[sample] == v).sum()) for v in np.unique(labels)}


# ----------------------------------------------------------------------------- stratified sample
def test_strata_kept_in_exact_proportion():
    labels = np.repeat(np.array(STRATA), [200, 300, 450, 50])
    np.random.default_rng(0).shuffle(labels)
    s = stratified_sample(labels, 100, seed=3)
    assert _counts(labels, s) == {"head": 20, "torso": 30, "tail": 45, "cold": 5}
    assert np.all(np.diff(s) > 0)  # sorted, distinct


def test_leftover_rows_go_to_the_largest_remainders():
    labels = np.repeat(np.array(["a", "b", "c"]), [7, 5, 3])
    # quotas 4·7/15 = 1.87, 4·5/15 = 1.33, 4·3/15 = 0.8: floors 1, 1, 0, remainders 13, 5, 12 (/15)
    assert _counts(labels, stratified_sample(labels, 4, seed=0)) == {"a": 2, "b": 1, "c": 1}
    tie = np.array(["y", "x", "y", "x"])  # equal remainders: the label that sorts first
    assert _counts(tie, stratified_sample(tie, 1, seed=0)) == {"x": 1, "y": 0}


def test_sample_is_seeded():
    labels = np.random.default_rng(1).choice(np.array(STRATA), 5_000)
    a, b = stratified_sample(labels, 700, seed=5), stratified_sample(labels, 700, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, stratified_sample(labels, 700, seed=6))
    np.testing.assert_array_equal(stratified_sample(labels, 5_000, seed=5), np.arange(5_000))
    with pytest.raises(ConfigError):
        stratified_sample(labels, -1)


def test_fit_strata_are_the_popularity_buckets():
    rng = np.random.default_rng(2)
    pop = rng.zipf(1.7, 500).astype(float)
    cold = rng.random(500) < 0.1
    np.testing.assert_array_equal(fit_strata(pop, cold), pop_buckets(pop, cold).astype(str))


def test_exact_index_matches_brute_force():
    rng = np.random.default_rng(3)
    base, queries = rng.normal(size=(300, 16)), rng.normal(size=(40, 16))
    idx, dist = _ExactIndex(base).query(queries, 7, epsilon=0.24)
    U = base / np.linalg.norm(base, axis=1, keepdims=True)
    Q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    ref = 1.0 - Q @ U.T
    np.testing.assert_array_equal(idx, np.argsort(ref, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(dist, np.sort(ref, axis=1)[:, :7], atol=1e-5)
    assert idx.dtype == np.int32 and dist.dtype == np.float32


# ----------------------------------------------------------------------------- sampled maps
def _planted(seed: int = 0):
    """Three angular clusters (view a), a rotated copy with 10 % cold items (view b), Zipf popularity."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), N_PER)
    X = 8.0 * np.eye(D)[labels] + rng.normal(size=(3 * N_PER, D))
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    valid = rng.random(3 * N_PER) > 0.1
    Y = X @ Q
    Y[~valid] = 0.0
    pop = rng.zipf(1.7, 3 * N_PER).astype(float)
    pop[~valid] = 0.0
    return X, Y, valid, pop, labels


@pytest.fixture(scope="module")
def sampled():
    X, Y, valid, pop, labels = _planted()
    first = map_layouts(X, Y, pop, valid_b=valid, seed=0, max_fit_points=BUDGET)
    again = map_layouts(X, Y, pop, valid_b=valid, seed=0, max_fit_points=BUDGET)
    return dict(X=X, valid=valid, pop=pop, labels=labels, first=first, again=again)


def test_report_records_the_fit_sample(sampled):
    m, valid, pop = sampled["first"], sampled["valid"], sampled["pop"]
    assert isinstance(m, MapLayouts)
    rep = m.report
    assert rep["n_items"] == 3 * N_PER and rep["max_fit_points"] == BUDGET and rep["seed"] == 0
    strata = fit_strata(pop, ~valid)
    for view, ok in (("semantic", np.ones(len(valid), bool)), ("collaborative", valid)):
        r = rep[view]
        assert r["method"] == "umap_sample_transform"
        assert (r["n_valid"], r["n_fit"], r["n_transformed"]) == (ok.sum(), BUDGET, ok.sum() - BUDGET)
        # the expected counts from the stratum sizes, by Hamilton's method
        size = {s: int((strata[ok] == s).sum()) for s in STRATA}
        fit = {s: BUDGET * size[s] // ok.sum() for s in STRATA}
        rem = sorted(STRATA, key=lambda s: (-(BUDGET * size[s] % ok.sum()), s))
        for s in rem[: BUDGET - sum(fit.values())]:
            fit[s] += 1
        assert r["strata"] == {s: {"items": size[s], "fit": fit[s]} for s in STRATA}
    assert rep["collaborative"]["strata"]["cold"] == {"items": 0, "fit": 0}
    assert rep["semantic"]["strata"]["cold"]["fit"] > 0


def test_sampled_maps_are_seeded(sampled):
    np.testing.assert_array_equal(sampled["first"].sem_xy, sampled["again"].sem_xy)
    np.testing.assert_array_equal(sampled["first"].col_xy, sampled["again"].col_xy)


def test_transformed_items_are_finite_and_land_in_their_cluster(sampled):
    m, valid, labels = sampled["first"], sampled["valid"], sampled["labels"]
    assert np.isfinite(m.sem_xy).all()
    assert np.isfinite(m.col_xy[valid]).all() and np.isnan(m.col_xy[~valid]).all()
    for xy, ok, view in ((m.sem_xy, np.ones(len(valid), bool), "semantic"), (m.col_xy, valid, "collaborative")):
        rows = np.flatnonzero(ok)
        # the fitted items are those whose stratified sample the report describes: recover them as the
        # sample drawn by the same rule, then check every other item lands among its own cluster's fitted items
        fit = rows[stratified_sample(fit_strata(sampled["pop"], ~valid)[rows], BUDGET, 0)]
        rest = np.setdiff1d(rows, fit)
        assert len(rest) == m.report[view]["n_transformed"]
        _, nb = NearestNeighbors(n_neighbors=5).fit(xy[fit]).kneighbors(xy[rest])
        assert (labels[fit][nb] == labels[rest][:, None]).mean() > 0.95, view


def test_at_or_below_the_budget_maps_equal_the_unsampled_path():
    X, Y, valid, pop, _ = _planted(1)
    X, Y, valid, pop = X[:150], Y[:150], valid[:150], pop[:150]
    ia, sa = knn_cosine(X, 15)
    ib, sb = knn_cosine(Y, 15, valid=valid)
    kw = dict(knn_a=(ia, 1.0 - sa), knn_b=(ib, 1.0 - sb), seed=0, valid_b=valid)
    ref = umap_layouts(X, Y, **kw)
    m = map_layouts(X, Y, pop, max_fit_points=150, **kw)
    np.testing.assert_array_equal(m.sem_xy, ref[0])
    np.testing.assert_array_equal(m.col_xy, ref[1])
    for view, n_valid in (("semantic", 150), ("collaborative", int(valid.sum()))):
        r = m.report[view]
        assert r["method"] == "umap" and r["n_fit"] == r["n_valid"] == n_valid and r["n_transformed"] == 0


def test_map_layouts_refuses_bad_popularity_and_budget():
    X, Y, valid, pop, _ = _planted()
    with pytest.raises(ConfigError):
        map_layouts(X, Y, pop[:-1], valid_b=valid)
    with pytest.raises(ConfigError):
        map_layouts(X, Y, -pop, valid_b=valid)
    with pytest.raises(ConfigError):
        map_layouts(X, Y, pop, valid_b=valid, max_fit_points=10)


# ----------------------------------------------------------------------------- plot sample
def _buckets(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pop = rng.zipf(1.6, n).astype(float)
    cold = rng.random(n) < 0.05
    pop[cold] = 0
    order = np.argsort(np.argsort(pop, kind="stable"), kind="stable")
    return pop_buckets(pop, cold).astype(str), (order * 10 // n + 1)


def test_plot_sample_draws_everything_within_the_budget():
    b, dec = _buckets(300)
    ps = plot_sample(b, 300, keep=[3])
    assert ps.mode == "all" and ps.n_kept == 0
    np.testing.assert_array_equal(ps.items, np.arange(300))


def test_plot_sample_keeps_tail_and_cold_whole_when_they_fit():
    b, dec = _buckets(4_000)
    whole = (b == "tail") | (b == "cold")
    budget = int(whole.sum()) + 600
    ps = plot_sample(b, budget, seed=1, strata=dec)
    assert ps.mode == "tail_cold_whole" and len(ps.items) == budget
    assert set(np.flatnonzero(whole)) <= set(ps.items)
    rest = np.flatnonzero(~whole)
    np.testing.assert_array_equal(np.setdiff1d(ps.items, np.flatnonzero(whole)),
                                  rest[stratified_sample(np.char.add(np.char.add(b[rest], "|"), dec[rest].astype(str)),
                                                         600, 1)])
    assert ps.strata["tail"]["drawn"] == ps.strata["tail"]["items"]


def test_plot_sample_is_proportional_above_and_always_keeps_the_selection():
    b, dec = _buckets(10_000)
    ps = plot_sample(b, 1_000, seed=2)
    assert ps.mode == "proportional" and len(ps.items) == 1_000
    for s in STRATA:  # every bucket at 10 %, up to the rounding over its deciles
        assert abs(ps.strata[s]["drawn"] - ps.strata[s]["items"] / 10) <= 10, s
    missing = np.setdiff1d(np.arange(10_000), ps.items)[:3]
    kept = plot_sample(b, 1_000, seed=2, keep=missing)
    assert set(missing) <= set(kept.items) and kept.n_kept == 3 and len(kept.items) == 1_003
    assert set(ps.items) <= set(kept.items)  # the selection adds points, it does not move the others
    np.testing.assert_array_equal(plot_sample(b, 1_000, seed=2).items, ps.items)
    with pytest.raises(ConfigError):
        plot_sample(b, 1_000, keep=[10_000])


# ----------------------------------------------------------------------------- the Maps page
def test_maps_page_draws_a_proportional_sample_and_says_so(app_test, app_run, monkeypatch):
    """A budget below the tail + cold items: a proportional sample, its numbers on screen, the found item
    always drawn, and the run's fit report (when the maps were fitted on a sample) stated."""
    from app.data.maps import frame_sample

    monkeypatch.setenv("SEMCOLLAB_MAX_MAP_POINTS", "100")
    fit = {"n_items": 400, "max_fit_points": 300, "seed": 0,
           "semantic": {"method": "umap_sample_transform", "n_valid": 400, "n_fit": 300, "n_transformed": 100},
           "collaborative": {"method": "umap", "n_valid": 353, "n_fit": 353, "n_transformed": 0}}
    monkeypatch.setattr("app.data.maps.fit_report", lambda key: fit)
    items = app_run.items
    ps = frame_sample(items, 100)
    assert ps.mode == "proportional"
    at = app_test("views/maps.py")
    assert_clean(at)
    drawn = {int(c[0]) for t in figure(at, "maps_sem")["data"] for c in arr(t["customdata"])}
    assert drawn == set(ps.items.tolist()) and len(drawn) == 100
    note = [i.value for i in at.info if "sample" in i.value]
    assert note and note[0].startswith(f"Showing 100 of {len(items):,} items")
    assert "head, torso, tail and cold kept in proportion" in note[0]
    for b, c in ps.strata.items():
        if c["items"]:
            assert f"{b} {c['drawn']:,} of {c['items']:,}" in note[0]
    assert any("fitted on 300 of 400 items, 100 placed by transform" in c.value for c in at.caption)
    outside = int(np.setdiff1d(items["item_idx"], ps.items)[0])
    at.session_state["maps_focus"] = outside
    at.run()
    drawn = {int(c[0]) for t in figure(at, "maps_sem")["data"] for c in arr(t["customdata"])}
    assert outside in drawn and len(drawn) == 101
