"""Reading what CMap / L1000 users hold (GCTX, GCT, h5ad, CSV/Parquet either way round) into the model's genes."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from moa_predict.data import identities

from moa_predict.data.profiles import schema
from moa_predict.data.formats.cmap import read_genes
from moa_predict.data.profiles.dataset import load_features
from moa_predict.data.errors import DataError
from moa_predict.data.profiles.gene_features import (MAPPING_ATTR, is_gene_only, iter_gene_features, lish_meta,
                                            load_gene_features)
from moa_predict.simulate.cmap import landmark_rows, simulate_gctx, write_gctx

N_SAMPLES = 6


def _real_l1000() -> Path:
    path = Path(__file__).resolve().parents[2] / "shared" / "real" / "l1000"
    if not (path / "modzs_n272x978_level5.csv.gz").is_file():
        pytest.skip(f"real CMap files not found in {path} (the shared data folder beside the repository)")
    return path


@pytest.fixture
def plate():
    """All 978 landmarks (genes) x 6 samples of seeded z-scores, with CMap-style sample metadata."""
    rng = np.random.default_rng(7)
    rows = landmark_rows()
    values = rng.standard_normal((N_SAMPLES, len(rows))).astype(np.float32)
    meta = pd.DataFrame({"id": [f"S{i}" for i in range(N_SAMPLES)],
                         "pert_type": ["trt_cp", "ctl_vehicle"] * 3,
                         "pert_itime": ["6 h", "24 h", "48 h", "72 h", "96 h", "24 h"],
                         "pert_iname": [f"drug{i}" for i in range(N_SAMPLES)]})
    return rows, meta, values


def _expected(rows: pd.DataFrame, values: np.ndarray) -> np.ndarray:
    """The model's 772 genes of `values` (samples x landmarks), picked by Entrez id."""
    position = {int(e): j for j, e in enumerate(rows["pr_gene_id"])}
    return values[:, [position[g.entrez] for g in identities.genes()]]


def _gct13(rows, meta, values) -> bytes:
    lines = ["#1.3", f"{len(rows)}\t{len(meta)}\t2\t{len(meta.columns) - 1}",
             "\t".join(["id", "pr_gene_id", "pr_gene_symbol", *meta["id"]])]
    for key in meta.columns[1:]:
        lines.append("\t".join([key, "na", "na", *map(str, meta[key])]))
    for j, r in enumerate(rows.itertuples(index=False)):
        cells = (f"{v:.6f}" for v in values[:, j])
        lines.append("\t".join([f"{r.id}_at", str(r.pr_gene_id), r.pr_gene_symbol, *cells]))
    return ("\n".join(lines) + "\n").encode()


def _write_h5ad(path: Path, obs: pd.DataFrame, var_names: list[str], x: np.ndarray, sparse: bool = False) -> None:
    """An .h5ad file as anndata writes it (encoding attributes, categorical obs column, dense or CSR X)."""
    strings = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        if sparse:
            nz = np.nonzero(x)
            g = f.create_group("X")
            g.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": np.array(x.shape)})
            g["data"], g["indices"] = x[nz].astype(np.float32), nz[1].astype(np.int32)
            g["indptr"] = np.concatenate([[0], np.cumsum(np.count_nonzero(x, axis=1))]).astype(np.int32)
        else:
            f["X"] = x.astype(np.float32)
        for key, index, frame in (("obs", list(obs.index), obs), ("var", var_names, pd.DataFrame(index=var_names))):
            g = f.create_group(key)
            g.attrs.update({"_index": "_index", "encoding-type": "dataframe", "encoding-version": "0.2.0"})
            g.attrs.create("column-order", data=list(frame.columns), shape=(len(frame.columns),), dtype=strings)
            g.create_dataset("_index", data=np.array(index, dtype=object), dtype=strings)
            for col in frame.columns:
                cat = pd.Categorical(frame[col])
                c = g.create_group(col)
                c.attrs.update({"encoding-type": "categorical", "encoding-version": "0.2.0", "ordered": False})
                c.create_dataset("categories", data=np.array(list(cat.categories), dtype=object), dtype=strings)
                c["codes"] = cat.codes.astype(np.int8)


# -- each format gives the model's genes, matched through Entrez ids ------------------------------------


def test_gctx_reads_samples_as_rows_and_maps_by_entrez(tmp_path, plate):
    rows, meta, values = plate
    blocks = [(meta.iloc[:4], values[:4]), (meta.iloc[4:], values[4:])]
    path = write_gctx(tmp_path / "plate.gctx", rows, N_SAMPLES, blocks)
    raw, sample_meta, genes = read_genes(path)
    assert raw.shape == (N_SAMPLES, 978) and list(raw.index) == list(meta["id"])
    np.testing.assert_array_equal(raw.to_numpy(), values)
    result = load_gene_features(path)
    np.testing.assert_array_equal(result.frame[list(schema.GENE_COLUMNS)].to_numpy(), _expected(rows, values))
    assert result.report.by_kind == {"entrez": 772} and result.report.ignored == 206
    assert list(result.frame[schema.CP_TYPE]) == ["trt_cp", "ctl_vehicle"] * 3
    assert list(result.frame[schema.CP_TIME]) == [24, 24, 48, 72, 72, 24]
    assert list(result.frame["pert_iname"]) == list(meta["pert_iname"])


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_gct_text(tmp_path, plate, version):
    rows, meta, values = plate
    if version == "1.3":
        data = _gct13(rows, meta, values)
    else:  # GCT 1.2: Name (here the CMap symbol), Description; no sample metadata
        lines = ["#1.2", f"{len(rows)}\t{N_SAMPLES}", "\t".join(["Name", "Description", *meta["id"]])]
        lines += ["\t".join([r.pr_gene_symbol, "na", *(f"{v:.6f}" for v in values[:, j])])
                  for j, r in enumerate(rows.itertuples(index=False))]
        data = ("\n".join(lines) + "\n").encode()
    (tmp_path / "p.gct").write_bytes(data)
    result = load_gene_features(tmp_path / "p.gct")
    np.testing.assert_allclose(result.frame[list(schema.GENE_COLUMNS)].to_numpy(), _expected(rows, values), atol=1e-6)
    expected_kinds = {"entrez": 772} if version == "1.3" else {"hgnc_symbol": 738, "cmap_symbol": 34}
    assert result.report.by_kind == expected_kinds


@pytest.mark.parametrize("sparse", [False, True])
def test_h5ad_dense_and_csr(tmp_path, plate, sparse):
    rows, meta, values = plate
    values = np.where(np.abs(values) < 0.5, 0, values).astype(np.float32)  # zeros for the sparse layout
    obs = meta.set_index("id")[["pert_type"]]
    _write_h5ad(tmp_path / "a.h5ad", obs, list(rows["id"]), values, sparse=sparse)
    chunks = list(iter_gene_features(tmp_path / "a.h5ad", chunk_size=4))
    assert [len(c.frame) for c in chunks] == [4, 2]
    frame = pd.concat([c.frame for c in chunks])
    np.testing.assert_array_equal(frame[list(schema.GENE_COLUMNS)].to_numpy(), _expected(rows, values))
    assert list(frame[schema.CP_TYPE]) == ["trt_cp", "ctl_vehicle"] * 3


def test_h5ad_with_genes_as_obs_is_read_transposed(tmp_path, plate):
    rows, meta, values = plate
    _write_h5ad(tmp_path / "t.h5ad", pd.DataFrame(index=list(rows["id"])), list(meta["id"]), values.T)
    result = load_gene_features(tmp_path / "t.h5ad")
    assert list(result.frame.index) == list(meta["id"])
    np.testing.assert_array_equal(result.frame[list(schema.GENE_COLUMNS)].to_numpy(), _expected(rows, values))


@pytest.mark.parametrize("naming", ["entrez", "cmap_symbol", "feature"])
@pytest.mark.parametrize("orientation", ["columns", "rows"])
def test_tables_either_orientation_and_any_naming(tmp_path, plate, naming, orientation):
    rows, meta, values = plate
    model = _expected(rows, values)
    if naming == "entrez":
        names, data = list(rows["id"]), values
    elif naming == "cmap_symbol":  # CMap's older symbols, e.g. AARS (HGNC: AARS1)
        names, data = list(rows["pr_gene_symbol"]), values
    else:
        names, data = list(schema.GENE_COLUMNS), model
    if orientation == "columns":
        table = pd.concat([meta[["id", "pert_type"]].rename(columns={"id": "sig_id"}),
                           pd.DataFrame(data, columns=names)], axis=1)
        table.to_parquet(tmp_path / "t.parquet")
        path = tmp_path / "t.parquet"
    else:
        table = pd.concat([pd.DataFrame({"gene": names}), pd.DataFrame(data.T, columns=list(meta["id"]))], axis=1)
        table.to_csv(tmp_path / "t.csv", index=False, float_format="%.7g")
        path = tmp_path / "t.csv"
    result = load_gene_features(path)
    assert list(result.frame.index) == list(meta["id"])
    np.testing.assert_allclose(result.frame[list(schema.GENE_COLUMNS)].to_numpy(), model, atol=1e-5)
    assert result.report.found == 772
    if naming == "cmap_symbol":
        assert result.report.matched["g-0"] == ("AARS", "cmap_symbol")


# -- mapping rules -------------------------------------------------------------------------------------


def test_a_few_missing_genes_are_zero_filled_and_reported(tmp_path, plate):
    rows, meta, values = plate
    keep = [j for j, e in enumerate(rows["pr_gene_id"]) if identities.gene_by_entrez(e) is None or
            int(identities.gene_by_entrez(e).feature[2:]) >= 10]  # drop g-0 ... g-9
    table = pd.DataFrame(values[:, keep], columns=list(rows["id"].iloc[keep]))
    table.insert(0, "sig_id", meta["id"])
    table.to_csv(tmp_path / "few.csv", index=False)
    result = load_gene_features(tmp_path / "few.csv")
    assert result.report.filled_with_zero == [f"g-{k}" for k in range(10)]
    assert (result.frame[[f"g-{k}" for k in range(10)]].to_numpy() == 0).all()
    assert "10 missing, filled with 0: AARS1 (16)" in result.report.summary()
    assert result.frame.attrs[MAPPING_ATTR]["missing"] == 10


def test_too_many_missing_genes_is_an_error_listing_them(tmp_path, plate):
    rows, meta, values = plate
    table = pd.DataFrame(values[:, 100:], columns=list(rows["id"].iloc[100:]))
    table.insert(0, "sig_id", meta["id"])
    table.to_csv(tmp_path / "many.csv", index=False)
    with pytest.raises(DataError) as err:
        load_gene_features(tmp_path / "many.csv")
    message = str(err.value)
    assert message.startswith("many.csv: ") and "of the model's 772 genes are missing (at most 38, 5%" in message
    assert "AARS1 (16)" in message


def test_duplicated_gene_ids_are_an_error(tmp_path, plate):
    rows, meta, values = plate
    table = pd.DataFrame(values, columns=list(rows["id"]))
    table.insert(1, "AARS1", values[:, 0])  # g-0 again, by its HGNC symbol
    table.insert(0, "sig_id", meta["id"])
    table.to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(DataError, match=r"'16' .* and 'AARS1' .* are both AARS1 \(16\): duplicated gene ids"):
        load_gene_features(tmp_path / "dup.csv")


def test_cmap_metadata_to_lish_moa_meta_columns():
    meta = pd.DataFrame({"Metadata_pert_type": ["trt_cp", "ctl_vehicle", "ctl_untrt", "trt_sh"],
                         "Metadata_pert_itime": ["6 h", "24 h", "144 h", "-666"]})
    out, substituted = lish_meta(meta)
    assert list(out[schema.CP_TYPE]) == ["trt_cp", "ctl_vehicle", "ctl_vehicle", "trt_cp"]
    assert list(out[schema.CP_TIME]) == [24, 24, 72, 24]
    assert list(out[schema.CP_DOSE]) == ["D1"] * 4
    # never silent: 6 h, 144 h and the unknown time are counted; 24 h was answered as given
    assert substituted == {"cp_time": {"6 h -> 24": 1, "144 h -> 72": 1, "none given -> 24": 1},
                           "cp_dose": {"none given -> D1": 4}}
    defaults, substituted = lish_meta(pd.DataFrame(index=range(2)))
    assert defaults.to_dict("list") == {"cp_type": ["trt_cp"] * 2, "cp_time": [24] * 2, "cp_dose": ["D1"] * 2}
    assert substituted == {"cp_time": {"none given -> 24": 2}, "cp_dose": {"none given -> D1": 2}}


def test_substituted_time_and_dose_are_said_in_words():
    from moa_predict.data.profiles.gene_features import substitution_notes

    meta = pd.DataFrame({"Metadata_pert_itime": ["6 h"] * 3 + ["24 h"], "Metadata_pert_idose": ["10 uM"] * 4})
    _, substituted = lish_meta(meta)
    notes = substitution_notes(substituted)
    assert notes[0] == "time: 3 profiles at 6 h answered as 24 h (the model knows 24, 48, 72 h)."
    assert notes[1].startswith("dose: 4 profiles at 10 uM answered as D1 (the model knows LISH-MoA's relative doses")
    assert substitution_notes(lish_meta(pd.DataFrame({"cp_time": [48], "cp_dose": ["D2"]}))[1]) == []  # as given


# -- bad files: always a DataError naming the file -----------------------------------------------------


def test_truncated_hdf5(tmp_path, plate):
    rows, meta, values = plate
    path = write_gctx(tmp_path / "full.gctx", rows, N_SAMPLES, [(meta, values)])
    data = path.read_bytes()
    (tmp_path / "cut.gctx").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"^cut.gctx: .*truncated or damaged"):
        load_gene_features(tmp_path / "cut.gctx")


def test_hdf5_without_gctx_groups(tmp_path):
    with h5py.File(tmp_path / "other.gctx", "w") as f:
        f["0/DATA/0/matrix"] = np.zeros((2, 3), np.float32)
    with pytest.raises(DataError, match=r"without the GCTX group\(s\) /0/META/ROW/id, /0/META/COL/id"):
        load_gene_features(tmp_path / "other.gctx")


def test_not_hdf5_and_empty_files(tmp_path):
    (tmp_path / "junk.gctx").write_bytes(b"hello, not a file of any kind\n")
    with pytest.raises(DataError, match=r"^junk.gctx: not an HDF5 file"):
        load_gene_features(tmp_path / "junk.gctx")
    (tmp_path / "empty.gctx").write_bytes(b"")
    with pytest.raises(DataError, match=r"^empty.gctx: the file is empty"):
        load_features(tmp_path / "empty.gctx")


def test_non_numeric_gct_value_names_line_and_sample(tmp_path, plate):
    rows, meta, values = plate
    lines = _gct13(rows, meta, values).decode().splitlines()
    fields = lines[10].split("\t")
    fields[5] = "abc"  # sample S2 of the 7th gene (3 header lines + 3 metadata lines + 4 gene lines before)
    lines[10] = "\t".join(fields)
    (tmp_path / "bad.gct").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        load_gene_features(tmp_path / "bad.gct")
    assert str(err.value).startswith("bad.gct: line 11, sample 'S2' (field 6): 'abc' is not a number")
    assert (err.value.row, err.value.column) == (11, "S2")


# -- load_features: the one entry point of predict / explain / the web upload ---------------------------


def test_load_features_accepts_cmap_files_for_gene_only_models(tmp_path, plate):
    rows, meta, values = plate
    (tmp_path / "p.gct").write_bytes(_gct13(rows, meta, values))
    with pytest.raises(DataError, match="gene expression only .* needs c-0 ... c-99"):
        load_features(tmp_path / "p.gct")
    frame = load_features(tmp_path / "p.gct", feature_columns=schema.GENE_COLUMNS)
    assert is_gene_only(frame) and not any(c.startswith("c-") for c in frame.columns)
    upload = io.BytesIO(_gct13(rows, meta, values))
    same = load_features(upload, name="upload.gct", allow_gene_only=True)
    pd.testing.assert_frame_equal(same, frame)


def test_chunked_gctx_read_equals_whole_read(tmp_path):
    path = simulate_gctx(tmp_path / "sim.gctx", 20_000, seed=3, chunk_size=5_000)
    with h5py.File(path) as f:
        assert f["0/DATA/0/matrix"].shape == (20_000, 978)
    whole = load_gene_features(path).frame
    parts = [c.frame for c in iter_gene_features(path, chunk_size=3_000)]
    assert [len(p) for p in parts] == [3_000] * 6 + [2_000]
    pd.testing.assert_frame_equal(pd.concat(parts), whole)
    assert whole.index.is_unique and set(whole[schema.CP_TYPE]) == {"trt_cp", "ctl_vehicle"}


# -- real CMap files -----------------------------------------------------------------------------------


def test_real_level5_signatures_map_all_genes():
    result = load_gene_features(_real_l1000() / "modzs_n272x978_level5.csv.gz")
    assert result.frame.shape[0] == 272
    assert result.report.found == 772 and result.report.ignored == 206
    assert result.report.by_kind == {"hgnc_symbol": 738, "cmap_symbol": 34}
    assert set(result.frame["Metadata_pert_iname"]) == {"vemurafenib", "atorvastatin", "venlafaxine"}


def test_real_level3_plate_is_rejected_with_what_to_do():
    with pytest.raises(DataError) as err:
        load_gene_features(_real_l1000() / "LJP005_A375_24H_level3.gct")
    message = str(err.value)
    assert "look like log2 expression (CMap level 3), not z-scores" in message
    assert "level-5" in message and "ctl_vehicle" in message


def test_real_gctx_named_file_that_is_gct_text_is_read():
    """The shared '.gctx' plate is GCT text (z-scored, level 4): the content decides, not the suffix."""
    result = load_gene_features(_real_l1000() / "LJP005_A375_24H_level3.gctx")
    assert result.frame.shape[0] == 377 and result.report.by_kind == {"entrez": 772}
    assert (result.frame[schema.CP_TYPE] == "ctl_vehicle").sum() == 26


def test_size_limit_applies_to_whole_reads_not_to_blocks(tmp_path, plate):
    rows, meta, values = plate
    path = write_gctx(tmp_path / "p.gctx", rows, N_SAMPLES, [(meta, values)])
    limit = path.stat().st_size - 1
    with pytest.raises(DataError, match="over the .* limit. .*read it in blocks"):
        load_features(path, max_bytes=limit, allow_gene_only=True)
    blocks = list(iter_gene_features(path, max_bytes=limit, chunk_size=N_SAMPLES))
    assert len(blocks) == 1 and len(blocks[0].frame) == N_SAMPLES
