"""One reader, one layout: LISH-MoA directories and files, CMap gene tables and any other layout reach a ``Dataset``
through ``load_profiles(path, layout)``, the dataset always carries its layout, and no frame carries one."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_predict.data.profiles import schema
from moa_predict.data.profiles.dataset import Dataset, load_dataset, load_features
from moa_predict.data.errors import DataError
from moa_predict.data.profiles.layout import Layout, ModelInputs
from moa_predict.data.profiles.reader import iter_profiles, load_profiles, streams


def test_the_shipped_lish_moa_layout_says_what_sets_it_apart() -> None:
    layout = Layout.lish_moa()
    assert layout.fixed_columns and layout.unlabelled_are_negatives and not layout.single_label
    assert [b.prefix for b in layout.blocks] == ["g-", "c-"] and layout.controls.values == ("ctl_vehicle",)
    assert Layout.from_dict(layout.to_dict()) == layout
    assert streams(layout, None)  # nothing to fit: read in row chunks
    # any other layout keeps its old stored form: the new keys are left out at their defaults
    other = Layout.from_dict({"blocks": [{"name": "f", "prefix": "f"}], "labels": {"source": "column", "column": "m"}})
    assert "fixed_columns" not in other.to_dict() and "negatives" not in other.to_dict()["labels"]
    assert not other.fixed_columns and not other.unlabelled_are_negatives


def test_bad_flags_in_a_layout_are_named() -> None:
    with pytest.raises(DataError, match="fixed_columns"):
        Layout.from_dict({"blocks": [{"name": "f", "prefix": "f"}], "fixed_columns": "yes"})
    with pytest.raises(DataError, match="negatives"):
        Layout.from_dict({"blocks": [{"name": "f", "prefix": "f"}],
                          "labels": {"source": "column", "column": "m", "negatives": 1}})


def test_a_lish_moa_directory_reads_as_before(sim_dir: Path) -> None:
    old = load_dataset(sim_dir)
    data = load_profiles(sim_dir, Layout.lish_moa())
    assert data.layout == Layout.lish_moa() and data.feature_columns == list(schema.FEATURE_COLUMNS)
    pd.testing.assert_frame_equal(data.features, old.features)
    pd.testing.assert_frame_equal(data.targets, old.targets)
    pd.testing.assert_series_equal(data.drugs, old.drugs)
    assert data.simulated == old.simulated and data.simulated is not None
    assert not data.features.attrs  # the frame carries no layout
    test = load_profiles(sim_dir, Layout.lish_moa(), labels=False)  # without labels: the test split
    assert test.targets is None and len(test.features) == len(load_features(sim_dir / "test_features.csv"))


def test_a_lish_moa_file_reads_whole_and_in_chunks_as_before(sim_dir: Path) -> None:
    path = sim_dir / "test_features.csv"
    old = load_features(path)
    whole = load_profiles(path, Layout.lish_moa(), labels=False, feature_columns=list(schema.FEATURE_COLUMNS))
    pd.testing.assert_frame_equal(whole.features, old)
    chunks = list(iter_profiles(path, Layout.lish_moa(), feature_columns=list(schema.FEATURE_COLUMNS),
                                normalizer=None, chunk_rows=30))
    assert len(chunks) > 1 and all(c.layout.fixed_columns for c in chunks)
    pd.testing.assert_frame_equal(pd.concat([c.features for c in chunks]), old)


def test_errors_of_a_lish_moa_file_stay_as_clear(sim_dir: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(sim_dir / "test_features.csv")
    frame.loc[4, "cp_time"] = 36
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError) as err:
        load_profiles(tmp_path / "bad.csv", Layout.lish_moa(), labels=False)
    assert err.value.row == 5 and err.value.column == "cp_time" and "bad.csv" in str(err.value)
    with pytest.raises(DataError, match="is not a directory"):
        load_profiles(tmp_path / "nowhere", Layout.lish_moa())


def test_a_gene_table_reads_into_the_gene_block_only_when_allowed(sim_dir: Path, tmp_path: Path) -> None:
    """A table whose columns name genes (CMap) is read through the LISH-MoA layout into its gene block."""
    from moa_predict.data.identities import genes as model_genes

    frame = pd.read_csv(sim_dir / "test_features.csv", nrows=12)
    symbols = [str(g.entrez) for g in model_genes()]  # genes named by Entrez id
    genes = frame[list(schema.GENE_COLUMNS)].rename(columns=dict(zip(schema.GENE_COLUMNS, symbols)))
    genes.insert(0, "sig_id", frame["sig_id"])
    genes.to_csv(tmp_path / "genes.csv", index=False)
    with pytest.raises(DataError, match="gene expression only"):
        load_profiles(tmp_path / "genes.csv", Layout.lish_moa(), labels=False)
    data = load_profiles(tmp_path / "genes.csv", Layout.lish_moa(), labels=False, allow_gene_only=True)
    assert list(data.blocks) == ["genes"] and data.feature_columns == list(schema.GENE_COLUMNS)
    np.testing.assert_allclose(data.features[list(schema.GENE_COLUMNS)].to_numpy(),
                               frame[list(schema.GENE_COLUMNS)].to_numpy(np.float32), atol=1e-6)


def test_a_dataset_always_has_a_layout_and_its_inputs(sim_dataset: Dataset) -> None:
    bare = Dataset(sim_dataset.features)
    assert bare.layout == Layout.lish_moa() and bare.feature_columns == list(schema.FEATURE_COLUMNS)
    inputs = sim_dataset.inputs
    assert inputs.fixed_columns and inputs.feature_columns == list(schema.FEATURE_COLUMNS)
    assert inputs.treatment == [] and inputs.group is None  # drug_id lives in another file
    half = sim_dataset.subset(np.arange(10)).genes_only()
    assert half.layout == sim_dataset.layout and half.feature_columns == list(schema.GENE_COLUMNS)


def test_another_layout_is_read_without_attrs_and_fit_through_its_inputs(tmp_path: Path) -> None:
    from moa_predict.models.registry import make_model
    from moa_predict.simulate.layout import simulate_profiles

    simulate_profiles(tmp_path, seed=0)
    layout_path = tmp_path / "layout.toml"
    layout = Layout.from_dict(tomllib.loads(layout_path.read_text(encoding="utf-8")), base_dir=str(tmp_path))
    data = load_profiles(tmp_path / "profiles.csv.gz", layout)
    assert not data.features.attrs and data.layout == layout
    inputs = data.inputs
    assert inputs.single_label and list(inputs.blocks) == [b.name for b in layout.blocks]
    assert inputs.group == layout.group and inputs.treatment == list(layout.treatment)
    rows = np.flatnonzero(data.targets.to_numpy().sum(axis=1) > 0)
    X, Y = data.features.iloc[rows], data.targets.to_numpy(np.float32)[rows]
    fitted = make_model("knn").fit(X, Y, inputs=inputs)
    assert fitted.single_label_ and fitted.columns_ == data.feature_columns
    # the same frame taken for LISH-MoA profiles has no g-/c- columns: the inputs are what decides
    for name in ("knn", "logreg"):
        with pytest.raises(ValueError, match="inputs"):
            make_model(name).fit(X, Y)
    alone = dataclasses.replace(inputs, treatment=[])  # each well its own reference
    assert len(make_model("knn").fit(X, Y, inputs=alone).references_) > len(fitted.references_)
    assert isinstance(inputs, ModelInputs)
