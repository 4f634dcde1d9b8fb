import csv
import io

import pandas as pd
import pytest

from lib.exports import frame_to_csv, neutralise, rows_to_csv


@pytest.mark.parametrize("cell", ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\t=x", "\r=x"])
def test_formula_cells_are_neutralised(cell: str) -> None:
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("value", ["Ada", "", 5, -5, 1.5, None, "a=b"])
def test_other_values_untouched(value) -> None:
    assert neutralise(value) == value


def test_csv_round_trip_keeps_numbers_and_neutralises_text() -> None:
    data = rows_to_csv([{"name": "=HYPERLINK(\"x\")", "amount": -500, "note": None}],
                       ["name", "amount", "note"])
    text = data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["name", "amount", "note"], ["'=HYPERLINK(\"x\")", "-500", ""]]


def test_dataframe_export() -> None:
    frame = pd.DataFrame([{"email": "@evil", "n": 1}])
    text = frame_to_csv(frame).decode("utf-8-sig")
    assert text.splitlines() == ["email,n", "'@evil,1"]
