"""Reading and validating LISH-MoA tables: every bad input ends in a DataError that names file, row, column."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pandas as pd
import pytest

from moa_predict.data.profiles import schema
from moa_predict.data.profiles.dataset import load_dataset, load_features, load_targets
from moa_predict.data.errors import DataError
from moa_predict.data.formats.io import read_table, write_table

NAME = "upload.csv"


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _load(data: bytes | pd.DataFrame, name: str = NAME, **kwargs) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        data = _csv(data)
    return load_features(io.BytesIO(data), name=name, **kwargs)


def _error(data: bytes | pd.DataFrame, name: str = NAME, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        _load(data, name, **kwargs)
    err = info.value
    assert str(err).startswith(f"{name}: "), "the message must name the file first"
    assert err.source == name
    return err


def _set(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    frame = frame.astype({column: object})
    frame.loc[row, column] = value
    return frame


# -- valid input ------------------------------------------------------------------------------------------


def test_valid_features_load_with_types_and_index(raw_features):
    feats = _load(raw_features)
    assert feats.index.name == schema.SIG_ID
    assert list(feats.index) == list(raw_features[schema.SIG_ID])
    assert list(feats.columns) == [schema.CP_TYPE, schema.CP_TIME, schema.CP_DOSE, *schema.FEATURE_COLUMNS]
    assert all(feats[c].dtype == np.float32 for c in schema.FEATURE_COLUMNS)
    assert set(feats[schema.CP_TIME]) <= set(schema.CP_TIMES)
    np.testing.assert_allclose(feats["g-0"].to_numpy(), raw_features["g-0"].to_numpy(), rtol=1e-6)


def test_shuffled_columns_load_identically(raw_features):
    order = list(np.random.default_rng(1).permutation(raw_features.columns))
    pd.testing.assert_frame_equal(_load(raw_features[order]), _load(raw_features))


def test_extra_columns_are_kept_after_the_features(raw_features):
    frame = raw_features.copy()  # copy: one block, so insert does not warn
    frame.insert(1, "compound", [f"cmpd {i}" for i in range(len(frame))])
    feats = _load(frame)
    assert list(feats.columns[-1:]) == ["compound"]
    assert feats["compound"].iloc[3] == "cmpd 3"
    pd.testing.assert_frame_equal(feats.drop(columns="compound"), _load(raw_features))


def test_windows_line_endings_bom_and_trailing_empty_line(raw_features):
    plain = _csv(raw_features)
    windows = b"\xef\xbb\xbf" + plain.replace(b"\n", b"\r\n") + b"\r\n"
    pd.testing.assert_frame_equal(_load(windows), _load(plain))


def test_trailing_commas_do_not_add_columns(raw_features):
    lines = _csv(raw_features).decode().splitlines()
    feats = _load(("\n".join(line + "," for line in lines) + "\n").encode())
    pd.testing.assert_frame_equal(feats, _load(raw_features))


@pytest.mark.parametrize("sep,decimal", [(";", "."), (";", ","), ("\t", ".")])
def test_semicolon_and_tab_separated_files_read_as_they_are(raw_features, sep, decimal):
    """Spreadsheet exports in European locales: ';' separators, often decimal commas. Unambiguous, so read."""
    data = raw_features.to_csv(index=False, sep=sep, decimal=decimal).encode()
    assert (b"," in data) == (decimal == ",")
    pd.testing.assert_frame_equal(_load(data), _load(raw_features))


def test_decimal_comma_in_a_comma_separated_file_says_so(raw_features):
    frame = _set(raw_features, 4, "g-7", "0,125")  # quoted by to_csv: one field, but not a number
    err = _error(frame)
    assert err.row == 5 and err.column == "g-7"
    assert "decimal comma" in str(err) and "'.' as the decimal separator" in str(err)


def test_ragged_semicolon_file_names_the_separator(raw_features):
    lines = raw_features.to_csv(index=False, sep=";").splitlines()
    lines[3] += ";extra"
    err = _error(("\n".join(lines) + "\n").encode())
    assert "line 4 has" in str(err) and "semicolon-separated" in str(err)


def test_parquet_loads_like_csv(raw_features, tmp_path):
    expected = _load(raw_features)
    path = write_table(raw_features, tmp_path / "features.parquet")
    pd.testing.assert_frame_equal(load_features(path), expected)
    # written with sig_id as the index (df.set_index("sig_id").to_parquet()): sig_id is still found
    raw_features.set_index(schema.SIG_ID).to_parquet(tmp_path / "indexed.parquet")
    pd.testing.assert_frame_equal(load_features(tmp_path / "indexed.parquet"), expected)


def test_parquet_detected_by_content_and_corrupt_parquet_fails(raw_features, tmp_path):
    buf = io.BytesIO()
    raw_features.to_parquet(buf)
    pd.testing.assert_frame_equal(_load(buf.getvalue(), name="features.csv"), _load(raw_features))
    err = _error(buf.getvalue()[: len(buf.getvalue()) // 2], name="cut.parquet")
    assert "not a readable Parquet file" in str(err)


def test_upload_handle_is_left_open(raw_features):
    handle = io.BytesIO(_csv(raw_features))
    load_features(handle, name=NAME)
    assert not handle.closed
    bad = io.BytesIO(b"sig_id,a\nid1,1,2\n")
    with pytest.raises(DataError):
        read_table(bad, name=NAME)
    assert not bad.closed


# -- columns ----------------------------------------------------------------------------------------------


def test_missing_column(raw_features):
    err = _error(raw_features.drop(columns=["c-99"]))
    assert err.column == "c-99" and err.row is None
    assert "missing column(s) 'c-99'" in str(err)


def test_targets_file_given_as_features(sim_dir):
    err = _error((sim_dir / "train_targets_scored.csv").read_bytes())
    assert "does not look like a features file" in str(err)


def test_unknown_feature_like_column(raw_features):
    err = _error(pd.concat([raw_features, pd.DataFrame({"g-772": 0.0}, index=raw_features.index)], axis=1))
    assert err.column == "g-772"
    assert "unexpected feature column(s) 'g-772'" in str(err)


def test_duplicated_column(raw_features):
    text = _csv(raw_features).decode().replace("g-5,", "g-4,", 1)
    err = _error(text.encode())
    assert err.column == "g-4"
    assert "duplicated column(s) 'g-4'" in str(err) and "columns 9, 10" in str(err)


def test_duplicated_column_after_stripping_spaces(raw_features):
    text = _csv(raw_features).decode().replace("g-5,", "g-4 ,", 1)
    assert _error(text.encode()).column == "g-4"


def test_missing_sig_id_column(raw_features):
    err = _error(raw_features.rename(columns={schema.SIG_ID: "id"}))
    assert err.column == schema.SIG_ID


# -- sig_id -----------------------------------------------------------------------------------------------


def test_duplicated_sig_id(raw_features):
    frame = _set(raw_features, 5, schema.SIG_ID, raw_features[schema.SIG_ID][2])
    err = _error(frame)
    assert (err.row, err.column) == (3, schema.SIG_ID)
    assert f"sig_id {raw_features[schema.SIG_ID][2]!r} appears more than once (rows 3, 6)" in str(err)


def test_sig_ids_equal_after_stripping_are_duplicates(raw_features):
    frame = _set(raw_features, 5, schema.SIG_ID, " " + raw_features[schema.SIG_ID][2] + " ")
    assert _error(frame).row == 3


@pytest.mark.parametrize("blank", ["", "  "])
def test_empty_sig_id(raw_features, blank):
    err = _error(_set(raw_features, 7, schema.SIG_ID, blank))
    assert (err.row, err.column) == (8, schema.SIG_ID)
    assert "row 8: 'sig_id' is empty" in str(err)


def test_sig_ids_stay_text(raw_features):
    frame = raw_features.copy()
    frame[schema.SIG_ID] = [f"{i:03d}" for i in range(len(frame))]
    text = _csv(frame).decode().replace("sig_id,", " sig_id ,", 1)  # found even with spaces around the name
    assert list(_load(text.encode()).index[:3]) == ["000", "001", "002"]


# -- values -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("abc", "'abc' is not a number"),
    ("", "value is missing"),
    ("inf", "value is infinite"),
    ("1e400", "value is infinite"),  # overflows float64 while parsing
    ("1e39", "too large"),  # fits float64 but would become inf in float32
])
def test_bad_feature_value(raw_features, value, expected):
    err = _error(_set(raw_features, 3, "g-7", value))
    assert (err.row, err.column) == (4, "g-7")
    sig = raw_features[schema.SIG_ID][3]
    assert f"row 4 (sig_id {sig}), column g-7: " in str(err)
    assert expected in str(err)


def test_large_but_valid_feature_value_is_kept(raw_features):
    feats = _load(_set(raw_features, 3, "c-1", "123456789012345678901234567890"))
    assert feats["c-1"].iloc[3] == pytest.approx(1.2345679e29, rel=1e-6)


@pytest.mark.parametrize(("column", "value", "shown"), [
    (schema.CP_TYPE, "treated", "'treated'"),
    (schema.CP_TYPE, "", "empty"),
    (schema.CP_TIME, 36, "36"),
    (schema.CP_TIME, "1 day", "'1 day'"),
    (schema.CP_DOSE, "D3", "'D3'"),
])
def test_unknown_meta_value(raw_features, column, value, shown):
    err = _error(_set(raw_features, 10, column, value))
    assert (err.row, err.column) == (11, column)
    assert f"row 11 (sig_id {raw_features[schema.SIG_ID][10]}): {column} is {shown}; expected one of" in str(err)


def test_meta_values_are_normalised(raw_features):
    frame = _set(raw_features, 0, schema.CP_DOSE, " D2 ")
    frame = _set(frame, 1, schema.CP_TIME, "48.0")
    feats = _load(frame)
    assert feats[schema.CP_DOSE].iloc[0] == "D2" and feats[schema.CP_TIME].iloc[1] == 48


# -- targets ----------------------------------------------------------------------------------------------


def _targets(text: str) -> pd.DataFrame:
    return load_targets(io.BytesIO(text.encode()), name="targets.csv")


@pytest.mark.parametrize(("value", "expected"), [
    ("2", "target value 2 is not 0 or 1"),
    ("0.5", "target value 0.5 is not 0 or 1"),
    ("-1", "target value -1 is not 0 or 1"),
    ("yes", "'yes' is not a number"),
    ("", "value is missing"),
])
def test_bad_target_value(value, expected):
    with pytest.raises(DataError) as info:
        _targets(f"sig_id,a,b\nid_1,0,1\nid_2,1,{value}\n")
    err = info.value
    assert (err.source, err.row, err.column) == ("targets.csv", 2, "b")
    assert "row 2 (sig_id id_2), column b: " in str(err) and expected in str(err)


def test_targets_load_as_int8_in_file_order():
    y = _targets("sig_id,b,a\nid_1,0,1\nid_2,1,0\n")
    assert list(y.columns) == ["b", "a"] and y.dtypes.eq(np.int8).all()
    assert y.loc["id_2", "b"] == 1


def _copy_dir(sim_dir, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(sim_dir, out)
    return out


def test_targets_with_other_sig_ids_fail(sim_dir, tmp_path):
    data = _copy_dir(sim_dir, tmp_path)
    targets = pd.read_csv(data / "train_targets_scored.csv")
    first = targets[schema.SIG_ID][0]
    targets.loc[4, schema.SIG_ID] = "id_notthere"
    targets.to_csv(data / "train_targets_scored.csv", index=False)
    with pytest.raises(DataError) as info:
        load_dataset(data)
    err = info.value
    assert (err.source, err.row, err.column) == ("train_targets_scored.csv", 5, schema.SIG_ID)
    msg = str(err)
    assert "1 sig_id(s) of train_features.csv are missing here" in msg and repr(first) not in msg
    assert "row 5 (sig_id id_notthere)" in msg


def test_targets_in_other_row_order_are_aligned(sim_dir, tmp_path, sim_dataset):
    data = _copy_dir(sim_dir, tmp_path)
    targets = pd.read_csv(data / "train_targets_scored.csv")
    targets.iloc[::-1].to_csv(data / "train_targets_scored.csv", index=False)
    pd.testing.assert_frame_equal(load_dataset(data).targets, sim_dataset.targets)


def test_missing_file_in_data_dir(sim_dir, tmp_path):
    data = _copy_dir(sim_dir, tmp_path)
    (data / "train_targets_scored.csv").unlink()
    with pytest.raises(DataError, match="no train_targets_scored.csv or train_targets_scored.parquet"):
        load_dataset(data)


# -- files that are not tables ----------------------------------------------------------------------------


def test_empty_file():
    assert "the file is empty (0 bytes)" in str(_error(b""))


def test_header_only_file(raw_features):
    header = ",".join(raw_features.columns) + "\n"
    assert "no data rows" in str(_error(header.encode()))


def test_blank_lines_only():
    assert "no header line" in str(_error(b"\n\n\n"))


def test_binary_junk():
    junk = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert "not a CSV file (it contains binary data)" in str(_error(junk))


def test_binary_junk_without_nul_bytes():
    junk = bytes(range(1, 256)) * 20
    assert "not a UTF-8 text file" in str(_error(junk))


def test_random_text_file():
    text = b"Dear team,\nplease find the results attached, as discussed, thanks.\nBest\n"
    err = _error(text, name="notes.txt")
    assert "not a well-formed CSV file (line 2 has 3 fields but the header has 2)" in str(err)
    assert err.row == 1


def test_text_without_commas_is_not_a_features_file():
    err = _error(b"hello world\nthis is not a table\n", name="notes.txt")
    assert "does not look like a features file" in str(err)


@pytest.mark.parametrize("lines_with_extra_field", [[3], [1, 2, 3, 4]])
def test_line_with_an_extra_field_is_not_shifted(raw_features, lines_with_extra_field):
    # with every data line one field longer, pandas alone would make the first column the index and
    # shift every value one column left, silently
    lines = _csv(raw_features).decode().splitlines()[:5]
    for k in lines_with_extra_field:
        lines[k] += ",0.5"
    err = _error(("\n".join(lines) + "\n").encode())
    k = lines_with_extra_field[0]
    assert f"line {k + 1} has 877 fields but the header has 876" in str(err)
    assert err.row == k


def test_unterminated_quote():
    assert "not a well-formed CSV file" in str(_error(b'sig_id,a\n"id_1,1\n'))


def test_file_over_max_bytes(raw_features, tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(_csv(raw_features))
    with pytest.raises(DataError) as info:
        load_features(path, max_bytes=1000)
    assert f"file is {path.stat().st_size / 1e3:.3g} kB, over the 1 kB limit" in str(info.value)
    assert info.value.source == "big.csv"


def test_file_not_found(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_features(tmp_path / "nope.csv")


def test_error_to_dict():
    err = DataError("bad", source="f.csv", row=4, column="g-7")
    assert err.to_dict() == {"error": "f.csv: bad", "file": "f.csv", "row": 4, "line": 5, "column": "g-7"}
    assert DataError("bad").to_dict()["line"] is None
