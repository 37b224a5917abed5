"""The interaction table at scale: categorical ids, and validate / preprocess / index / checksum on codes.

Each function is checked against the string-based implementation it replaced (kept here as the
reference, verbatim in what it computes), on plain string tables and on categorical ones, with the
cases that decide the result: duplicate pairs, tied and missing timestamps, numeric ids (sorted
numerically, "01" and "1" tying), rating thresholds, k-core, unused categories, unknown items.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.data import (
    INTERACTION_COLUMNS,
    Dataset,
    _id_order,
    _stable_order,
    id_codes,
    id_column,
    index,
    make_interactions,
    make_items,
    preprocess,
    validate,
)
from analysis.errors import DataError

# --- the string-based reference (the implementation before categorical ids) -----------------------------


def ref_preprocess(inter: pd.DataFrame, rating_threshold=None, kcore: int = 0) -> pd.DataFrame:
    if rating_threshold is not None:
        inter = inter[inter["rating"] >= rating_threshold]
    inter = inter.sort_values("timestamp", kind="stable").drop_duplicates(["user_id", "item_id"], keep="last")
    if kcore and kcore > 1:
        while True:
            uc = inter["user_id"].map(inter["user_id"].value_counts())
            ic = inter["item_id"].map(inter["item_id"].value_counts())
            keep = (uc >= kcore) & (ic >= kcore)
            if keep.all():
                break
            inter = inter[keep]
    return inter.reset_index(drop=True)


def ref_index(inter: pd.DataFrame, item_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    uids = inter["user_id"].unique()
    uids = uids[_id_order(uids)]
    u_map = pd.Series(np.arange(len(uids), dtype=np.int32), index=uids)
    i_ids = np.asarray(item_ids, dtype=object)
    i_map = pd.Series(np.arange(len(i_ids), dtype=np.int32), index=i_ids)
    users = u_map.loc[inter["user_id"].to_numpy()].to_numpy(np.int32)
    items = i_map.loc[inter["item_id"].to_numpy()].to_numpy(np.int32)
    return np.asarray(uids, dtype=object), users, items


def plain(inter: pd.DataFrame) -> pd.DataFrame:
    """The same table with the id columns as plain (non-categorical) strings."""
    return inter.assign(user_id=inter["user_id"].astype(object).astype(str),
                        item_id=inter["item_id"].astype(object).astype(str))


def messy_table(seed: int, n: int = 3000, numeric: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interactions with duplicate pairs, tied and missing timestamps, ratings; numeric or text ids."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 120, n)
    items = rng.integers(0, 90, n)
    if numeric:
        u_ids = np.array([str(u) for u in range(120)], dtype=object)
        u_ids[7] = "0007"  # numerically 7 too: ties with no other id, sorts among the numbers
        i_ids = np.array([str(1000 - i) for i in range(90)], dtype=object)
    else:
        u_ids = np.array([f"user-{u:03d}{'x' if u % 3 else ''}" for u in range(120)], dtype=object)
        i_ids = np.array([f"it{i}" for i in range(90)], dtype=object)
    ts = rng.integers(0, 400, n).astype(float)  # many ties
    ts[rng.random(n) < 0.05] = np.nan
    ratings = rng.integers(1, 6, n).astype(float)
    inter = make_interactions(u_ids[users], i_ids[items], ratings, ts)
    return inter, make_items(i_ids[::-1])  # the item table in its own order


# --- make_interactions ----------------------------------------------------------------------------------


def test_ids_are_categorical_strings_that_read_and_hash_as_strings():
    inter = make_interactions([1, 2, 1, "a"], np.array(["x", "y", "x", "z"], dtype=object), [5, 3, 4, 1], [3, 2, 1, 0])
    assert isinstance(inter["user_id"].dtype, pd.CategoricalDtype) and isinstance(inter["item_id"].dtype, pd.CategoricalDtype)
    assert inter["user_id"].tolist() == ["1", "2", "1", "a"] and inter["item_id"].tolist() == ["x", "y", "x", "z"]
    assert inter["user_id"].cat.categories.tolist() == ["1", "2", "a"]  # first appearance
    assert inter.values.tolist()[0] == ["1", "x", 5.0, 3.0]
    assert (inter["user_id"] == "1").tolist() == [True, False, True, False]
    flat = plain(inter)
    for a, b in [(inter, flat), (inter, flat.astype({"user_id": object, "item_id": object}))]:
        np.testing.assert_array_equal(pd.util.hash_pandas_object(a, index=False), pd.util.hash_pandas_object(b, index=False))
    items = make_items(["x", "y", "z"])
    assert Dataset("d", inter, items).checksum() == Dataset("d", flat, items).checksum()


def test_a_categorical_keeps_its_codes_and_missing_ids_stay_missing():
    cats = pd.Index([f"u{i}" for i in range(5)], dtype=object)
    codes = np.array([4, 0, 0, 3], dtype=np.int32)
    col = id_column(pd.Categorical.from_codes(codes, categories=cats))
    np.testing.assert_array_equal(col.codes, codes)  # the codes as they are (no per-row work)
    cat = pd.Categorical.from_codes(codes, categories=cats)
    assert np.shares_memory(id_column(cat, copy=False).codes, cat.codes)  # handed over
    assert not np.shares_memory(id_column(cat).codes, cat.codes)
    assert col.categories.tolist() == cats.tolist()
    ints = id_column(pd.Categorical([10, 20, 10]))  # non-string categories become strings
    assert list(ints) == ["10", "20", "10"]
    clash = id_column(pd.Categorical([1, "1", 2], categories=[1, "1", 2]))  # 1 and "1": one id as strings
    assert list(clash) == ["1", "1", "2"] and clash.categories.tolist() == ["1", "2"]
    missing = id_column(pd.Series(["a", None, "b"]))
    assert missing.codes.tolist() == [0, -1, 1]
    codes, cats = id_codes(pd.Series(["b", "a", "b"], dtype=object))
    assert codes.tolist() == [0, 1, 0] and cats.tolist() == ["b", "a"]


def test_the_table_copies_its_inputs_unless_handed_over():
    ts, ratings = np.array([3.0, 1.0]), np.array([5.0, 4.0])
    kept = make_interactions(["a", "b"], ["x", "y"], ratings, ts)
    ts[0] = 99.0
    assert kept["timestamp"].tolist() == [3.0, 1.0]
    handed = make_interactions(["a", "b"], ["x", "y"], ratings, ts, copy=False)
    assert np.shares_memory(handed["timestamp"].to_numpy(), ts) and np.shares_memory(handed["rating"].to_numpy(), ratings)


def test_stable_order_is_numpys_stable_argsort():
    rng = np.random.default_rng(0)
    for values in (rng.integers(0, 5, 2000).astype(float), rng.random(500), np.full(10, np.nan), np.array([]),
                   np.where(rng.random(3000) < 0.3, np.nan, rng.integers(0, 30, 3000).astype(float))):
        np.testing.assert_array_equal(_stable_order(values), np.argsort(values, kind="stable"))


# --- validate / preprocess / index against the reference --------------------------------------------------


@pytest.mark.parametrize("numeric", [True, False])
@pytest.mark.parametrize("threshold, kcore", [(None, 0), (3.0, 0), (None, 3), (2.0, 4)])
def test_preprocess_and_index_equal_the_string_reference(numeric, threshold, kcore):
    inter, items = messy_table(seed=kcore + int(numeric), numeric=numeric)
    expected = ref_preprocess(plain(inter), threshold, kcore)
    for table in (inter, plain(inter)):  # categorical and plain ids
        ds = Dataset("t", table, items)
        validate(ds)
        out = preprocess(ds, rating_threshold=threshold, kcore=kcore)
        got = plain(out.interactions)
        pd.testing.assert_frame_equal(got[INTERACTION_COLUMNS], expected[INTERACTION_COLUMNS], check_dtype=False)
        if kcore > 1:
            assert out.items["item_id"].tolist() == [i for i in items["item_id"] if i in set(expected["item_id"])]
        ix = index(out)
        uids, users, its = ref_index(expected, out.items["item_id"])
        assert ix.user_ids.tolist() == uids.tolist()
        np.testing.assert_array_equal(ix.users, users)
        np.testing.assert_array_equal(ix.items, its)
        assert ix.users.dtype == np.int32 and ix.items.dtype == np.int32
        np.testing.assert_array_equal(ix.timestamps, expected["timestamp"].to_numpy(float))
        assert out.checksum() == Dataset("t", expected, out.items).checksum()
    if numeric:
        assert ix.user_ids[:9].tolist() == ["0", "1", "2", "3", "4", "5", "6", "0007", "8"]


def test_numerically_equal_ids_keep_their_order_of_first_appearance():
    # "01" and "1" are different users with the same number: the stable sort keeps first appearance
    inter = make_interactions(["5", "1", "01", "1", "2"], ["a", "a", "b", "b", "a"], None, [0, 1, 2, 3, 4])
    ds = preprocess(Dataset("t", inter, make_items(["a", "b"])))
    assert index(ds).user_ids.tolist() == ["1", "01", "2", "5"] == ref_index(plain(ds.interactions), ["a", "b"])[0].tolist()


def test_unused_categories_are_not_users():
    inter = make_interactions(["u1", "u2", "u3"], ["a", "b", "a"], [5.0, 1.0, 4.0], [0, 1, 2])
    ds = preprocess(Dataset("t", inter, make_items(["a", "b"])), rating_threshold=3)
    assert ds.interactions["user_id"].cat.categories.tolist() == ["u1", "u2", "u3"]  # u2 unused but listed
    ix = index(ds)
    assert ix.user_ids.tolist() == ["u1", "u3"] and ix.users.tolist() == [0, 1]
    assert ds.interactions["user_id"].nunique() == 2


def test_unknown_items_are_named_as_before():
    inter = make_interactions(["u1", "u2", "u3", "u1"], ["a", "zz", "yy", "zz"], None, None)
    for table in (inter, plain(inter)):
        with pytest.raises(DataError, match=r"3 interaction\(s\) refer to item id\(s\) missing from the item table, "
                                            r"e.g. \['zz', 'yy'\]"):
            validate(Dataset("t", table, make_items(["a", "b"])))
        with pytest.raises(DataError, match="missing from the item table"):
            index(Dataset("t", table, make_items(["a", "b"])))
    ok = make_interactions(["u1"], ["a"], None, None)
    ok["item_id"] = ok["item_id"].cat.add_categories(["never-used"])  # an unknown but unused category is fine
    validate(Dataset("t", ok, make_items(["a"])))


def test_a_missing_user_id_is_refused_by_index():
    inter = make_interactions(pd.Series(["u1", None]), ["a", "a"], None, [0, 1])
    with pytest.raises(DataError, match="no user id"):
        index(Dataset("t", inter, make_items(["a"])))


# --- memory at scale ----------------------------------------------------------------------------------------


def test_load_steps_hold_no_per_row_strings():
    # 2M interactions of 200k users and 20k items: validate, preprocess, index and checksum allocate arrays of
    # codes, never a string per row: measured 77 bytes a row traced at peak (the table's sorted copy, the sort
    # keys, the index, the row hashes), against 163 with string ids. Bounded at 110 (a resource bound).
    script = textwrap.dedent(
        """
        import json, tracemalloc
        import numpy as np, pandas as pd
        from analysis.data import Dataset, make_interactions, make_items, validate, preprocess, index
        rng = np.random.default_rng(0)
        n, n_u, n_i = 2_000_000, 200_000, 20_000
        names = pd.Index([f"u{u}" for u in range(n_u)], dtype=object)
        users = pd.Categorical.from_codes(rng.integers(0, n_u, n).astype(np.int32), categories=names)
        ids = pd.Index([f"i{i}" for i in range(n_i)], dtype=object)
        items = pd.Categorical.from_codes(rng.integers(0, n_i, n).astype(np.int32), categories=ids)
        ds = Dataset("s", make_interactions(users, items, np.ones(n), rng.random(n) * 1e6), make_items(ids))
        tracemalloc.start()
        validate(ds)
        p = preprocess(ds)
        ix = index(p)
        p.checksum()
        print(json.dumps({"rows": len(p.interactions), "users": ix.n_users, "traced": tracemalloc.get_traced_memory()[1]}))
        """
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=600, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["rows"] > 1_900_000 and got["users"] > 190_000
    assert got["traced"] < 110 * 2_000_000, got
