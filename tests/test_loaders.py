"""Loaders for user data: every format parsed exactly, its quirks, and its error messages.

All fixtures are written to ``tmp_path`` here (no data is committed). Expected values
are typed out by hand from the fixture text.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.data import preprocess
from analysis.errors import ConfigError, DataError, VectorError
from analysis.loaders import (
    detect_format,
    load_amazon,
    load_dataset,
    load_movielens,
    load_recbole,
    load_table,
    load_vectors,
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode(encoding)
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def items_by_id(ds) -> dict:
    return {r["item_id"]: r for r in ds.items.to_dict("records")}


def year(ds, item_id):
    v = ds.items.set_index("item_id").loc[item_id, "year"]
    return None if pd.isna(v) else int(v)


# ----------------------------------------------------------------------------- RecBole

REC_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t242\t3\t881250949\n"
    "186\t302\t3\t891717742\n"
    "22\t377\t1\t878887116\n"
    "196\t267\t4\t881250950\n"
    "22\t1412\t5\t878887117\n"
)
REC_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "242\tKolya\t1996\tComedy\n"
    "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n"
    "377\tHeavyweights\t1994\tChildren's Comedy\n"
    "267\tunkonwn\tunkonwn\tunknown\n"
    "1412\tLand Before Time III: The Time of the Great Giving (1995)\tV\tAnimation Children's\n"
    "999\tCold Movie (2001)\t\tDrama\n"
)


@pytest.fixture
def recbole_dir(tmp_path):
    write(tmp_path / "recbole" / "ml-100k.inter", REC_INTER)
    write(tmp_path / "recbole" / "ml-100k.item", REC_ITEM)
    return tmp_path / "recbole"


def test_recbole_values_and_ml100k_quirks(recbole_dir):
    ds = load_recbole(recbole_dir / "ml-100k.inter", recbole_dir / "ml-100k.item")
    assert ds.name == "ml-100k"
    inter = ds.interactions
    assert inter["user_id"].tolist() == ["196", "186", "22", "196", "22"]
    assert inter["item_id"].tolist() == ["242", "302", "377", "267", "1412"]
    assert inter["rating"].tolist() == [3.0, 3.0, 1.0, 4.0, 5.0]
    assert inter["timestamp"].tolist() == [881250949.0, 891717742.0, 878887116.0, 881250950.0, 878887117.0]
    it = items_by_id(ds)
    assert ds.items["item_id"].tolist() == ["242", "302", "377", "267", "1412", "999"]  # file order, cold item kept
    assert it["302"]["title"] == "L.A. Confidential" and year(ds, "302") == 1997
    assert it["302"]["genres"] == "Crime|Film-Noir|Mystery|Thriller"
    assert it["377"]["genres"] == "Children's|Comedy"
    # item 267: title and year "unkonwn", genre "unknown"
    assert it["267"]["title"] == "unknown" and year(ds, "267") is None and it["267"]["genres"] == ""
    # item 1412: year "V", real year at the end of the title
    assert it["1412"]["title"] == "Land Before Time III: The Time of the Great Giving"
    assert year(ds, "1412") == 1995
    # empty year field: the title's year is used and stripped
    assert it["999"]["title"] == "Cold Movie" and year(ds, "999") == 2001
    assert "ml-100k.inter" in ds.source and "ml-100k.item" in ds.source


def test_recbole_year_field_wins_but_title_year_is_stripped(tmp_path):
    inter = write(tmp_path / "d.inter", "user_id:token\titem_id:token\n1\ta\n")
    item = write(
        tmp_path / "d.item",
        "item_id:token\ttitle:token_seq\tyear:token\tgenre:token_seq\tdescription:token_seq\n"
        "a\tHamlet (1948)\t1990\tDrama|War\tA prince hesitates.\n",
    )
    ds = load_recbole(inter, item)
    assert ds.items.loc[0, "title"] == "Hamlet" and year(ds, "a") == 1990
    assert ds.items.loc[0, "genres"] == "Drama|War"
    assert ds.items.loc[0, "description"] == "A prince hesitates."
    assert ds.interactions["rating"].isna().all() and ds.interactions["timestamp"].isna().all()


def test_recbole_items_missing_from_item_file_get_empty_metadata(tmp_path):
    inter = write(tmp_path / "d.inter", "user_id:token\titem_id:token\n1\ta\n1\tb\n")
    item = write(tmp_path / "d.item", "item_id:token\ttitle:token_seq\na\tAlpha\n")
    ds = load_recbole(inter, item)
    assert items_by_id(ds)["b"]["title"] == "" and ds.items["item_id"].tolist() == ["a", "b"]


def test_recbole_errors_name_file_and_line(tmp_path):
    bad_rating = write(tmp_path / "r.inter", REC_INTER.replace("186\t302\t3\t", "186\t302\tthree\t"))
    with pytest.raises(DataError, match=r"r\.inter, line 3: rating 'three' is not a number"):
        load_recbole(bad_rating)
    extra_field = write(tmp_path / "f.inter", REC_INTER.replace("22\t377\t1\t878887116", "22\t377\t1\t878887116\tx"))
    with pytest.raises(DataError, match=r"f\.inter, line 4: expected 4 tab-separated fields, found 5"):
        load_recbole(extra_field)
    short = write(tmp_path / "s.inter", REC_INTER.replace("196\t267\t4\t881250950", "196\t267\t4"))
    with pytest.raises(DataError, match=r"s\.inter, line 5: expected 4 tab-separated fields, found 3"):
        load_recbole(short)
    no_type = write(tmp_path / "h.inter", "user_id\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match=r"h\.inter, line 1: header field 'user_id'"):
        load_recbole(no_type)
    no_user = write(tmp_path / "u.inter", "person:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match=r"u\.inter: needs a user field"):
        load_recbole(no_user)
    # an item file keyed differently from the interactions
    inter = write(tmp_path / "k.inter", "user_id:token\titem_id:token\n1\t2\n")
    item = write(tmp_path / "k.item", "item_id:token\ttitle:token_seq\nX\tx\n")
    with pytest.raises(DataError, match=r"k\.item: none of its item ids occur"):
        load_recbole(inter, item)
    dup = write(tmp_path / "dd.item", "item_id:token\ttitle:token_seq\n2\tx\n2\ty\n")
    with pytest.raises(DataError, match=r"dd\.item: duplicate item id\(s\) \['2'\]"):
        load_recbole(inter, dup)


def test_recbole_crlf_bom_and_gz_read_the_same(tmp_path, recbole_dir):
    plain = load_recbole(recbole_dir / "ml-100k.inter", recbole_dir / "ml-100k.item")
    inter = write(tmp_path / "w.inter.gz", "\ufeff" + REC_INTER.replace("\n", "\r\n"))
    item = write(tmp_path / "w.item", "\ufeff" + REC_ITEM.replace("\n", "\r\n"))
    other = load_recbole(inter, item, name="ml-100k")
    assert other.checksum() == plain.checksum()
    pd.testing.assert_frame_equal(other.items, plain.items)


def test_same_data_in_two_formats_gives_the_same_checksum(tmp_path, recbole_dir):
    rec = load_recbole(recbole_dir / "ml-100k.inter", recbole_dir / "ml-100k.item")
    rows = [line.split("\t") for line in REC_INTER.splitlines()[1:]]
    inter = write(tmp_path / "r.csv", "user_id,item_id,rating,timestamp\n" + "".join(",".join(r) + "\n" for r in rows))
    items = tmp_path / "items.parquet"
    pd.DataFrame(
        {
            "item_id": ["242", "302", "377", "267", "1412", "999"],
            "title": ["Kolya (1996)", "L.A. Confidential (1997)", "Heavyweights (1994)", "unkonwn",
                      "Land Before Time III: The Time of the Great Giving (1995)", "Cold Movie (2001)"],
            "genres": [["Comedy"], ["Crime", "Film-Noir", "Mystery", "Thriller"], ["Children's", "Comedy"],
                       ["unknown"], ["Animation", "Children's"], ["Drama"]],
        }
    ).to_parquet(items)  # fmt: skip
    tab = load_table(inter, items)
    assert tab.checksum() == rec.checksum()


def test_blank_lines_do_not_shift_line_numbers(tmp_path):
    text = "user_id:token\titem_id:token\trating:float\n1\ta\t1\n\n2\tb\tx\n"
    path = write(tmp_path / "b.inter", text)
    with pytest.raises(DataError, match=r"b\.inter, line 4: rating 'x'"):
        load_recbole(path)


# ----------------------------------------------------------------------------- MovieLens


def _u_item_line(item_id, title, date, genres):
    from analysis.loaders.movielens import ML100K_GENRES

    flags = "|".join("1" if g in genres else "0" for g in ML100K_GENRES)
    return f"{item_id}|{title}|{date}||http://us.imdb.com/M/x|{flags}\n"


@pytest.fixture
def ml100k_dir(tmp_path):
    d = tmp_path / "ml-100k"
    write(d / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t267\t1\t878887116\n244\t1001\t2\t880606923\n")
    write(
        d / "u.item",
        _u_item_line(242, "Kolya (1996)", "24-Jan-1997", {"Comedy"})
        + _u_item_line(302, "L.A. Confidential (1997)", "01-Jan-1997", {"Crime", "Film-Noir", "Mystery", "Thriller"})
        + _u_item_line(267, "unknown", "", {"unknown"})
        + _u_item_line(1001, "Café au lait", "01-Jan-1994", {"Comedy"}),
        encoding="latin-1",
    )
    return d


def test_movielens_100k(ml100k_dir):
    ds = load_movielens(ml100k_dir)
    assert ds.name == "ml-100k" and "ml-100k format" in ds.source
    assert ds.interactions["user_id"].tolist() == ["196", "186", "22", "244"]
    assert ds.interactions["item_id"].tolist() == ["242", "302", "267", "1001"]
    assert ds.interactions["rating"].tolist() == [3.0, 3.0, 1.0, 2.0]
    assert ds.interactions["timestamp"].tolist() == [881250949.0, 891717742.0, 878887116.0, 880606923.0]
    it = items_by_id(ds)
    assert it["242"]["title"] == "Kolya" and year(ds, "242") == 1996  # title year, not release date 1997
    assert it["302"]["genres"] == "Crime|Film-Noir|Mystery|Thriller"  # fixed ML-100K genre order
    assert it["267"]["title"] == "unknown" and it["267"]["genres"] == "" and year(ds, "267") is None
    assert it["1001"]["title"] == "Café au lait" and year(ds, "1001") == 1994  # latin-1; year from the date


def test_movielens_100k_bad_flag_and_field_count(ml100k_dir):
    text = (ml100k_dir / "u.item").read_bytes().decode("latin-1")
    lines = text.splitlines(keepends=True)
    lines[1] = lines[1].rstrip("\n")[:-1] + "x\n"  # last flag (Western) of item 302
    write(ml100k_dir / "u.item", "".join(lines), encoding="latin-1")
    with pytest.raises(DataError, match=r"u\.item, line 2: genre flag 'Western' is 'x', expected 0 or 1"):
        load_movielens(ml100k_dir)
    write(ml100k_dir / "u.data", "196\t242\t3\t881250949\n186\t302\t3\n")
    with pytest.raises(DataError, match=r"u\.data, line 2: expected 4 tab-separated fields, found 3"):
        load_movielens(ml100k_dir / "u.data")


def test_movielens_1m(tmp_path):
    d = tmp_path / "ml-1m"
    write(d / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    write(
        d / "movies.dat",
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "3095::Misérables, Les (1995)::Drama|Musical\n",
        encoding="latin-1",
    )
    ds = load_movielens(d)
    assert ds.interactions[["user_id", "item_id"]].values.tolist() == [["1", "1193"], ["1", "661"], ["2", "1193"]]
    assert ds.interactions["rating"].tolist() == [5.0, 3.0, 4.0]
    assert ds.interactions["timestamp"].tolist() == [978300760.0, 978302109.0, 978298413.0]
    it = items_by_id(ds)
    assert it["661"]["title"] == "James and the Giant Peach" and year(ds, "661") == 1996
    assert it["661"]["genres"] == "Animation|Children's|Musical"
    assert it["3095"]["title"] == "Misérables, Les" and year(ds, "3095") == 1995  # unrated: stays in the catalogue
    write(d / "ratings.dat", "1::1193::5::978300760\n1::661::3::97830x109\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 2: timestamp '97830x109' is not a number"):
        load_movielens(d)
    write(d / "ratings.dat", "1::1193::5::978300760::9\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 1: expected 4 '::'-separated fields, found 5"):
        load_movielens(d)


MOVIES_CSV = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    "200,Babylon 5,(no genres listed)\n"
    "201,Fawlty Towers (1975-1979),Comedy\n"
)


def test_movielens_latest(tmp_path):
    d = tmp_path / "ml-latest-small"
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,11,3.5,964981247\n7,200,0.5,1106635946\n")
    write(d / "movies.csv", MOVIES_CSV)
    ds = load_movielens(d)
    assert ds.interactions["rating"].tolist() == [4.0, 3.5, 0.5]
    assert ds.interactions["user_id"].tolist() == ["1", "1", "7"]
    it = items_by_id(ds)
    assert it["1"]["genres"] == "Adventure|Animation|Children|Comedy|Fantasy"
    assert it["11"]["title"] == "American President, The" and year(ds, "11") == 1995
    assert it["200"]["title"] == "Babylon 5" and year(ds, "200") is None and it["200"]["genres"] == ""
    assert it["201"]["title"] == "Fawlty Towers" and year(ds, "201") == 1975
    # a bad rating after a quoted multi-line-free file: exact line
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,11,,964981247\n")
    with pytest.raises(DataError, match=r"ratings\.csv, line 3: rating '' is not a number"):
        load_movielens(d)


def test_movielens_not_found(tmp_path):
    write(tmp_path / "x" / "foo.txt", "1\n")
    with pytest.raises(DataError, match=r"no MovieLens ratings file found; expected one of u\.data"):
        load_movielens(tmp_path / "x")


# ----------------------------------------------------------------------------- Amazon

AMZ18_REVIEWS = [
    {"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1400000000, "reviewText": "great"},
    {"reviewerID": "A2", "asin": "B02", "overall": 3.0, "unixReviewTime": 1400000100},
    {"reviewerID": "A1", "asin": "B03", "overall": 4.0, "unixReviewTime": 1400000200},
]
AMZ18_META = [
    {"asin": "B02", "title": "Blue Pen", "description": ["Writes blue.", "Fine tip."], "category": ["Office", "Pens"], "brand": "Inko"},
    {"asin": "B01", "title": "Red Pen", "description": "Writes red.", "category": ["Office", "Pens", "<span>junk</span>"]},
    {"asin": "B02", "title": "Duplicate Blue Pen"},
    {"asin": "B99", "title": "Never Reviewed"},
]


def _jsonl(records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_amazon_2018_gz(tmp_path):
    reviews = write(tmp_path / "Office_Products_5.json.gz", _jsonl(AMZ18_REVIEWS))
    meta = write(tmp_path / "meta_Office_Products.json.gz", _jsonl(AMZ18_META))
    ds = load_amazon(reviews, meta)
    assert ds.name == "Office_Products_5" and "Amazon 2018" in ds.source
    assert ds.interactions["user_id"].tolist() == ["A1", "A2", "A1"]
    assert ds.interactions["item_id"].tolist() == ["B01", "B02", "B03"]
    assert ds.interactions["rating"].tolist() == [5.0, 3.0, 4.0]
    assert ds.interactions["timestamp"].tolist() == [1400000000.0, 1400000100.0, 1400000200.0]
    assert ds.items["item_id"].tolist() == ["B01", "B02", "B03"]  # B99 (no reviews) dropped
    it = items_by_id(ds)
    assert it["B01"]["title"] == "Red Pen" and it["B01"]["genres"] == "Office|Pens"
    assert it["B01"]["description"] == "Writes red."
    assert it["B02"]["title"] == "Blue Pen"  # first record wins over the duplicate
    assert it["B02"]["description"] == "Brand: Inko. Writes blue. Fine tip."
    assert it["B03"]["title"] == "" and it["B03"]["genres"] == ""  # reviewed, no metadata
    assert ds.items["year"].isna().all()


def test_amazon_2023(tmp_path):
    reviews = write(
        tmp_path / "All_Beauty.jsonl",
        _jsonl(
            [
                {"user_id": "U1", "asin": "C1", "parent_asin": "P1", "rating": 5.0, "timestamp": 1588687728923},
                {"user_id": "U2", "asin": "C2", "parent_asin": "P1", "rating": 4.0, "timestamp": 1588687729000},
                {"user_id": "U2", "asin": "C3", "rating": 1.0, "timestamp": 1600000000500},  # no parent: asin
            ]
        ),
    )
    meta = write(
        tmp_path / "meta_All_Beauty.jsonl",
        _jsonl(
            [
                {"parent_asin": "P1", "title": "Soap", "description": ["Mild.", "Vegan."], "categories": [], "main_category": "All Beauty", "store": "Acme"},
                {"parent_asin": "C3", "title": "Brush", "description": [], "categories": ["Beauty", "Tools"], "main_category": "All Beauty"},
            ]
        ),
    )
    ds = load_amazon(reviews, meta)
    assert "Amazon 2023" in ds.source
    assert ds.interactions["item_id"].tolist() == ["P1", "P1", "C3"]
    assert ds.interactions["timestamp"].tolist() == [1588687728.923, 1588687729.0, 1600000000.5]
    it = items_by_id(ds)
    assert it["P1"]["title"] == "Soap" and it["P1"]["genres"] == "All Beauty"
    assert it["P1"]["description"] == "Brand: Acme. Mild. Vegan."
    assert it["C3"]["genres"] == "Beauty|Tools" and it["C3"]["description"] == ""


def test_amazon_errors(tmp_path):
    lines = _jsonl(AMZ18_REVIEWS).splitlines()
    lines.insert(2, '{"reviewerID": "A3", "asin": ')
    bad = write(tmp_path / "r.json.gz", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"r\.json\.gz, line 3: malformed JSON"):
        load_amazon(bad)
    py = write(tmp_path / "meta_2014.json", "{'asin': 'B01', 'title': 'x'}\n")
    with pytest.raises(DataError, match=r"meta_2014\.json, line 1: malformed JSON .*Python literal"):
        load_amazon(write(tmp_path / "ok14.json", _jsonl(AMZ18_REVIEWS)), py)
    missing = write(tmp_path / "m.json", _jsonl(AMZ18_REVIEWS[:1] + [{"reviewerID": "A9", "overall": 1.0}]))
    with pytest.raises(DataError, match=r"m\.json, line 2: missing asin"):
        load_amazon(missing)
    other = write(tmp_path / "o.json", _jsonl([{"foo": 1}]))
    with pytest.raises(DataError, match=r"o\.json, line 1: not an Amazon review record"):
        load_amazon(other)
    reviews = write(tmp_path / "ok.json", _jsonl(AMZ18_REVIEWS))
    meta = write(tmp_path / "meta_other.json", _jsonl([{"asin": "ZZZ", "title": "x"}]))
    with pytest.raises(DataError, match=r"meta_other\.json: none of its items"):
        load_amazon(reviews, meta)


# ----------------------------------------------------------------------------- generic tables


def test_table_csv_with_column_mapping(tmp_path):
    inter = write(tmp_path / "events.csv", "uid,movie,stars,ts,extra\nu1,m1,4,100,x\nu2,m2,2.5,200,y\nu1,m2,5,300,z\n")
    items = write(
        tmp_path / "catalog.tsv",
        "movie\tname\tgenre_list\tblurb\tyr\n"
        "m1\tAlien (1979)\tHorror|Sci-Fi\tIn space.\t\n"
        "m2\tHeat\tCrime\tA heist.\t1995\n",
    )
    ds = load_table(
        inter,
        items,
        columns={"user_id": "uid", "item_id": "movie", "rating": "stars", "timestamp": "ts"},
        item_columns={"item_id": "movie", "title": "name", "genres": "genre_list", "description": "blurb", "year": "yr"},
    )
    assert ds.interactions.values.tolist() == [["u1", "m1", 4.0, 100.0], ["u2", "m2", 2.5, 200.0], ["u1", "m2", 5.0, 300.0]]
    it = items_by_id(ds)
    assert it["m1"]["title"] == "Alien" and year(ds, "m1") == 1979 and it["m1"]["genres"] == "Horror|Sci-Fi"
    assert it["m1"]["description"] == "In space."
    assert it["m2"]["title"] == "Heat" and year(ds, "m2") == 1995


def test_table_aliases_dates_and_no_ratings(tmp_path):
    inter = write(tmp_path / "log.tsv.gz", "userId\tmovieId\tdate\nA\t1\t2020-01-01T00:00:00Z\nB\t2\t2020-01-02\n")
    ds = load_table(inter)
    assert ds.interactions["user_id"].tolist() == ["A", "B"]
    assert ds.interactions["timestamp"].tolist() == [1577836800.0, 1577923200.0]
    assert ds.interactions["rating"].isna().all()
    assert ds.items["item_id"].tolist() == ["1", "2"] and (ds.items["title"] == "").all()


def test_table_parquet(tmp_path):
    inter = tmp_path / "ratings.parquet"
    pd.DataFrame({"user": [1, 2, 2], "item": [10, 10, 20], "rating": [1.0, 2.0, 3.0]}).to_parquet(inter)
    items = tmp_path / "items.parquet"
    pd.DataFrame(
        {"item_id": [10.0, 20.0], "title": ["Up (2009)", "Cars"], "genres": [["Animation", "Comedy"], []]}
    ).to_parquet(items)
    ds = load_table(inter, items)
    assert ds.interactions["user_id"].tolist() == ["1", "2", "2"]
    assert ds.interactions["item_id"].tolist() == ["10", "10", "20"]
    it = items_by_id(ds)  # float ids 10.0 -> "10"
    assert it["10"]["title"] == "Up" and year(ds, "10") == 2009 and it["10"]["genres"] == "Animation|Comedy"
    assert it["20"]["genres"] == ""
    when = pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"])
    pd.DataFrame({"user": ["x", "y", "y"], "item": [10, 10, 20], "date": when}).to_parquet(inter)
    assert load_table(inter).interactions["timestamp"].tolist() == [1577836800.0, 1577923200.0, 1578009600.0]
    pd.DataFrame({"user": [1, 2], "item": [10, 10], "rating": [1.0, np.nan]}).to_parquet(inter)
    with pytest.raises(DataError, match=r"ratings\.parquet, row 2: rating '' is not a number"):
        load_table(inter)


def test_table_errors(tmp_path):
    inter = write(tmp_path / "e.csv", "person,movie,stars\nu1,m1,4\n")
    cols = r"available columns: \['person', 'movie', 'stars'\]"
    with pytest.raises(DataError, match=r"e\.csv: column 'score' \(mapped to rating\) not found; " + cols):
        load_table(inter, columns={"user_id": "person", "item_id": "movie", "rating": "score"})
    with pytest.raises(DataError, match=r"e\.csv: no user_id column .*" + cols):
        load_table(inter, columns={"item_id": "movie"})
    with pytest.raises(ConfigError, match="unknown key"):
        load_table(inter, columns={"usr": "person"})
    # a quoted field spanning two lines: the bad value's line is still exact
    bad = write(tmp_path / "q.csv", 'user_id,item_id,rating,note\nu1,m1,4,"two\nlines"\nu2,m2,oops,x\n')
    with pytest.raises(DataError, match=r"q\.csv, line 4: rating 'oops' is not a number"):
        load_table(bad)
    wide = write(tmp_path / "w.csv", "user_id,item_id\nu1,m1\nu2,m2,EXTRA\n")
    with pytest.raises(DataError, match=r"w\.csv, line 3: expected 2 fields \(as in the header\), found 3"):
        load_table(wide)
    empty_id = write(tmp_path / "i.csv", "user_id,item_id\nu1,m1\n,m2\n")
    with pytest.raises(DataError, match=r"i\.csv, line 3: empty user id"):
        load_table(empty_id)
    dates = write(tmp_path / "t.csv", "user_id,item_id,timestamp\nu1,m1,2020-01-01\nu2,m2,not a date\n")
    with pytest.raises(DataError, match=r"t\.csv, line 3: timestamp 'not a date' is neither a number nor a date"):
        load_table(dates)


# ----------------------------------------------------------------------------- preprocess on a loaded fixture


def test_preprocess_threshold_and_kcore_on_loaded_table(tmp_path):
    rows = [
        ("a", 1, 5, 100), ("a", 1, 4, 200), ("a", 2, 4, 110), ("a", 3, 2, 120),
        ("b", 1, 4, 130), ("b", 2, 5, 140), ("b", 4, 4, 150),
        ("c", 1, 3, 160), ("c", 2, 4, 170), ("c", 5, 5, 180),
        ("d", 4, 5, 190), ("d", 5, 1, 195),
    ]  # fmt: skip
    text = "user_id,item_id,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in rows)
    ds = load_table(write(tmp_path / "r.csv", text))
    out = preprocess(ds, rating_threshold=4, kcore=2)
    # >=4 keeps a1 a1 a2 b1 b2 b4 c2 c5 d4; dedupe a1 -> latest; 2-core: drop d, item 5, then c and item 4
    got = sorted(map(tuple, out.interactions[["user_id", "item_id", "timestamp"]].values.tolist()))
    assert got == [("a", "1", 200.0), ("a", "2", 110.0), ("b", "1", 130.0), ("b", "2", 140.0)]
    assert sorted(out.items["item_id"]) == ["1", "2"]
    # threshold only: 8 distinct pairs survive, cold items stay in the catalogue
    only = preprocess(ds, rating_threshold=4)
    assert len(only.interactions) == 8 and len(only.items) == 5


# ----------------------------------------------------------------------------- dispatcher


def test_load_dataset_autodetects_every_format(tmp_path, recbole_dir, ml100k_dir):
    assert detect_format(recbole_dir) == "recbole"
    assert detect_format(recbole_dir / "ml-100k.inter") == "recbole"
    assert load_dataset(recbole_dir).items.loc[0, "title"] == "Kolya"  # .item sibling found
    assert detect_format(ml100k_dir) == "movielens"
    assert len(load_dataset(ml100k_dir / "u.data").items) == 4  # u.item found next to u.data
    amz = tmp_path / "amz"
    write(amz / "Beauty_5.json.gz", _jsonl(AMZ18_REVIEWS))
    write(amz / "meta_Beauty.json.gz", _jsonl(AMZ18_META))
    ds = load_dataset(amz)
    assert detect_format(amz) == "amazon" and items_by_id(ds)["B01"]["title"] == "Red Pen"
    assert load_dataset(amz / "Beauty_5.json.gz").checksum() == ds.checksum()  # meta found beside it
    gz = tmp_path / "gzrec"
    write(gz / "d.inter.gz", "user_id:token\titem_id:token\n1\ta\n")
    write(gz / "d.item.gz", "item_id:token\ttitle:token_seq\na\tAlpha (2001)\n")
    ds = load_dataset(gz)
    assert ds.name == "d" and ds.items.loc[0, "title"] == "Alpha" and year(ds, "a") == 2001
    tab = tmp_path / "tab"
    write(tab / "ratings.csv", "uid,iid,stars\nx,1,4\n")  # not MovieLens's header: a generic table
    write(tab / "items.csv", "iid,title\n1,One (2000)\n")
    assert detect_format(tab) == "table"
    ds = load_dataset(tab, columns={"user_id": "uid", "item_id": "iid", "rating": "stars"})
    assert ds.items.loc[0, "title"] == "One" and ds.interactions["rating"].tolist() == [4.0]
    assert "items.csv" in ds.source


def test_load_dataset_rejects_unknown(tmp_path):
    odd = write(tmp_path / "data.xlsx", "x")
    with pytest.raises(DataError, match=r"data\.xlsx: unrecognised data; accepted formats: recbole .*movielens .*amazon .*table"):
        load_dataset(odd)
    with pytest.raises(DataError, match="unknown data format 'csv'"):
        load_dataset(odd, format="csv")
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope")
    inter = write(tmp_path / "x.inter", "user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match="does not look like movielens data"):
        load_dataset(inter, format="movielens")
    with pytest.raises(ConfigError, match=r"\['columns'\] do not apply to recbole"):
        load_dataset(inter, columns={"user_id": "u"})


# ----------------------------------------------------------------------------- vectors

CAT = ["a", "b", "c"]
MAT = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])


def test_vectors_npy_with_text_ids_aligns_to_catalogue(tmp_path):
    np.save(tmp_path / "v.npy", MAT[[2, 0, 1]])
    write(tmp_path / "v.ids.txt", "c\na\nb\n\n")
    out = load_vectors(tmp_path / "v.npy", CAT)  # sibling ids file found
    assert out.dtype == np.float32 and np.array_equal(out, MAT.astype(np.float32))


def test_vectors_npy_ids_npz_parquet(tmp_path):
    np.save(tmp_path / "m.npy", MAT[::-1])
    np.save(tmp_path / "ids.npy", np.array(["c", "b", "a"]))
    assert np.array_equal(load_vectors(tmp_path / "m.npy", CAT, ids_path=tmp_path / "ids.npy"), MAT)
    np.savez(tmp_path / "v.npz", ids=np.array([3, 1, 2]), vectors=MAT)
    assert np.array_equal(load_vectors(tmp_path / "v.npz", ["1", "2", "3"]), MAT[[1, 2, 0]])
    pd.DataFrame({"item_id": ["b", "a", "c"], "vec": [MAT[1], MAT[0], MAT[2]]}).to_parquet(tmp_path / "l.parquet")
    assert np.array_equal(load_vectors(tmp_path / "l.parquet", CAT), MAT)
    pd.DataFrame({"item_id": CAT, "d0": MAT[:, 0], "d1": MAT[:, 1]}).to_parquet(tmp_path / "n.parquet")
    assert np.array_equal(load_vectors(tmp_path / "n.parquet", CAT), MAT)


def _npz(tmp_path, ids, vectors, name="v.npz"):
    np.savez(tmp_path / name, ids=np.asarray(ids), vectors=np.asarray(vectors))
    return tmp_path / name


def test_vector_errors(tmp_path):
    with pytest.raises(VectorError, match=r"2 vector rows but 3 ids"):
        load_vectors(_npz(tmp_path, CAT, MAT[:2]), CAT)
    with pytest.raises(VectorError, match=r"duplicate id\(s\) 'a'"):
        load_vectors(_npz(tmp_path, ["a", "a", "b"], MAT), CAT)
    with pytest.raises(VectorError, match=r"id\(s\) not in the catalogue: 'zz'"):
        load_vectors(_npz(tmp_path, ["a", "b", "c", "zz"], np.vstack([MAT, [1, 1]])), CAT)
    assert load_vectors(_npz(tmp_path, ["a", "b", "c", "zz"], np.vstack([MAT, [1, 1]])), CAT, allow_extra=True).shape == (3, 2)
    with pytest.raises(VectorError, match=r"catalogue item\(s\) without a vector: 'c'"):
        load_vectors(_npz(tmp_path, ["a", "b"], MAT[:2]), CAT)
    nan = MAT.copy()
    nan[1, 0] = np.nan
    with pytest.raises(VectorError, match=r"NaN or inf in the vector of item\(s\) 'b'"):
        load_vectors(_npz(tmp_path, CAT, nan), CAT)
    inf = MAT.copy()
    inf[2, 1] = np.inf
    with pytest.raises(VectorError, match=r"NaN or inf in the vector of item\(s\) 'c'"):
        load_vectors(_npz(tmp_path, CAT, inf), CAT)
    zero = MAT.copy()
    zero[0] = 0
    with pytest.raises(VectorError, match=r"all-zero vector .* item\(s\) 'a'"):
        load_vectors(_npz(tmp_path, CAT, zero), CAT)
    with pytest.raises(VectorError, match=r"2-D .* got shape \(3,\)"):
        load_vectors(_npz(tmp_path, CAT, np.ones(3)), CAT)
    np.save(tmp_path / "obj.npy", np.array([[1, "x"]], dtype=object), allow_pickle=True)
    write(tmp_path / "obj.ids.txt", "a\n")
    with pytest.raises(VectorError, match=r"obj\.npy: cannot load vectors without pickle"):
        load_vectors(tmp_path / "obj.npy", ["a"])
    with pytest.raises(VectorError, match=r"numeric array, got dtype <U1"):
        load_vectors(_npz(tmp_path, ["a"], np.array([["x", "y"]])), ["a"])
    np.save(tmp_path / "lonely.npy", MAT)
    with pytest.raises(VectorError, match=r"lonely\.npy: a \.npy matrix needs an ids file"):
        load_vectors(tmp_path / "lonely.npy", CAT)
    pd.DataFrame({"id": CAT, "d0": MAT[:, 0]}).to_parquet(tmp_path / "noid.parquet")
    with pytest.raises(VectorError, match=r"noid\.parquet: no 'item_id' column"):
        load_vectors(tmp_path / "noid.parquet", CAT)
    pd.DataFrame({"item_id": ["a", "b"], "vec": [[1.0, 2.0], [1.0]]}).to_parquet(tmp_path / "ragged.parquet")
    with pytest.raises(VectorError, match=r"ragged\.parquet, row 2 \(item b\): vector length 1 differs from 2"):
        load_vectors(tmp_path / "ragged.parquet", ["a", "b"])
