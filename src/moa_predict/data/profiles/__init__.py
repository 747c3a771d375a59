"""Profiles: what a table's columns are (``layout``, ``layout_infer``, LISH-MoA's ``schema``), the one reader of any
table into a ``Dataset`` (``reader.load_profiles``), validation, genes matched by identity, and normalisation."""
