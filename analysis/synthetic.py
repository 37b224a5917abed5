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
is the dense draw's, bit for bit (same random stream, same float operations). Above
``candidate_above`` users × items cells (default 1e9: tier M, 100k × 20k, and beyond) drawing
Gumbel noise for every cell is the cost, so :func:`candidate_top_k` draws the same distribution
(exactly, not an approximation) from another random stream, with noise only for a few thousand
candidate items per user: float32 utilities tile by tile, one comparison per cell. The semantic item
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
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

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


#: Above this many users × items cells :func:`generate` samples with :func:`candidate_top_k` (the same
#: distribution, its own random stream); up to it, with :func:`gumbel_top_k` (bit-identical to the dense
#: draw). ``SyntheticConfig.candidate_above`` overrides it per dataset (0 forces candidates).
CANDIDATE_ABOVE = 1e9
#: Expected size of each user's noise set in :func:`candidate_top_k`, in multiples of the user's count.
CANDIDATE_RATIO = 20.0
#: Elements of :func:`candidate_top_k`'s float32 users × items logit tile (1 MiB: it stays in L2 cache).
TILE_ELEMENTS = 1 << 18
#: Noise-set entries (users × gaps) one block of :func:`candidate_top_k` holds at most.
NOISE_ELEMENTS = 1 << 18


def _gaps_needed(n: np.ndarray, n_items: int, ratio: float) -> np.ndarray:
    """Geometric gaps drawn per user so that they pass ``n_items`` (8 standard deviations and 16 spare)."""
    mean = n_items * np.minimum(1.0, ratio * np.asarray(n, dtype=np.float64) / max(n_items, 1))
    return np.minimum(np.ceil(mean + 8 * np.sqrt(mean) + 16), n_items + 1).astype(np.int64)


def candidate_top_k(rng: np.random.Generator, user_f: np.ndarray, item_f: np.ndarray, n_per: np.ndarray,
                    temperature: float, block_users: int = 128, threads: int | None = None,
                    ratio: float = CANDIDATE_RATIO, stats: dict | None = None, progress: bool = False) -> np.ndarray:
    """The draw of :func:`gumbel_top_k` for a low-rank utility ``user_f @ item_f`` (``user_f`` is
    ``(n_users, d)``, ``item_f`` is ``(d, n_items)``; an item bias is a row of ``item_f`` against a
    column of ones), exact in distribution, with Gumbel noise drawn only where it can matter (a few
    thousand items per user rather than every item) and utilities computed tile by tile, never stored.

    Each user needs the top ``n = n_per[u]`` keys ``k_i = l_i + G_i`` (``l = utility / temperature``,
    ``G`` i.i.d. standard Gumbel). Split each ``G_i`` into "is ``G_i > x0``" (probability ``p``, about
    ``ratio * n`` items) and its value given that:

    1. the noise set ``A`` of items with ``G_i > x0`` is a Bernoulli(``p``) process over the items
       (geometric gaps), its noise drawn from the Gumbel above ``x0``; ``tau``, the ``n``-th largest key
       in ``A``, bounds the ``n``-th largest key of all items from below (``-inf`` when ``|A| < n``);
    2. every other item has ``G_i <= x0``, so it reaches ``tau`` only if ``l_i >= tau - x0``: those
       candidates (one float32 comparison per utility, tile by tile) get noise from the Gumbel below
       ``x0``; every other key is below ``tau``, out of the top ``n``.

    The top ``n`` of the realised keys is then the top ``n`` of all keys, and each ``G_i`` has the
    Gumbel law (the mixture of its two truncated parts, weights ``p`` and ``1 - p``), whatever ``tau``.
    Users are taken in blocks of similar ``n`` (at most ``block_users``), each block with its own
    random stream seeded from one draw of ``rng``: the result depends neither on ``threads`` nor on
    which block finishes first. Returns the items, user after user, each user's in decreasing key order
    (as :func:`gumbel_top_k`). ``stats`` (optional dict) receives the noise-set and candidate totals;
    ``progress``: a progress bar (with ETA) over the user blocks.
    """
    sampler = _CandidateSampler(rng, user_f, item_f, n_per, temperature, block_users, ratio)
    nb = len(sampler.blocks)
    threads = max(1, min(sampler_threads() if threads is None else int(threads), max(nb, 1)))
    bar = tqdm(total=nb, desc="sample interactions", disable=not progress, leave=False)
    totals = []
    with threadpool_limits(1, user_api="blas"), bar, ThreadPoolExecutor(threads) as pool:
        for t in (map if threads == 1 else pool.map)(sampler.sample_block, range(nb)):
            totals.append(t)
            bar.update(1)
    if stats is not None:
        t = np.array(totals, dtype=np.int64).reshape(-1, 3).sum(axis=0)
        stats.update(noise_set=int(t[0]), candidates=int(t[1]), fallback_users=int(t[2]), blocks=nb)
    return sampler.out


class _CandidateSampler:
    """The state of one :func:`candidate_top_k` draw: float32 item tiles, the user blocks, the output,
    and per-thread scratch; :meth:`sample_block` draws one block (steps 1-3 of that docstring)."""

    def __init__(self, rng: np.random.Generator, user_f, item_f, n_per, temperature: float, block_users: int,
                 ratio: float):
        n_per = np.asarray(n_per, dtype=np.int64)
        n_users = len(n_per)
        item_f = np.ascontiguousarray(item_f, dtype=np.float64)
        d, n_items = item_f.shape
        if np.shape(user_f) != (n_users, d):
            raise ValueError(f"user factors {np.shape(user_f)} do not match {n_users} users × {d} item factors")
        if n_users and (n_per.min() < 0 or n_per.max() > n_items):
            raise ValueError("each user draws between 0 and n_items items")
        block_users = max(1, int(block_users))
        self.user_f, self.n_per, self.temperature, self.ratio, self.n_items = user_f, n_per, temperature, ratio, n_items
        self.tile = max(256, TILE_ELEMENTS // block_users)
        self.tiles = [(lo, np.ascontiguousarray(item_f[:, lo:lo + self.tile], dtype=np.float32))
                      for lo in range(0, n_items, self.tile)]
        self.blocks = self._blocks(block_users)
        self.base = int(rng.integers(2**63))  # each block's stream: [base, block index]
        self.offsets = np.zeros(n_users + 1, np.int64)
        np.cumsum(n_per, out=self.offsets[1:])
        self.out = np.empty(int(self.offsets[-1]), np.int32 if n_items < 2**31 else np.int64)
        self.local = threading.local()  # per-thread scratch arrays, reused from block to block

    def _blocks(self, block_users: int) -> list[np.ndarray]:
        """Users with a positive count in blocks of similar count, each holding at most NOISE_ELEMENTS gaps."""
        order = np.argsort(self.n_per, kind="stable")
        order = order[self.n_per[order] > 0]
        g_sorted = _gaps_needed(self.n_per[order], self.n_items, self.ratio)
        blocks, i = [], 0
        while i < len(order):  # n ascending: a block's widest noise set is its last user's
            size = int(np.clip(NOISE_ELEMENTS // g_sorted[min(i + block_users, len(order)) - 1], 1, block_users))
            blocks.append(order[i:i + size])
            i += size
        return blocks

    def scratch(self, name: str, shape: tuple, dtype) -> np.ndarray:
        size = int(np.prod(shape))
        buf = getattr(self.local, name, None)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = np.empty(max(size, NOISE_ELEMENTS), dtype)
            setattr(self.local, name, buf)
        return buf[:size].reshape(shape)

    def sample_block(self, b: int) -> tuple[int, int, int]:
        """Draw block ``b`` into ``out``; returns (noise-set size, candidates, users with |A| < n)."""
        users = self.blocks[b]
        brng = np.random.default_rng([self.base, b])
        n = self.n_per[users]
        xb = (np.asarray(self.user_f[users], dtype=np.float64) / self.temperature).astype(np.float32)
        p = np.minimum(1.0, self.ratio * n / self.n_items)
        pos, valid, flat_a, e = self._noise_positions(brng, n, p)
        key_a = self._noise_keys(brng, xb, pos, valid, p, e)
        count = valid.sum(axis=1)
        key_top, item_top, tau = self._noise_top(key_a, pos, count, n)
        rc, cc, key_c, n_candidates = self._candidates(brng, xb, tau, p, flat_a)
        self._merge(users, n, key_top, item_top, rc, cc, key_c)
        return int(count.sum()), n_candidates, int((count < n).sum())

    def _noise_positions(self, brng, n: np.ndarray, p: np.ndarray):
        """Step 1, the noise set A: positions of a Bernoulli(p) process per user, gaps ~ Geometric(p) =
        1 + floor(E / -log(1 - p)); (positions (B, g), valid mask, flat sorted row*(m+1)+item keys, scratch)."""
        n_items, B = self.n_items, len(n)
        full = p >= 1.0
        rate = -np.log1p(-np.where(full, 0.5, p))
        g = int(_gaps_needed(n, n_items, self.ratio).max())
        shape = (B, g)
        e = self.scratch("e", shape, np.float64)
        brng.standard_exponential(out=e)
        e /= rate[:, None]
        pos = self.scratch("pos", shape, np.int64)
        np.copyto(pos, np.floor(e, out=e), casting="unsafe")
        pos += 1
        np.cumsum(pos, axis=1, out=pos)
        pos -= 1
        pos[full] = np.arange(g)
        while (pos[:, -1] < n_items).any():  # (astronomically rare) not past the last item yet: more gaps
            more = np.floor(brng.standard_exponential(shape) / rate[:, None]).astype(np.int64) + 1
            more[full] = 1
            pos = np.hstack([pos, pos[:, -1:] + np.cumsum(more, axis=1)])
            shape = pos.shape
        valid = np.less(pos, n_items, out=self.scratch("valid", shape, bool))
        flat_a = np.minimum(pos, n_items, out=self.scratch("flat_a", shape, np.int64))
        flat_a += np.arange(B)[:, None] * (n_items + 1)
        np.putmask(pos, ~valid, 0)
        return pos, valid, flat_a.ravel(), e  # flat_a sorted: rows, then items

    def _noise_keys(self, brng, xb, pos, valid, p, e) -> np.ndarray:
        """Keys of A: logits from the same float32 tiles as the candidates' (entries grouped by tile, a radix
        sort of small ints, each tile's gathered while in cache) plus Gumbel noise above x0; -inf off A."""
        shape, tile, tiles = pos.shape, self.tile, self.tiles
        pos_flat = pos.ravel()
        buf = self.scratch("tile", (len(xb), tile), np.float32)
        tix = np.floor_divide(pos_flat, tile, casting="unsafe",
                              out=self.scratch("tix", (pos.size,), np.int16 if len(tiles) < 2**15 else np.int32))
        grp = np.argsort(tix, kind="stable")
        bounds = np.searchsorted(tix[grp], np.arange(len(tiles) + 1))
        g_row = np.floor_divide(grp, shape[1], out=self.scratch("g_row", (pos.size,), np.int64))
        g_col = np.take(pos_flat, grp, out=self.scratch("g_col", (pos.size,), np.int64))
        logit_a = self.scratch("logit_a", (pos.size,), np.float64)
        for j, (lo, t) in enumerate(tiles):
            s, e_ = bounds[j], bounds[j + 1]
            if s < e_:
                lt = buf[:, : t.shape[1]]
                np.matmul(xb, t, out=lt)
                logit_a[grp[s:e_]] = lt[g_row[s:e_], g_col[s:e_] - lo]
        key_a = logit_a.reshape(shape)
        # Gumbel above x0: U uniform on (1 - p, 1); -log U = -log1p(-p W), W uniform on (0, 1]; key = logit + G
        w = e if e.shape == shape else np.empty(shape)  # (the gaps' scratch, done with)
        brng.random(out=w)
        np.subtract(1.0, w, out=w)
        w *= -p[:, None]
        np.log1p(w, out=w)
        np.negative(w, out=w)
        key_a -= np.log(w, out=w)
        np.putmask(key_a, ~valid, -np.inf)
        return key_a

    def _noise_top(self, key_a, pos, count, n):
        """Each user's best n keys of A (decreasing; -inf past n), their items, and tau = the n-th key
        (-inf when |A| < n)."""
        m, r = int(n.max()), np.arange(len(n))
        neg = np.negative(key_a, out=self.scratch("neg", key_a.shape, np.float64))
        top = np.argpartition(neg, m - 1, axis=1)[:, :m] if m < key_a.shape[1] else np.argsort(neg, axis=1)
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(key_a, top, axis=1), axis=1, kind="stable"), axis=1)
        key_top = np.take_along_axis(key_a, top, axis=1)
        item_top = np.take_along_axis(pos, top, axis=1)
        tau = np.where(count >= n, key_top[r, n - 1], -np.inf)
        key_top[np.arange(m)[None, :] >= n[:, None]] = -np.inf
        return key_top, item_top, tau

    def _candidates(self, brng, xb, tau, p, flat_a):
        """Step 2, items outside A with logit >= tau - x0 (x0 = -log(-log(1 - p)); none when p = 1), keyed
        with Gumbel noise below x0 tile by tile; only those reaching tau are kept (rows, items, keys, count)."""
        n_items, tile = self.n_items, self.tile
        with np.errstate(divide="ignore"):
            low = -np.log1p(-p)  # -log(1 - p): inf when p = 1
            x0 = -np.log(low)
        thr = np.nextafter((tau - x0).astype(np.float32), np.float32(-np.inf))[:, None]
        # U uniform on (0, 1 - p); -log U = -log1p(-p) - log V, V uniform on (0, 1]
        rows, cols, keys_c = [], [], []
        n_candidates = 0
        buf = self.scratch("tile", (len(xb), tile), np.float32)
        above = self.scratch("above", (len(xb), tile), bool)
        for lo, t in self.tiles:
            width = t.shape[1]
            lt = buf[:, :width]
            np.matmul(xb, t, out=lt)
            f = np.flatnonzero(np.greater_equal(lt, thr, out=above[:, :width]))
            if len(f):
                n_candidates += len(f)
                row = f // width
                key = lt.ravel()[f] - np.log(low[row] - np.log(1.0 - brng.random(len(f))))
                keep = key >= tau[row]
                rows.append(row[keep])
                cols.append(lo + f[keep] % width)
                keys_c.append(key[keep])
        rc = np.concatenate(rows) if rows else np.empty(0, np.int64)
        cc = np.concatenate(cols) if cols else np.empty(0, np.int64)
        key_c = np.concatenate(keys_c) if keys_c else np.empty(0)
        if len(rc):  # an item of A found again as a candidate keeps its A noise: drop the second draw
            q = rc * (n_items + 1) + cc
            twice = flat_a[np.minimum(np.searchsorted(flat_a, q), len(flat_a) - 1)] == q
            rc, cc, key_c = rc[~twice], cc[~twice], key_c[~twice]
        return rc, cc, key_c, n_candidates

    def _merge(self, users, n, key_top, item_top, rc, cc, key_c) -> None:
        """Step 3, each user's top n of A's best n and the candidates that reach tau, into ``out``."""
        B, m = len(n), key_top.shape[1]
        per_row = np.bincount(rc, minlength=B)
        width = m + (int(per_row.max()) if len(rc) else 0)
        keys = np.full((B, width), -np.inf)
        items = np.zeros((B, width), np.int64)
        keys[:, :m], items[:, :m] = key_top, item_top
        if len(rc):
            o = np.argsort(rc, kind="stable")
            rc, cc, key_c = rc[o], cc[o], key_c[o]
            slot = m + np.arange(len(rc)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
            keys[rc, slot], items[rc, slot] = key_c, cc
        best = np.argsort(-keys, axis=1, kind="stable")[:, :m]
        chosen = np.take_along_axis(items, best, axis=1)[np.arange(m)[None, :] < n[:, None]]
        self.out[np.repeat(self.offsets[users], n) + np.arange(len(chosen)) - np.repeat(np.cumsum(n) - n, n)] = chosen


def item_texts(shared: np.ndarray, latent_sem: np.ndarray, d_shared: int) -> tuple[list[str], list[str], list[str]]:
    """Titles, ``|``-joined genres and descriptions of the items from their text-visible factors
    ``latent_sem = [shared, sem_private]``: the three strongest factors name the adjectives, the
    shared factors above 0.8 the genres (vectorised over items; the strings built once per item)."""
    n_i = len(latent_sem)
    top = np.argsort(-np.abs(latent_sem), axis=1)[:, :3]
    positive = np.take_along_axis(latent_sem, top, axis=1) > 0
    noun = ((np.abs(latent_sem[np.arange(n_i), top[:, 0]]) * 7).astype(np.int64) + np.arange(n_i)) % len(NOUNS)
    has_genre = shared[:, : min(d_shared, len(GENRES))] > 0.8
    titles, genres, descs = [], [], []
    for t, pos, k, g in zip(top.tolist(), positive.tolist(), noun.tolist(), has_genre.tolist()):
        w = [ADJ[j % len(ADJ)][0 if p else 1] for j, p in zip(t, pos)]
        titles.append(f"The {w[0].capitalize()} {NOUNS[k].capitalize()}")
        genres.append("|".join(GENRES[j] for j, on in enumerate(g) if on))
        descs.append(f"{'An' if w[0][0] in 'aeiou' else 'A'} {w[0]}, {w[1]} and {w[2]} story.")
    return titles, genres, descs


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
    #: users × items cells above which interactions are drawn by :func:`candidate_top_k` (same
    #: distribution, another random stream) rather than :func:`gumbel_top_k`; 0 forces candidates
    candidate_above: float = CANDIDATE_ABOVE
    seed: int = 0


def generate(cfg: SyntheticConfig | None = None, *, progress: bool = False, **overrides) -> Dataset:
    """Generate a synthetic :class:`Dataset`; ``planted`` holds the ground truth (factors, popularity,
    each user's count ``n_per_user``, and ``sampler``: which sampler drew the items, with its totals).
    ``progress``: a progress bar over the candidate sampler's user blocks (large catalogues)."""
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

    sampler: dict = {"method": "gumbel_top_k"}
    if n_u * n_i > cfg.candidate_above:
        # the same utility as a product of (n_u, d + 1) user and (d + 1, n_i) item factors: popularity is the last row
        user_f = np.hstack([a, cfg.w_sem * e, cfg.w_col * c, np.ones((n_u, 1))])
        sampler = {"method": "candidate_top_k", "ratio": CANDIDATE_RATIO}
        items = candidate_top_k(rng, user_f, np.vstack([shared_t, sem_t, col_t, pop[None, :]]), n_per, cfg.temperature,
                                ratio=CANDIDATE_RATIO, stats=sampler, progress=progress)
        del user_f
    else:
        items = gumbel_top_k(rng, utility, n_per, n_i, cfg.temperature)
    items = items.astype(np.int32, copy=False)
    users = np.repeat(np.arange(n_u, dtype=np.int32), n_per)
    # timestamps: a global clock with items "released" over time, for temporal splits
    release = rng.uniform(0, 1e6, n_i)
    ts = rng.exponential(2e5, len(items))
    for lo in range(0, len(ts), 1 << 22):  # ts = release[items] + noise (the same sums), without a full-size gather
        ts[lo:lo + (1 << 22)] += release[items[lo:lo + (1 << 22)]]

    # semantic vectors: random linear image of [shared, sem_private] plus noise
    latent_sem = np.hstack([shared, sem_p])
    proj = np.linalg.qr(rng.standard_normal((cfg.sem_dim, latent_sem.shape[1])))[0].T
    sem = latent_sem @ proj + cfg.sem_noise * rng.standard_normal((n_i, cfg.sem_dim))

    titles, genres, descs = item_texts(shared, latent_sem, cfg.d_shared)
    ids = np.array([f"i{i}" for i in range(n_i)])
    item_df = make_items(ids, titles, np.rint(1950 + release / 1e6 * 70).astype(int), genres, descs)
    # categorical ids: one string per user and per item, an int32 code per interaction
    user_names = pd.Index([f"u{u}" for u in range(n_u)], dtype=object)
    inter = make_interactions(pd.Categorical.from_codes(users, categories=user_names),
                              pd.Categorical.from_codes(items, categories=pd.Index(ids, dtype=object)),
                              np.ones(len(items)), ts, copy=False)
    del users, items
    planted = {
        "config": asdict(cfg),
        "d_shared": cfg.d_shared,
        "shared": shared,
        "sem_private": sem_p,
        "col_private": col_p,
        "popularity": pop,
        "n_per_user": n_per,
        "sampler": sampler,
    }
    return Dataset(
        name="synthetic",
        interactions=inter,
        items=item_df,
        source=f"synthetic generator (seed={cfg.seed}, d_shared={cfg.d_shared}, d_sem={cfg.d_sem}, d_col={cfg.d_col}"
               + (", candidate sampler)" if sampler["method"] == "candidate_top_k" else ")"),
        vectors={"semantic": (ids, sem.astype(np.float32))},
        planted=planted,
    )
