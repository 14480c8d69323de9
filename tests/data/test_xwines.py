"""X-Wines loader: the published zip and loose CSVs, Python-literal lists, bad lines, the real Slim release."""

from __future__ import annotations

import calendar
import zipfile
from pathlib import Path

import pytest

from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.prepare import prepare
from hstu_blair.data.sources.xwines import load_xwines
from hstu_blair.errors import DataFormatError, HstuBlairError
from tests.conftest import shared_dataset

RATINGS = "XWines_Test_100_ratings.csv"
WINES = "XWines_Test_100_wines.csv"
RATINGS_CSV = """RatingID,UserID,WineID,Vintage,Rating,Date
1,7,100001,2019,4.5,2021-11-02 20:52:59
2,7,100002,N.V.,3.0,2020-01-01 00:00:00
3,8,100001,1950,5.0,2015-08-20 17:46:26
"""
WINES_CSV = '''WineID,WineName,Type,Elaborate,Grapes,Harmonize,ABV,Body,Acidity,Code,Country,RegionID,RegionName,WineryID,WineryName,Website,Vintages
100001,Espumante Moscatel,Sparkling,Varietal/100%,['Muscat/Moscato'],"['Pork', 'Rich Fish']",7.5,Medium-bodied,High,BR,Brazil,1001,Serra Gaúcha,10001,Casa Perini,http://x.example,"[2020, 'N.V.']"
100002,"Rosé ""Cuvée""",Rosé,Assemblage/Blend,"['Merlot', ""Nero d'Avola""]",[],12.0,Light-bodied,,IT,Italy,1002,Sicilia,10002,Planeta,,[2019]
'''


def _seconds(text: str) -> int:
    return calendar.timegm(
        tuple(int(x) for x in text.replace("-", " ").replace(":", " ").split()) + (0, 0, 0)
    )


def _zip(folder: Path, ratings: str = RATINGS_CSV, wines: str = WINES_CSV) -> Path:
    path = folder / "XWines_Test_100_wines_1K_ratings.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(RATINGS, ratings)
        archive.writestr(WINES, wines)
    return path


def test_zip_and_loose_csvs_give_the_same_tables(tmp_path):
    raw = load_xwines([_zip(tmp_path)], PrepareOptions())
    assert raw.source == "xwines" and raw.name == "xwines-test"
    assert raw.interactions.rows() == [
        ("7", "100001", _seconds("2021-11-02 20:52:59"), 4.5),
        ("7", "100002", _seconds("2020-01-01 00:00:00"), 3.0),
        ("8", "100001", _seconds("2015-08-20 17:46:26"), 5.0),
    ]
    assert raw.items.rows() == [
        (
            "100001",
            "Espumante Moscatel",
            "Espumante Moscatel. Type: Sparkling. Grapes: Muscat/Moscato. Pairs with: Pork, Rich Fish. "
            "Body: Medium-bodied. Acidity: High. Region: Serra Gaúcha, Brazil. Winery: Casa Perini",
        ),
        (
            "100002",
            'Rosé "Cuvée"',
            'Rosé "Cuvée". Type: Rosé. Grapes: Merlot, Nero d\'Avola. Body: Light-bodied. '
            "Region: Sicilia, Italy. Winery: Planeta",
        ),
    ]
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / RATINGS).write_text(RATINGS_CSV)
    (loose / WINES).write_text(WINES_CSV)
    again = load_xwines([loose], PrepareOptions())
    assert again.interactions.equals(raw.interactions) and again.items.equals(raw.items)
    assert again.files == [loose / RATINGS, loose / WINES]


def test_bad_date_names_the_member_line_and_field(tmp_path):
    bad = RATINGS_CSV.replace("2020-01-01 00:00:00", "01/01/2020")
    archive = _zip(tmp_path, ratings=bad)
    with pytest.raises(DataFormatError, match=rf"{RATINGS}:3 \(field 'Date'\).*YYYY-MM-DD HH:MM:SS") as info:
        load_xwines([archive], PrepareOptions())
    assert info.value.path == str(archive / RATINGS)
    raw = load_xwines([archive], PrepareOptions(skip_bad_lines=True))
    assert raw.interactions.height == 2 and raw.removed[f"bad_lines:{RATINGS}"] == 1


def test_bad_list_literal_names_line_and_field(tmp_path):
    bad = WINES_CSV.replace("['Muscat/Moscato']", "['Muscat")
    with pytest.raises(DataFormatError, match=rf"{WINES}:2 \(field 'Grapes'\).*Python list literal"):
        load_xwines([_zip(tmp_path, wines=bad)], PrepareOptions())
    raw = load_xwines([_zip(tmp_path, wines=bad)], PrepareOptions(skip_bad_lines=True))
    assert raw.items["item_id"].to_list() == ["100002"] and raw.removed[f"bad_lines:{WINES}"] == 1


def test_missing_wines_file_is_named(tmp_path):
    (tmp_path / RATINGS).write_text(RATINGS_CSV)
    with pytest.raises(HstuBlairError, match="no wines file"):
        load_xwines([tmp_path], PrepareOptions())


def test_real_slim_release(tmp_path):
    """README: 150,000 ratings; 10,561 users (10,254 with 5 or more); 1,007 wines."""
    folder = shared_dataset("xwines-slim")
    raw = load_xwines([folder], PrepareOptions())
    assert raw.interactions.height == 150_000 and raw.items.height == 1_007
    per_user = raw.interactions.group_by("user_id").len()
    assert per_user.height == 10_561 and per_user.filter(per_user["len"] >= 5).height == 10_254
    assert not raw.removed and raw.items.filter(raw.items["text"] == "").height == 0
    data = prepare("xwines", [folder], tmp_path / "xw", PrepareOptions(kcore=0))
    assert data.num_users == 10_561 and data.num_interactions == 150_000
