"""Files as users have them: other text encodings, directories, files cut off mid-copy, headers with look-alike
characters; every case read correctly or refused naming what it is (issue 27, item 8)."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from moa_predict.data.formats.chunks import iter_features
from moa_predict.data.profiles.dataset import load_features
from moa_predict.data.errors import DataError
from moa_predict.data.formats.io import read_table, sniff_encoding


@pytest.fixture()
def plain(sim_dir) -> bytes:
    return (sim_dir / "test_features.csv").read_bytes()


def _both(path):
    """The whole-file reader's frame and the streamed chunks' frame of the same file."""
    return load_features(path), pd.concat(list(iter_features(path, chunk_rows=30)))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16",  # the other byte orders and widths: full suite
                                      *(pytest.param(e, marks=pytest.mark.slow) for e in ("utf-16-le", "utf-16-be", "utf-32"))])
def test_other_encodings_are_read_as_utf8(plain, sim_dir, tmp_path, encoding):
    path = tmp_path / f"{encoding}.csv"
    path.write_bytes(plain.decode("utf-8").encode(encoding))
    expected = load_features(sim_dir / "test_features.csv")
    for frame in _both(path):
        pd.testing.assert_frame_equal(frame, expected)


def test_sniffed_encodings():
    assert sniff_encoding("sig_id,g-0".encode("utf-16-le")) == "utf-16-le"
    assert sniff_encoding(b"\xef\xbb\xbfsig_id") == "utf-8-sig" and sniff_encoding(b"sig_id,g-0") == "utf-8-sig"
    assert sniff_encoding(b"PK\x03\x04\x00\x00\x14\x00\x06\x00") is None  # an .xlsx: binary


def test_latin1_is_refused_naming_its_encoding(plain, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(plain.replace(b"sig_id", "sig_id µ".encode("latin-1"), 1))
    for read in (read_table, lambda p: list(iter_features(p))):
        with pytest.raises(DataError, match=r"not a UTF-8 text file .*Latin-1"):
            read(path)


def test_a_directory_is_called_a_directory(sim_dir):
    for read in (read_table, load_features, lambda p: list(iter_features(p))):
        with pytest.raises(DataError, match="is a directory, not a file"):
            read(sim_dir)


def test_a_file_cut_off_mid_row_names_the_row(plain, tmp_path):
    lines = plain.split(b"\n")
    cut = b"\n".join(lines[:8]) + b"\n" + lines[8][: len(lines[8]) // 2]  # header + 7 rows, then half of row 8
    path = tmp_path / "cut.csv"
    path.write_bytes(cut)
    for read in (read_table, lambda p: list(iter_features(p, chunk_rows=3))):
        with pytest.raises(DataError, match=r"seems cut off at row 8 \(line 9\)") as raised:
            read(path)
        assert raised.value.row == 8
    path.write_bytes(b"\n".join(lines[:8]) + b"\n")  # ends with a whole row: complete
    assert len(read_table(path)) == 7


def test_a_gzip_file_cut_off_names_the_row(plain, tmp_path):
    packed = gzip.compress(plain)
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    for read in (read_table, lambda p: list(iter_features(p, chunk_rows=3))):
        with pytest.raises(DataError, match=r"seems cut off at row \d+ .*gzip stream ends early"):
            read(path)


def test_a_big_gzip_file_cut_off_mid_row_is_said_by_the_streamed_reader(sim_dir, tmp_path, monkeypatch, capsys):
    """A .csv.gz too big to read whole (the limit lowered here) cut in the middle of a row: the chunks already
    read are not an answer; `moa predict` says "cut off at row N" (N the row the stream stops in, as the
    whole-file reader says) and writes no output, without reading the whole file again."""
    import zlib

    from moa_predict.cli import main
    from moa_predict.data.formats import chunks

    plain = (sim_dir / "test_features.csv").read_bytes()
    packed = gzip.compress(plain)
    cut = packed[: len(packed) * 2 // 3]
    path = tmp_path / "big.csv.gz"
    path.write_bytes(cut)
    row = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")  # line ends before the row it stops in
    assert 30 < row < plain.count(b"\n")
    with pytest.raises(DataError, match=rf"seems cut off at row {row:,} \(line {row + 1:,}\).*gzip stream ends"):
        read_table(path)  # the whole-file reader's sentence
    monkeypatch.setattr(chunks, "DEFAULT_MAX_BYTES", 1000)  # "too big to read whole"
    monkeypatch.setattr(chunks, "read_table", lambda *a, **k: pytest.fail("the file was read whole again"))
    for rows in (7, 5000):
        with pytest.raises(DataError, match=rf"seems cut off at row {row:,} \(line {row + 1:,}\)") as raised:
            list(iter_features(path, chunk_rows=rows))
        assert raised.value.row == row
    bundle = tmp_path / "prior"
    assert main(["train", "--data", str(sim_dir), "--model", "prior", "--no-cv", "--no-gene-only",
                 "--out", str(bundle)]) == 0
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    assert main(["predict", "--bundle", str(bundle), "--features", str(path), "--out", str(out),
                 "--chunk-rows", "7", "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"cut off at row {row:,}" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob("*pred*"))  # no shorter output, no temporary file left


@pytest.mark.parametrize("wrong, odd", [("g\u20110", "U+2011 NON-BREAKING HYPHEN"),
                                        ("\u0441p_type", "U+0441 CYRILLIC SMALL LETTER ES"),
                                        ("g-1\u200b", "U+200B ZERO WIDTH SPACE")])
def test_lookalike_headers_get_a_hint(plain, tmp_path, wrong, odd):
    right = wrong.replace("\u2011", "-").replace("\u0441", "c").replace("\u200b", "")
    header, rest = plain.split(b"\n", 1)
    names = header.decode().split(",")
    names[names.index(right)] = wrong
    path = tmp_path / "lookalike.csv"
    path.write_bytes((",".join(names) + "\n").encode() + rest)
    with pytest.raises(DataError, match="looks like") as raised:
        load_features(path)
    assert repr(wrong) in str(raised.value) and odd in str(raised.value) and repr(right) in str(raised.value)


def test_the_upload_picker_and_the_error_box(sim_dir, plain):
    from fastapi.testclient import TestClient

    from moa_predict.data.profiles.dataset import load_dataset
    from moa_predict.models.prior import PriorModel
    from moa_predict.training.train import train_bundle
    from moa_predict.web import create_app

    bundle, _ = train_bundle(PriorModel(), load_dataset(sim_dir), cv=False, progress=False, reference=False)
    client = TestClient(create_app(bundle), raise_server_exceptions=False)
    picker = client.get("/").text
    for suffix in (".gctx", ".gct", ".h5ad"):
        assert suffix in picker.split('accept="', 1)[1].split('"', 1)[0]
    # a message naming no row or column: the hint does not point at one
    r = client.post("/predict", files={"file": ("x.csv", b"PK\x03\x04\x00\x00\x14\x00binary", "text/csv")})
    assert r.status_code == 422 and "binary data" in r.text
    assert "row or column named above" not in r.text
    # one naming a row and a column still does
    lines = plain.split(b"\n")
    bad = lines[1].split(b",")
    bad[5] = b"abc"
    r = client.post("/predict", files={"file": ("x.csv", b"\n".join([lines[0], b",".join(bad), *lines[2:]]),
                                                "text/csv")})
    assert r.status_code == 422 and "row or column named above" in r.text
