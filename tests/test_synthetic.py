"""The synthetic generator plants what it says it plants."""
from __future__ import annotations

import numpy as np

from analysis.data import index, validate
from analysis.synthetic import generate


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
