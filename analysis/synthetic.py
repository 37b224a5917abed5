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
top-n), one block of users at a time (:func:`gumbel_top_k`): no users × items matrix is ever
built, so memory stays a few block buffers of 32 MiB whatever the number of users, and the sample
is the dense draw's, bit for bit (same random stream, same float operations). The semantic item
vectors are a random linear image of ``[shared, sem_private]`` plus noise, so the planted shared
dimension is ``d_shared``. A readable text and title
are generated from the same factors so the real text encoder can also be run on it.

What the two *views* share depends on what the collaborative model can learn: users'
tastes load on ``sem_private`` with weight ``w_sem``, so with enough interactions a trained
collaborative model learns those factors too, and the estimated shared dimension is then
``d_shared + d_sem``. With ``w_sem = 0`` it is exactly ``d_shared`` (tested end to end).
"""
from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from .data import Dataset, make_interactions, make_items

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Documentary", "Animation", "Thriller", "Western"]
ADJ = [("bright", "dark"), ("fast", "slow"), ("funny", "grim"), ("epic", "intimate"), ("strange", "ordinary"),
       ("tender", "brutal"), ("modern", "classic"), ("loud", "quiet"), ("hopeful", "bleak"), ("clever", "simple"),
       ("cosmic", "earthly"), ("rural", "urban")]
NOUNS = ["voyage", "heist", "garden", "machine", "river", "kingdom", "signal", "harbor", "letter", "circus",
         "forest", "engine", "mirror", "island", "city", "winter"]


#: Users × items elements per block of the sampler (float64: 32 MiB per block buffer). Peak memory of
#: :func:`gumbel_top_k` is a few such buffers, whatever the number of users.
BLOCK_ELEMENTS = 1 << 22


def block_rows(n_items: int, block_elements: int = BLOCK_ELEMENTS) -> int:
    """How many users one block of :func:`gumbel_top_k` holds for a catalogue of ``n_items``."""
    return max(1, block_elements // max(n_items, 1))


def sampler_threads() -> int:
    """Worker threads for :func:`gumbel_top_k`: the CPUs this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def gumbel_top_k(rng: np.random.Generator, utility, n_per: np.ndarray, n_items: int, temperature: float,
                 block_users: int | None = None, threads: int | None = None) -> np.ndarray:
    """Each user ``u`` draws ``n_per[u]`` distinct items without replacement from
    ``softmax(utility[u] / temperature)``: the top ``n_per[u]`` of ``utility / temperature + Gumbel``.

    Done one block of users at a time, so that no users × items matrix is ever built:
    ``utility(lo, hi, out, tmp)`` writes users ``lo:hi``'s utilities into ``out`` (``tmp`` is scratch of
    the same shape) and returns it. The uniforms behind the Gumbel noise are drawn block after block in
    row order, which is the same stream as one dense ``rng.random((n_users, n_items))`` draw, and each
    block's keys are computed from its own rows only, so the result depends neither on the block size
    nor on the number of ``threads`` (blocks are scored in worker threads; numpy releases the GIL).
    Peak memory is about ``(1 + 4 * threads) * block_users * n_items * 8`` bytes plus the output.
    Returns the items, user after user, each user's in decreasing key order.
    """
    n_per = np.asarray(n_per, dtype=np.int64)
    n_users = len(n_per)
    if n_users and (n_per.min() < 0 or n_per.max() > n_items):
        raise ValueError("each user draws between 0 and n_items items")
    rows = block_rows(n_items) if block_users is None else max(1, int(block_users))
    rows = min(rows, max(n_users, 1))
    blocks = [(lo, min(lo + rows, n_users)) for lo in range(0, n_users, rows)]
    threads = max(1, min(sampler_threads() if threads is None else int(threads), len(blocks)))
    local = threading.local()

    def sample_block(lo: int, hi: int, g: np.ndarray) -> np.ndarray:
        if not hasattr(local, "util"):
            local.util, local.tmp = np.empty((rows, n_items)), np.empty((rows, n_items))
        b = hi - lo
        np.log(g, out=g)  # Gumbel noise -log(-log(U)), in place
        np.negative(g, out=g)
        np.log(g, out=g)
        np.negative(g, out=g)
        keys = utility(lo, hi, local.util[:b], local.tmp[:b])
        keys /= temperature
        keys += g
        k = n_per[lo:hi]
        kmax = int(k.max())
        if kmax == 0:
            return np.empty(0, dtype=np.int64)
        if kmax < n_items:
            top = np.argpartition(keys, n_items - kmax, axis=1)[:, n_items - kmax:]
        else:
            top = np.broadcast_to(np.arange(n_items), (b, n_items))
        top_keys = np.take_along_axis(keys, top, axis=1)
        np.negative(top_keys, out=top_keys)
        ranked = np.take_along_axis(top, np.argsort(top_keys, axis=1), axis=1)
        if (k == kmax).all():
            return ranked.ravel()
        return ranked[np.arange(kmax)[None, :] < k[:, None]]  # row-major: each user's first k[u]

    if threads == 1:
        g = np.empty((rows, n_items))
        with threadpool_limits(1, user_api="blas"):  # multi-threaded BLAS is slower on these thin products
            parts = [sample_block(lo, hi, rng.random(out=g[: hi - lo])) for lo, hi in blocks]
    else:
        # the noise is drawn here, in block order; a pool of threads + 1 noise buffers bounds the blocks in flight
        free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(threads + 1):
            free.put(np.empty((rows, n_items)))

        def run(lo: int, hi: int, buf: np.ndarray) -> np.ndarray:
            try:
                return sample_block(lo, hi, buf[: hi - lo])
            finally:
                free.put(buf)

        with ThreadPoolExecutor(threads) as pool, threadpool_limits(1, user_api="blas"):
            futures = []
            for lo, hi in blocks:
                buf = free.get()
                rng.random(out=buf[: hi - lo])
                futures.append(pool.submit(run, lo, hi, buf))
            parts = [f.result() for f in futures]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


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
    n_per = np.clip(
        np.rint(rng.lognormal(np.log(cfg.mean_per_user) - 0.5 * 0.6**2, 0.6, n_u)), cfg.min_per_user, n_i // 2
    ).astype(int)
    # (d, n_items) row-major copies: the same products as with the transposed views, faster per block
    shared_t, sem_t, col_t = (np.ascontiguousarray(x.T) for x in (shared, sem_p, col_p))

    def utility(lo: int, hi: int, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
        """Users lo:hi's utilities, the same float operations (and order) as the dense formula
        ``a @ shared.T + w_sem * (e @ sem_p.T) + w_col * (c @ col_p.T) + pop``."""
        np.matmul(a[lo:hi], shared_t, out=out)
        for x, x_t, w in ((e, sem_t, cfg.w_sem), (c, col_t, cfg.w_col)):
            np.matmul(x[lo:hi], x_t, out=tmp)
            if w != 1.0:  # (multiplying by 1.0 is exact: skipped)
                tmp *= w
            out += tmp
        out += pop
        return out

    items = gumbel_top_k(rng, utility, n_per, n_i, cfg.temperature)
    users = np.repeat(np.arange(n_u), n_per)
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
    # one string object per user and per item, shared by all their rows (not one per interaction)
    user_names = np.array([f"u{u}" for u in range(n_u)], dtype=object)
    inter = make_interactions(user_names[users], ids.astype(object)[items], np.ones(len(items)), ts)
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
