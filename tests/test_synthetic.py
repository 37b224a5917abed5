"""The synthetic generator plants what it says it plants."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from analysis import synthetic
from analysis.data import index, validate
from analysis.synthetic import SyntheticConfig, generate


def test_seeded_and_valid():
    a, b = generate(n_users=100, n_items=120, seed=3), generate(n_users=100, n_items=120, seed=3)
    validate(a)
    assert a.checksum() == b.checksum()
    assert a.checksum() != generate(n_users=100, n_items=120, seed=4).checksum()
    assert a.items["title"].str.len().min() > 0 and a.items["description"].str.contains("story").all()


def test_semantic_vectors_have_the_planted_rank():
    ds = generate(n_users=50, n_items=400, d_shared=5, d_sem=3, sem_noise=0.05, seed=0)
    _, X = ds.vectors["semantic"]
    s = np.linalg.svd(X - X.mean(0), compute_uv=False)
    # 5 shared + 3 semantic-private factors carry signal, the rest is noise
    assert s[7] > 5 * s[8]
    # the semantic vectors are a linear image of [shared, sem_private]: regress them back
    latent = np.hstack([ds.planted["shared"], ds.planted["sem_private"]])
    coef, *_ = np.linalg.lstsq(latent, X, rcond=None)
    r2 = 1 - ((X - latent @ coef) ** 2).sum() / ((X - X.mean(0)) ** 2).sum()
    assert r2 > 0.95
    # ... and carry nothing of the collaborative-private factors (held-out R^2 <= ~0)
    C = ds.planted["col_private"]
    coef, *_ = np.linalg.lstsq(X[:200], C[:200], rcond=None)
    resid = C[200:] - X[200:] @ coef
    assert 1 - (resid**2).sum() / ((C[200:] - C[:200].mean(0)) ** 2).sum() < 0.05


def test_interactions_follow_the_planted_popularity_and_activity():
    ds = generate(n_users=400, n_items=300, pop_scale=1.5, seed=1)
    ix = index(ds)
    counts = np.bincount(ix.items, minlength=ix.n_items)
    assert np.corrcoef(ds.planted["popularity"], np.log1p(counts))[0, 1] > 0.6
    per_user = np.bincount(ix.users)
    assert per_user.min() >= 8
    assert len(ds.interactions) == len(ds.interactions.drop_duplicates(["user_id", "item_id"]))


# --- the block-wise sampler (issue 10: never dense in users × items) -------------------------------------


def _dense_reference(cfg_kw: dict) -> tuple[np.ndarray, np.ndarray]:
    """The generator's interactions as they were drawn before the block-wise sampler: the whole
    users × items utility and Gumbel matrices, one argsort (same RNG draws, same order)."""
    cfg = SyntheticConfig(**cfg_kw)
    rng = np.random.default_rng(cfg.seed)
    n_u, n_i = cfg.n_users, cfg.n_items
    shared = rng.standard_normal((n_i, cfg.d_shared))
    sem_p = rng.standard_normal((n_i, cfg.d_sem))
    col_p = rng.standard_normal((n_i, cfg.d_col))
    pop = rng.standard_normal(n_i) * cfg.pop_scale
    a, e, c = (rng.standard_normal((n_u, d)) / np.sqrt(max(d, 1)) for d in (cfg.d_shared, cfg.d_sem, cfg.d_col))
    utility = a @ shared.T + cfg.w_sem * (e @ sem_p.T) + cfg.w_col * (c @ col_p.T) + pop[None, :]
    n_per = np.clip(
        np.rint(rng.lognormal(np.log(cfg.mean_per_user) - 0.5 * 0.6**2, 0.6, n_u)), cfg.min_per_user, n_i // 2
    ).astype(int)
    gumbel = -np.log(-np.log(rng.random((n_u, n_i))))
    order = np.argsort(-(utility / cfg.temperature + gumbel), axis=1)
    return np.repeat(np.arange(n_u), n_per), np.concatenate([order[u, : n_per[u]] for u in range(n_u)])


@pytest.mark.parametrize("block_elements, threads", [(1, 1), (3 * 150, 2), (37 * 150, 3), (1 << 22, 1)])
def test_block_wise_generator_equals_the_dense_reference(monkeypatch, block_elements, threads):
    # the uniforms are drawn block after block in row order (the dense draw's stream) and each block's keys
    # use its own rows only: the sample is the dense one, whatever the block size or the number of threads
    kw = {"n_users": 230, "n_items": 150, "mean_per_user": 12.0, "w_sem": 0.7, "seed": 5}
    users, items = _dense_reference(kw)
    monkeypatch.setattr(synthetic, "BLOCK_ELEMENTS", block_elements)
    monkeypatch.setattr(synthetic, "sampler_threads", lambda: threads)
    ds = generate(**kw)
    assert ds.interactions["user_id"].tolist() == [f"u{u}" for u in users]
    assert ds.interactions["item_id"].tolist() == [f"i{i}" for i in items]


def test_block_size_and_threads_do_not_change_the_sample():
    rng = np.random.default_rng(0)
    util = rng.standard_normal((97, 40)) * 2
    n_per = rng.integers(0, 41, 97)  # 0 and all 40 items included
    n_per[:3] = [0, 40, 1]

    def utility(lo, hi, out, tmp):
        out[:] = util[lo:hi]
        return out

    ref = synthetic.gumbel_top_k(np.random.default_rng(1), utility, n_per, 40, 0.5, block_users=97, threads=1)
    assert len(ref) == n_per.sum()
    starts = np.r_[0, np.cumsum(n_per)]
    assert all(len(set(ref[starts[u]:starts[u + 1]])) == n_per[u] for u in range(97))  # distinct per user
    assert sorted(ref[starts[1]:starts[2]]) == list(range(40))
    for block_users, threads in [(1, 1), (5, 2), (13, 4), (96, 2)]:
        got = synthetic.gumbel_top_k(np.random.default_rng(1), utility, n_per, 40, 0.5, block_users=block_users, threads=threads)
        np.testing.assert_array_equal(got, ref)


def test_block_wise_sampler_draws_from_the_softmax_without_replacement():
    # One utility row shared by 120,000 users, each drawing 2 distinct items. Sampling without replacement
    # from p = softmax(utility / T) (Plackett–Luce): P(first = i) = p_i and
    # P(i among the 2) = p_i + sum_{j != i} p_j p_i / (1 - p_j). Empirical frequencies must lie within
    # 5 binomial standard errors of both (fixed seed; |z| > 5 has probability < 1e-5 per item).
    u_row = np.array([1.2, 0.4, 0.0, -0.3, -1.0, 0.9])
    temperature, n_users, k = 0.8, 120_000, 2
    p = np.exp(u_row / temperature)
    p /= p.sum()
    incl = p + p * ((p / (1 - p)).sum() - p / (1 - p))

    def utility(lo, hi, out, tmp):
        out[:] = u_row
        return out

    items = synthetic.gumbel_top_k(np.random.default_rng(7), utility, np.full(n_users, k), len(u_row), temperature,
                                   block_users=4096, threads=2).reshape(n_users, k)
    assert (items[:, 0] != items[:, 1]).all()
    first = np.bincount(items[:, 0], minlength=len(u_row)) / n_users
    either = np.bincount(items.ravel(), minlength=len(u_row)) / n_users
    assert np.all(np.abs(first - p) < 5 * np.sqrt(p * (1 - p) / n_users))
    assert np.all(np.abs(either - incl) < 5 * np.sqrt(incl * (1 - incl) / n_users))


def test_generating_20k_users_by_20k_items_stays_far_below_the_dense_footprint():
    # The dense generator needed two 20k × 20k float64 matrices (3.2 GB each, 7 GB peak). The block-wise one
    # holds a few 32 MiB blocks: bound the growth of peak RSS (measured in a fresh process, after the imports)
    # and the peak of Python/numpy allocations (tracemalloc) at 1.5 GB. A resource bound, not a timing.
    script = textwrap.dedent(
        """
        import json, resource, tracemalloc
        from analysis.synthetic import generate
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        ds = generate(n_users=20_000, n_items=20_000, mean_per_user=60, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
        grow = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
        print(json.dumps({"rows": len(ds.interactions), "traced": peak, "rss_growth": grow * 1024}))
        """
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=900, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert 1_000_000 < got["rows"] < 1_400_000  # ~60 per user
    assert got["traced"] < 1.5e9, got
    assert got["rss_growth"] < 1.5e9, got


# --- the candidate sampler (issue 10: tier L, 1M users × 100k items, without noise for every cell) ---------


def _plackett_luce_two(u_row: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """P(first = i) and P(i among the first 2) when drawing 2 without replacement from softmax(u / T)."""
    p = np.exp((u_row - u_row.max()) / temperature)
    p /= p.sum()
    return p, p + p * ((p / (1 - p)).sum() - p / (1 - p))


@pytest.mark.parametrize("ratio", [20.0, 0.5, 1e6])
def test_candidate_sampler_draws_from_the_softmax_without_replacement(ratio):
    # 400 items, 100,000 users sharing one utility row, 2 items each. ratio 20: noise set A ~ 40 items and the
    # candidates below; 0.5: |A| < 2 for most users (tau = -inf, every item a candidate); 1e6: p = 1 (every item
    # in A, the plain Gumbel top-k). Each must be Plackett–Luce: first-choice and inclusion frequencies of the 12
    # likeliest items, and of the 388 others together, within 5 binomial standard errors.
    rng = np.random.default_rng(3)
    u_row = rng.standard_normal(400) * 1.5
    temperature, n_users = 0.6, 100_000
    p, incl = _plackett_luce_two(u_row, temperature)
    items = synthetic.candidate_top_k(np.random.default_rng(7), np.ones((n_users, 1)), u_row[None, :],
                                      np.full(n_users, 2), temperature, ratio=ratio, threads=2).reshape(n_users, 2)
    assert (items[:, 0] != items[:, 1]).all()
    top = np.argsort(-p)[:12]
    rest = np.setdiff1d(np.arange(400), top)
    for got, want in ((np.bincount(items[:, 0], minlength=400) / n_users, p),
                      (np.bincount(items.ravel(), minlength=400) / n_users, incl)):
        got, want = np.r_[got[top], got[rest].sum()], np.r_[want[top], want[rest].sum()]
        assert np.all(np.abs(got - want) < 5 * np.sqrt(want * (1 - want) / n_users)), (got - want)


def test_candidate_sampler_does_not_depend_on_threads_and_draws_n_distinct_items():
    rng = np.random.default_rng(0)
    user_f, item_f = rng.standard_normal((700, 5)), rng.standard_normal((5, 900)) * 1.5
    n_per = rng.integers(1, 60, 700)
    n_per[:4] = [0, 900, 1, 450]  # nobody, everything, one, half (p = 1)
    ref = synthetic.candidate_top_k(np.random.default_rng(1), user_f, item_f, n_per, 0.5, threads=1, block_users=64)
    for threads in (2, 3):
        got = synthetic.candidate_top_k(np.random.default_rng(1), user_f, item_f, n_per, 0.5, threads=threads, block_users=64)
        np.testing.assert_array_equal(got, ref)
    starts = np.r_[0, np.cumsum(n_per)]
    assert len(ref) == n_per.sum()
    assert all(len(set(ref[starts[u]:starts[u + 1]])) == n_per[u] for u in range(700))
    assert sorted(ref[starts[1]:starts[2]]) == list(range(900))
    # each user's items come in decreasing utility + noise: the first is mostly one of the best few
    util = user_f @ item_f
    first = ref[starts[2:-1]]
    best = np.argsort(-util[2:], axis=1)[:, :25]
    assert (best == first[:, None]).any(axis=1).mean() > 0.9


def test_candidate_path_keeps_the_planted_structure():
    # 3,000 users × 2,000 items (~60k interactions) forced onto the candidate sampler: the same users draw
    # exactly the same counts as on the exact path (same random stream up to the sampler), distinct items, and
    # the item counts follow the planted popularity as closely as the exact path's do (same law, other draws).
    kw = {"n_users": 3000, "n_items": 2000, "mean_per_user": 20.0, "pop_scale": 1.5, "seed": 4}
    exact, cand = generate(**kw), generate(**kw, candidate_above=0)
    assert exact.planted["sampler"]["method"] == "gumbel_top_k"
    assert cand.planted["sampler"]["method"] == "candidate_top_k" and cand.planted["sampler"]["fallback_users"] == 0
    assert cand.planted["sampler"]["noise_set"] < 0.5 * 3000 * 2000  # noise for a fraction of the cells
    np.testing.assert_array_equal(cand.planted["n_per_user"], exact.planted["n_per_user"])
    validate(cand)
    ix, ie = index(cand), index(exact)
    np.testing.assert_array_equal(np.bincount(ix.users), np.bincount(ie.users))
    assert len(cand.interactions) == len(cand.interactions.drop_duplicates(["user_id", "item_id"]))
    pop = cand.planted["popularity"]
    c_cand, c_exact = np.bincount(ix.items, minlength=2000), np.bincount(ie.items, minlength=2000)
    r_cand, r_exact = np.corrcoef(pop, np.log1p(c_cand))[0, 1], np.corrcoef(pop, np.log1p(c_exact))[0, 1]
    assert r_cand > 0.6 and abs(r_cand - r_exact) < 0.03
    assert np.corrcoef(np.log1p(c_cand), np.log1p(c_exact))[0, 1] > 0.9
    # the planted utility of the drawn pairs: same mean on both paths (within 4 standard errors)
    pl, cfg = cand.planted, SyntheticConfig(**kw)
    rng = np.random.default_rng(kw["seed"])
    for shape in ((2000, 8), (2000, 6), (2000, 6), (2000,)):  # replay the factor draws of generate
        rng.standard_normal(shape)
    a, e, c = (rng.standard_normal((3000, d)) / np.sqrt(d) for d in (cfg.d_shared, cfg.d_sem, cfg.d_col))

    def utility(ixd):
        u, i = ixd.users, ixd.items
        u = np.array([int(s[1:]) for s in ixd.user_ids])[u]  # "u17" -> 17
        return ((a[u] * pl["shared"][i]).sum(1) + (e[u] * pl["sem_private"][i]).sum(1)
                + (c[u] * pl["col_private"][i]).sum(1) + pl["popularity"][i])

    uc, ue = utility(ix), utility(ie)
    assert ue.mean() > 2.5 and uc.mean() > 2.5  # the replayed utility is the one drawn from (random pairs: ~0)
    assert abs(uc.mean() - ue.mean()) < 4 * np.sqrt(uc.var() / len(uc) + ue.var() / len(ue))


@pytest.mark.parametrize("seed", [0, 1])
def test_candidate_path_recovers_the_planted_shared_dimension_end_to_end(tmp_path, monkeypatch, seed):
    """test_pipeline's recovery test (w_sem = 0: the text and the trained collaborative vectors share exactly the
    planted d_shared = 8) on data from the candidate sampler, with a small noise set (ratio 3) so that most users'
    items come through the candidate step rather than the plain Gumbel top-k."""
    import analysis
    from conftest import QUICK_TUNING

    monkeypatch.setattr(synthetic, "CANDIDATE_RATIO", 3.0)
    cfg = analysis.RunConfig(dataset="synthetic", n_boot=100, n_alphas=11, tuning=QUICK_TUNING, umap=False, seed=seed,
                             synthetic={"n_users": 600, "n_items": 800, "w_sem": 0.0, "candidate_above": 0})
    r = analysis.run(cfg, out=tmp_path / "r", log=lambda m: None)
    assert r.manifest["dataset"]["source"].endswith("candidate sampler)")
    st = r.manifest["summary"]["structure"]
    assert abs(st["shared_dim_cca"] - 8) <= 1
    assert r.manifest["planted"]["config"]["candidate_above"] == 0


def test_candidate_sampler_progress_bar_changes_nothing_but_the_screen(capsys):
    kw = {"n_users": 900, "n_items": 700, "mean_per_user": 15.0, "seed": 6, "candidate_above": 0}
    quiet = generate(**kw)
    assert "sample interactions" not in capsys.readouterr().err
    shown = generate(**kw, progress=True)
    err = capsys.readouterr().err
    assert f"sample interactions:   0%|          | 0/{quiet.planted['sampler']['blocks']} " in err  # bar over blocks
    assert shown.checksum() == quiet.checksum()
