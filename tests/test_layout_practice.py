"""A new lab's CellProfiler screen: ``moa layout infer`` proposes the joins (image table on plate + well, annotation
on compound + concentration) and the field's practice (pycytominer's blocklist, pooled or per-plate control
scaling, whitening, batches); every documented normalisation and a block without PCA work for every model; a bundle
keeps its joins, so the raw file in the training form predicts as it is."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_predict.cli import main as moa_main
from moa_predict.data.profiles import practice
from moa_predict.data.errors import DataError
from moa_predict.data.profiles.layout import NORMALIZATIONS, Block, load_layout
from moa_predict.data.profiles.layout_infer import infer_layout
from moa_predict.data.profiles.reader import load_profiles

MOAS = {"cpdA": "tubulin", "cpdB": "tubulin", "cpdC": "HDAC", "cpdD": "HDAC", "cpdE": "EGFR", "cpdF": "EGFR"}
PLATES = ("Week1_101", "Week1_102", "Week2_201", "Week2_202")


def _screen(tmp: Path, controls_per_plate: int = 6, seed: int = 0) -> dict[str, Path]:
    """BBBC021-shaped files: per-well means keyed by plate + well, an image table (several images per well) with
    compound and concentration, an annotation compound + concentration -> MoA."""
    rng = np.random.default_rng(seed)
    signal = {m: rng.normal(0, 2, 12) for m in set(MOAS.values())}
    wells, images = [], []
    for p, plate in enumerate(PLATES):
        shift = rng.normal(0, 3, 12)
        for w in range(controls_per_plate + 12):
            cpd = "DMSO" if w < controls_per_plate else list(MOAS)[(w + p) % 6]
            conc = 0.0 if cpd == "DMSO" else [1.0, 3.0][w % 2]
            x = shift + rng.normal(0, 1, 12) + (0 if cpd == "DMSO" else signal[MOAS[cpd]])
            feats = {f"{c}_Intensity_F{i}": x[j * 4 + i] for j, c in enumerate(("Cells", "Nuclei", "Cytoplasm"))
                     for i in range(4)}
            wells.append({"Image_Metadata_Plate": plate, "Image_Metadata_Well": f"A{w:02d}", **feats,
                          "Cells_Number_Object_Number": rng.normal(100, 5), "Nuclei_Parent_Cells": 1.0,
                          "Nuclei_Neighbors_FirstClosestObjectNumber_10": rng.normal(50, 5)})
            for site in (1, 2):  # one row per image: file names differ, the well's compound does not
                images.append({"ImageNumber": len(images) + 1, "Image_FileName_DAPI": f"{plate}_{w}_s{site}.tif",
                               "Image_Metadata_Plate_DAPI": plate, "Image_Metadata_Well_DAPI": f"A{w:02d}",
                               "Image_Metadata_Compound": cpd, "Image_Metadata_Concentration": conc})
    paths = {"wells": tmp / "per_well.csv", "image": tmp / "image.csv", "moa": tmp / "moa.csv"}
    pd.DataFrame(wells).to_csv(paths["wells"], index=False)
    pd.DataFrame(images).to_csv(paths["image"], index=False)
    pd.DataFrame([{"compound": c, "concentration": d, "moa": m} for c, m in MOAS.items() for d in (1.0, 3.0)]
                 + [{"compound": "DMSO", "concentration": 0.0, "moa": "DMSO"}]).to_csv(paths["moa"], index=False)
    return paths


def test_infer_proposes_the_joins_and_the_fields_practice(tmp_path: Path) -> None:
    files = _screen(tmp_path)
    layout, reasons = infer_layout(files["wells"], metadata=[files["image"]], annotation=files["moa"],
                                   relative_to=tmp_path)
    (join,) = layout.metadata
    assert dict(join.on) == {"Image_Metadata_Plate": "Image_Metadata_Plate_DAPI",
                             "Image_Metadata_Well": "Image_Metadata_Well_DAPI"}
    assert set(join.columns) == {"Image_Metadata_Compound", "Image_Metadata_Concentration"}
    assert join.file == "image.csv"  # relative to the layout's folder
    assert layout.group == "Image_Metadata_Compound"
    assert layout.treatment == ("Image_Metadata_Compound", "Image_Metadata_Concentration")
    assert layout.controls is not None and layout.controls.values == ("DMSO",)
    assert layout.labels.source == "annotation" and layout.labels.column == "moa"
    assert dict(layout.labels.on) == {"Image_Metadata_Compound": "compound",
                                      "Image_Metadata_Concentration": "concentration"}
    assert layout.batch_from_plate == "^([^_]+)_"
    assert layout.normalize == "robust_z_pooled"  # 6 controls per plate
    assert layout.whiten == 0 and layout.align_batches is None  # 24 control wells: too few to whiten
    blocked = {"Cells_Number_Object_Number", "Nuclei_Parent_Cells", "Nuclei_Neighbors_FirstClosestObjectNumber_10"}
    assert all(any(x == f"^{c}$" for x in layout.exclude) for c in blocked)
    assert any("pycytominer" in r for r in reasons) and any("pooled" in r for r in reasons)
    # the written layout reads the files without edits
    path = tmp_path / "layout.toml"
    assert moa_main(["layout", "infer", str(files["wells"]), "--metadata", str(files["image"]), "--annotation",
                     str(files["moa"]), "--out", str(path)]) == 0
    data = load_profiles(files["wells"], load_layout(path))
    assert not blocked & set(data.feature_columns) and len(data.feature_columns) == 12
    assert set(data.targets.columns) == {"tubulin", "HDAC", "EGFR"}  # DMSO's own annotation is no MoA
    assert int(data.is_control.sum()) == 24 and set(data.features["batch"]) == {"Week1", "Week2"}


def test_infer_join_needs_plate_and_well(tmp_path: Path) -> None:
    files = _screen(tmp_path)
    pd.read_csv(files["image"]).drop(columns=["Image_Metadata_Well_DAPI"]).to_csv(files["image"], index=False)
    with pytest.raises(DataError, match="no well column"):
        infer_layout(files["wells"], metadata=[files["image"]])


def test_practice_rules() -> None:
    assert practice.scaling_rule(np.array([6, 6, 7]))[0] == "robust_z_pooled"
    assert practice.scaling_rule(np.array([40, 40]))[0] == "robust_z"
    assert practice.whitening_rule(60, 400)[0] == 0
    assert practice.whitening_rule(330, 499)[0] == 329 and practice.whitening_rule(330, 100)[0] == 100
    assert practice.batch_from_plate_names(["Week1_1", "Week1_2", "Week2_3", "Week2_4"]) == "^([^_]+)_"
    assert practice.batch_from_plate_names(["SQ1", "SQ2", "SQ3", "SQ4"]) is None
    assert practice.batch_from_plate_names(["A_1", "B_2", "C_3", "D_4"]) is None  # one plate per prefix
    # pycytominer's own lists: its default blocklist (Cell Painting names) and its per-object bookkeeping columns
    cols = ["Nuclei_Correlation_Manders_AGP_DNA", "Cells_Parent_Nuclei", "Cytoplasm_Number_Object_Number",
            "Cells_AreaShape_Area", "Nuclei_Intensity_MeanIntensity_DNA"]
    assert practice.pycytominer_blocklist(cols) == cols[:3]


@pytest.mark.parametrize("method", [m if m in ("none", "robust_z") else pytest.param(m, marks=pytest.mark.slow)
                                    for m in NORMALIZATIONS])  # z and robust_z_pooled train in the full suite
def test_every_documented_normalisation_trains(tmp_path: Path, method: str) -> None:
    files = _screen(tmp_path)
    layout = tmp_path / "layout.toml"
    assert moa_main(["layout", "infer", str(files["wells"]), "--metadata", str(files["image"]), "--annotation",
                     str(files["moa"]), "--out", str(layout)]) == 0
    bundle = tmp_path / "b"
    assert moa_main(["train", "--features", str(files["wells"]), "--layout", str(layout), "--model", "knn",
                     "--normalize", method, "--folds", "2", "--out", str(bundle)]) == 0
    assert load_layout_from_bundle(bundle).normalize == method


def load_layout_from_bundle(path: Path):
    from moa_predict.bundle import load_bundle

    return load_bundle(path).layout


@pytest.mark.parametrize("name", [pytest.param("resnet", marks=pytest.mark.slow), "mlp", "cnn1d", "logreg",
                                  pytest.param("blend", marks=pytest.mark.slow)])  # the two largest: full suite
def test_blocks_without_pca_work_for_every_model(tmp_path: Path, name: str) -> None:
    from moa_predict.models.registry import make_model
    from moa_predict.training.train import train_bundle

    files = _screen(tmp_path)
    layout, _ = infer_layout(files["wells"], metadata=[files["image"]], annotation=files["moa"])
    layout = dataclasses.replace(layout, blocks=tuple(dataclasses.replace(b, pca=0) for b in layout.blocks))
    data = load_profiles(files["wells"], layout)
    params = ({"members": [["resnet", {"epochs": 2, "keep_raw": False, "variance_threshold": None}],
                           ["logreg", {"epochs": 2}]], "weights": [0.5, 0.5], "n_jobs": 1} if name == "blend" else
              {"epochs": 2, **({"keep_raw": False, "variance_threshold": None} if name != "logreg" else {})})
    bundle, _ = train_bundle(make_model(name, **params), data, cv=False, progress=False, reference=False,
                             gene_only=False)
    proba = bundle.predict_proba(data.features)
    assert proba.shape == (len(data.features), 3) and np.isfinite(proba).all()


def test_a_block_without_pca_enters_as_its_columns() -> None:
    """keep_raw=False keeps PCA components only; a block with pca = 0 then enters as its own columns, in numpy
    and in the torch transform used for attributions alike."""
    import torch

    from moa_predict.data.profiles.layout import ModelInputs
    from moa_predict.features.torch_transforms import TorchMoAPreprocessor
    from moa_predict.features.transforms import MoAPreprocessor

    rng = np.random.default_rng(0)
    cols = [f"Cells_F{i}" for i in range(5)] + [f"Nuclei_F{i}" for i in range(4)]
    X = pd.DataFrame(rng.normal(size=(40, 9)), columns=cols)
    inputs = ModelInputs(blocks={"Cells": cols[:5], "Nuclei": cols[5:]}, pca={"Cells": 2, "Nuclei": 0},
                         single_label=True)
    pre = MoAPreprocessor(keep_raw=False, variance_threshold=None, meta=False)
    out = pre.fit_transform(X, inputs=inputs)
    assert out.shape == (40, 2 + 4)
    np.testing.assert_allclose(out[:, 2:], pre.rankgauss_block(X)[:, 5:], atol=1e-6)
    torch_out = TorchMoAPreprocessor(pre)(torch.tensor(X.to_numpy(np.float32))).detach().numpy()
    np.testing.assert_allclose(torch_out, out, atol=1e-4)


def test_bundle_keeps_its_joins(tmp_path: Path) -> None:
    """A bundle trained through a layout with an image-table join predicts the raw per-well file as it is (the
    join is stored in the bundle), and an upload that carries the joined columns itself keeps them."""
    from moa_predict.bundle import load_bundle

    files = _screen(tmp_path)
    layout = tmp_path / "layout.toml"
    assert moa_main(["layout", "infer", str(files["wells"]), "--metadata", str(files["image"]), "--annotation",
                     str(files["moa"]), "--out", str(layout)]) == 0
    bundle_dir = tmp_path / "b"
    assert moa_main(["train", "--features", str(files["wells"]), "--layout", str(layout), "--model", "knn",
                     "--folds", "2", "--out", str(bundle_dir)]) == 0
    files["image"].unlink()  # the bundle must not need the image table any more
    bundle = load_bundle(bundle_dir)
    data = bundle.read_dataset(files["wells"])
    assert int(data.is_control.sum()) == 24 and data.features["Image_Metadata_Compound"].notna().all()
    preds = tmp_path / "preds.csv"
    assert moa_main(["predict", "--bundle", str(bundle_dir), "--features", str(files["wells"]), "--out", str(preds),
                     "--level", "treatment", "--quiet"]) == 0
    assert len(pd.read_csv(preds)) == 6 * 2  # every treatment (compound x concentration) of the raw file
    carried = data.features[["Image_Metadata_Compound", "Image_Metadata_Concentration"]].reset_index(drop=True)
    upload = pd.concat([pd.read_csv(files["wells"]), carried], axis=1)
    upload.to_csv(tmp_path / "joined.csv", index=False)
    np.testing.assert_allclose(bundle.read_dataset(tmp_path / "joined.csv").features[bundle.feature_columns],
                               data.features[bundle.feature_columns], atol=1e-6)
