"""Item texts (exact strings) and the real MiniLM encoder with its content-hash cache."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.data import make_items
from analysis.errors import CacheWarning, ConfigError, DataError
from analysis.models.encoder import encode_texts, item_texts


def toy_items() -> pd.DataFrame:
    return make_items(
        ["1", "2", "3", "4"],
        ["Toy Story", "Heat", "", "  Alien  "],
        [1995, None, 2001, None],
        ["Animation|Children's|Comedy", "", "Drama", None],
        ["", "A Los Angeles crime saga.", None, ""],
    )


def test_default_template_exact_strings_with_missing_fields():
    assert item_texts(toy_items()) == [
        "Toy Story (1995). Genres: Animation, Children's, Comedy.",
        "Heat. A Los Angeles crime saga.",  # no year, no genres
        "3 (2001). Genres: Drama.",  # empty title falls back to the item id
        "Alien.",  # nothing but a (stripped) title
    ]


def test_custom_templates_and_errors():
    df = toy_items()
    assert item_texts(df, template="{title} | {genres} | {year}")[:2] == [
        "Toy Story | Animation, Children's, Comedy | 1995",
        "Heat | |",
    ]
    assert item_texts(df, template=lambda f: f["item_id"] + ":" + f["year"]) == ["1:1995", "2:", "3:2001", "4:"]
    with pytest.raises(ConfigError, match="plot"):
        item_texts(df, template="{title} {plot}")
    with pytest.raises(DataError, match="title"):
        item_texts(df.drop(columns=["title"]))
    # a table without the optional columns still works
    assert item_texts(df[["item_id", "title"]])[0] == "Toy Story."


@pytest.mark.slow
def test_minilm_vectors_semantics_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(tmp_path))
    texts = [
        "A cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "Quarterly tax filing deadlines for corporations.",
    ]
    first = encode_texts(texts, progress=False)
    assert not first.cache_hit
    v = first.vectors
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)  # MiniLM normalises
    sim = v @ v.T
    assert sim[0, 1] > 0.5 > sim[0, 2] + 0.3 and sim[0, 1] > sim[1, 2] + 0.3
    vecs, hit = encode_texts(texts, progress=False)
    assert hit and np.array_equal(vecs, v)
    cached = list((tmp_path / "vectors").glob("*.npy"))
    assert len(cached) == 1 and np.array_equal(np.load(cached[0], allow_pickle=False), v)
    # different texts are a different key; encoding is per text (order of the batch irrelevant)
    other = encode_texts(texts[::-1], progress=False)
    assert not other.cache_hit
    np.testing.assert_allclose(other.vectors, v[::-1], atol=1e-5)
    # a damaged cache entry is reported (naming the file) and rebuilt
    cached[0].write_bytes(b"not an npy file")
    with pytest.warns(CacheWarning, match=cached[0].name):
        again = encode_texts(texts, progress=False)
    assert not again.cache_hit and np.array_equal(again.vectors, v)
    assert np.array_equal(np.load(cached[0], allow_pickle=False), v)


def test_unknown_encoder_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="no-such-encoder"):
        encode_texts(["x"], model=str(tmp_path / "no-such-encoder"), progress=False)
