"""Evaluation on a seeded user sample (large user bases): what it keeps, and what its intervals say."""
from __future__ import annotations

import numpy as np
import pytest

import analysis
from analysis.bootstrap import ci_rows
from analysis.data import index
from analysis.errors import ConfigError
from analysis.metrics import evaluate
from analysis.models.semantic import ZeroShotSemantic
from analysis.ranking import rank
from analysis.split import evaluation_users, split
from analysis.synthetic import generate
from conftest import QUICK_TUNING

SMALL = {"n_users": 250, "n_items": 300, "mean_per_user": 30.0}


def test_every_user_up_to_the_cap_then_a_seeded_sample_of_the_cap():
    np.testing.assert_array_equal(evaluation_users(943, 50_000), np.arange(943))
    np.testing.assert_array_equal(evaluation_users(943, 0), np.arange(943))
    a, b, c = evaluation_users(10_000, 1_000, seed=0), evaluation_users(10_000, 1_000, seed=0), evaluation_users(10_000, 1_000, seed=1)
    assert len(a) == 1_000 == len(np.unique(a)) and (np.diff(a) > 0).all() and a.max() < 10_000
    np.testing.assert_array_equal(a, b)
    assert len(np.intersect1d(a, c)) < 300  # another seed, another sample (expected overlap 100)
    with pytest.raises(ConfigError, match="max_users"):
        evaluation_users(10, -1)
    with pytest.raises(ConfigError, match="eval_users"):
        analysis.RunConfig(eval_users=-5)


@pytest.fixture(scope="module")
def mid():
    """6,000 users × 800 items: the zero-shot semantic view's per-user test Recall@20 / NDCG@20 for every user."""
    ds = generate(n_users=6000, n_items=800, mean_per_user=25.0, seed=3)
    sp_ = split(index(ds), seed=0)
    ids, vecs = ds.vectors["semantic"]
    model = ZeroShotSemantic(vecs, sp_.train)
    users = np.arange(sp_.n_users)
    per_user = evaluate(rank(model, users, sp_.seen_for("test"), 20), sp_.test, users, ks=(20,))
    return per_user


def test_sampled_intervals_cover_the_full_evaluation_and_widen_as_one_over_root_n(mid):
    """20 seeded samples of 1,500 of 6,000 users: each sample's 95 % bootstrap interval should hold the
    full-population mean (finite population: coverage >= 95 % in expectation; at least 17 of 20 here),
    and its width is about sqrt(6000 / 1500) = 2 times the full evaluation's."""
    full = ci_rows({"v": mid}, n_boot=1000, seed=0).set_index("metric")
    covered, ratios = {"recall": 0, "ndcg": 0}, []
    for seed in range(20):
        u = evaluation_users(6000, 1500, seed=seed)
        sample = ci_rows({"v": {k: v[u] for k, v in mid.items()}}, n_boot=1000, seed=0).set_index("metric")
        for metric in covered:
            covered[metric] += int(sample.loc[metric, "lo"] <= full.loc[metric, "mean"] <= sample.loc[metric, "hi"])
            ratios.append((sample.loc[metric, "hi"] - sample.loc[metric, "lo"]) / (full.loc[metric, "hi"] - full.loc[metric, "lo"]))
        assert abs(sample.loc["recall", "mean"] - full.loc["recall", "mean"]) < 0.03
    assert min(covered.values()) >= 17, covered
    assert 1.7 < float(np.median(ratios)) < 2.3, ratios


def test_a_sampled_run_evaluates_exactly_its_sample_with_the_full_runs_per_user_values(tmp_path):
    """Training does not depend on the sample: a user's metrics in the sampled run equal the full run's."""
    cfg = dict(dataset="synthetic", synthetic=SMALL, n_boot=200, n_alphas=11, tuning=QUICK_TUNING, umap=False)
    full = analysis.run(analysis.RunConfig(**cfg), out=tmp_path / "full", log=lambda m: None)
    samp = analysis.run(analysis.RunConfig(**cfg, eval_users=100, curve_users=60), out=tmp_path / "sample",
                        log=lambda m: None)
    u = evaluation_users(250, 100, seed=0)
    ev = samp.manifest["evaluation"]
    assert ev["n_users"] == 250 and ev["n_evaluated"] == 100 and ev["sampled"]
    assert full.manifest["evaluation"]["n_evaluated"] == 250 and not full.manifest["evaluation"]["sampled"]
    np.testing.assert_array_equal(samp.users["user_idx"], u)
    assert set(samp.table("topk")["user_idx"]) <= set(u) and set(samp.table("interactions")["user_idx"]) == set(u)
    fu = full.users.set_index("user_idx").loc[u]
    for system in ("semantic", "semantic_zs", "collab", "ease", "pop", "rrf"):
        for key in ("recall@20", "ndcg@10"):
            np.testing.assert_array_equal(samp.users[f"{system}_{key}"].to_numpy(), fu[f"{system}_{key}"].to_numpy())
    curves = samp.table("fusion")
    curves = curves[curves["method"] != "rrf"]
    assert samp.manifest["fusion"]["curve_users"] == 60 and full.manifest["fusion"]["curve_users"] == 250
    assert 0 < curves["n"].max() <= 60  # the α curves count at most the curve sample's users
    m = samp.table("metrics")
    n_test = int((samp.users["n_test"] > 0).sum())
    assert (m[(m.part == "test") & (m.segment == "all")]["n_users"] == n_test).all()
    np.testing.assert_array_equal(samp.users["n_train"].to_numpy(), fu["n_train"].to_numpy())
    from analysis.run_queries import evaluation_note

    assert evaluation_note(samp.manifest).startswith("100 of 250 users evaluated (seeded sample")
    assert evaluation_note(full.manifest) == "all 250 users evaluated"
