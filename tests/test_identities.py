"""The shipped identities of the LISH-MoA columns: names people see and lookups programs use."""

from moa_predict.data import identities

from moa_predict.data.profiles import schema


def test_tables_cover_every_feature_column():
    assert [g.feature for g in identities.genes()] == list(schema.GENE_COLUMNS)
    assert [c.feature for c in identities.cell_lines()] == list(schema.CELL_COLUMNS)
    assert len(identities.cmap_landmarks()) == 978
    assert {g.entrez for g in identities.genes()} <= identities.landmark_ids()


def test_feature_label_for_people():
    assert identities.feature_label("g-0") == "AARS1 (16)"
    assert identities.feature_label("c-0") == "HEYA8 (ovary)"
    assert identities.feature_label("c-1") == "RKO (large intestine)"
    assert identities.feature_label("cp_time") == "cp_time"
    assert identities.feature_label("g-9999") == "g-9999"


def test_feature_info_for_machines():
    assert identities.feature_info("g-0") == {"feature": "g-0", "kind": "gene", "entrez": 16, "symbol": "AARS1",
                                              "cmap_symbol": "AARS", "description": "alanyl-tRNA synthetase 1"}
    info = identities.feature_info("c-0")
    assert (info["kind"], info["cell_line"], info["tissue"], info["ccle_name"]) == (
        "cell_line", "HEYA8", "ovary", "HEYA8_OVARY")
    assert identities.feature_info("sig_id") == {"feature": "sig_id", "kind": "other"}


def test_lookups_by_entrez_and_by_current_or_old_symbol():
    assert identities.gene_by_entrez(16).feature == "g-0"
    assert identities.gene_by_entrez("388650").feature == "g-771"
    assert identities.gene_by_entrez(7157) is None  # TP53 is no L1000 landmark of the model
    assert identities.gene_by_symbol("AARS1") == identities.gene_by_symbol("aars") == identities.gene_by_entrez(16)
    assert identities.entrez_for_symbol("NOT_A_GENE") is None
    renamed = [g for g in identities.genes() if g.symbol != g.cmap_symbol]
    assert len(renamed) == 34
    assert all(identities.gene_by_symbol(g.cmap_symbol) == g for g in renamed)
