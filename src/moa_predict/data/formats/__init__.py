"""File formats: reading and writing tables (CSV, Parquet, GCTX, GCT, h5ad), in row chunks or cluster partitions,
atomic writes, and fitted estimators as JSON + arrays. What a file holds is for ``data.profiles.reader`` to say."""
