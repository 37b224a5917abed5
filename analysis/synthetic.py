"""Seeded synthetic catalogue with planted shared and private factors: the ground truth.

Each item has latent factors in three blocks plus a popularity term:

- ``shared`` (d_shared): visible to *both* views: users' tastes depend on them and the
  item text describes them;
- ``sem_private`` (d_sem): described by the text only; users' tastes depend on them
  with weight ``w_sem`` (so a semantic recommender can find hits that the
  collaborative model, starved of data on tail items, misses);
- ``col_private`` (d_col): not in the text at all (taste, quality, fashion); users'
  tastes depend on them with weight ``w_col`` (only interactions reveal them);
- popularity: a heavy-tailed item bias, invisible to the text.

Interactions: each user draws ``n_u`` (log-normal activity, at least ``min_per_user``)
distinct items with probability proportional to ``exp(utility / temperature)`` (Gumbel
top-n). The semantic item vectors are a random linear image of ``[shared, sem_private]``
plus noise, so the planted shared dimension is ``d_shared``. A readable text and title
are generated from the same factors so the real text encoder can also be run on it.

What the two *views* share depends on what the collaborative model can learn: users'
tastes load on ``sem_private`` with weight ``w_sem``, so with enough interactions a trained
collaborative model learns those factors too, and the estimated shared dimension is then
``d_shared + d_sem``. With ``w_sem = 0`` it is exactly ``d_shared`` (tested end to end).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .data import Dataset, make_interactions, make_items

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Documentary", "Animation", "Thriller", "Western"]
ADJ = [("bright", "dark"), ("fast", "slow"), ("funny", "grim"), ("epic", "intimate"), ("strange", "ordinary"),
       ("tender", "brutal"), ("modern", "classic"), ("loud", "quiet"), ("hopeful", "bleak"), ("clever", "simple"),
       ("cosmic", "earthly"), ("rural", "urban")]
NOUNS = ["voyage", "heist", "garden", "machine", "river", "kingdom", "signal", "harbor", "letter", "circus",
         "forest", "engine", "mirror", "island", "city", "winter"]


@dataclass
class SyntheticConfig:
    n_users: int = 800
    n_items: int = 1000
    d_shared: int = 8
    d_sem: int = 6
    d_col: int = 6
    w_sem: float = 1.0
    w_col: float = 1.0
    pop_scale: float = 1.0
    temperature: float = 0.6
    mean_per_user: float = 60.0
    min_per_user: int = 8
    sem_dim: int = 48
    sem_noise: float = 0.1
    seed: int = 0


def generate(cfg: SyntheticConfig | None = None, **overrides) -> Dataset:
    """Generate a synthetic :class:`Dataset`; ``planted`` holds the ground truth."""
    cfg = cfg or SyntheticConfig()
    if overrides:
        cfg = SyntheticConfig(**{**asdict(cfg), **overrides})
    rng = np.random.default_rng(cfg.seed)
    n_u, n_i = cfg.n_users, cfg.n_items
    shared = rng.standard_normal((n_i, cfg.d_shared))
    sem_p = rng.standard_normal((n_i, cfg.d_sem))
    col_p = rng.standard_normal((n_i, cfg.d_col))
    pop = rng.standard_normal(n_i) * cfg.pop_scale

    def unit_blocks(d):
        return rng.standard_normal((n_u, d)) / np.sqrt(max(d, 1))

    a, e, c = unit_blocks(cfg.d_shared), unit_blocks(cfg.d_sem), unit_blocks(cfg.d_col)
    utility = a @ shared.T + cfg.w_sem * (e @ sem_p.T) + cfg.w_col * (c @ col_p.T) + pop[None, :]
    n_per = np.clip(
        np.rint(rng.lognormal(np.log(cfg.mean_per_user) - 0.5 * 0.6**2, 0.6, n_u)), cfg.min_per_user, n_i // 2
    ).astype(int)
    gumbel = -np.log(-np.log(rng.random((n_u, n_i))))
    keys = utility / cfg.temperature + gumbel
    order = np.argsort(-keys, axis=1)
    users = np.repeat(np.arange(n_u), n_per)
    items = np.concatenate([order[u, : n_per[u]] for u in range(n_u)])
    # timestamps: a global clock with items "released" over time, for temporal splits
    release = rng.uniform(0, 1e6, n_i)
    ts = release[items] + rng.exponential(2e5, len(items))

    # semantic vectors: random linear image of [shared, sem_private] plus noise
    latent_sem = np.hstack([shared, sem_p])
    proj = np.linalg.qr(rng.standard_normal((cfg.sem_dim, latent_sem.shape[1])))[0].T
    sem = latent_sem @ proj + cfg.sem_noise * rng.standard_normal((n_i, cfg.sem_dim))

    titles, genres, descs = [], [], []
    for i in range(n_i):
        f = latent_sem[i]
        top = np.argsort(-np.abs(f))[:3]
        words = [ADJ[j % len(ADJ)][0 if f[j] > 0 else 1] for j in top]
        titles.append(f"The {words[0].capitalize()} {NOUNS[(int(abs(f[top[0]]) * 7) + i) % len(NOUNS)].capitalize()}")
        g = [GENRES[j % len(GENRES)] for j in range(min(cfg.d_shared, len(GENRES))) if shared[i, j] > 0.8]
        genres.append("|".join(g))
        descs.append(f"{'An' if words[0][0] in 'aeiou' else 'A'} {words[0]}, {words[1]} and {words[2]} story.")
    ids = np.array([f"i{i}" for i in range(n_i)])
    item_df = make_items(ids, titles, np.rint(1950 + release / 1e6 * 70).astype(int), genres, descs)
    inter = make_interactions([f"u{u}" for u in users], ids[items], np.ones(len(items)), ts)
    planted = {
        "config": asdict(cfg),
        "d_shared": cfg.d_shared,
        "shared": shared,
        "sem_private": sem_p,
        "col_private": col_p,
        "popularity": pop,
    }
    return Dataset(
        name="synthetic",
        interactions=inter,
        items=item_df,
        source=f"synthetic generator (seed={cfg.seed}, d_shared={cfg.d_shared}, d_sem={cfg.d_sem}, d_col={cfg.d_col})",
        vectors={"semantic": (ids, sem.astype(np.float32))},
        planted=planted,
    )
