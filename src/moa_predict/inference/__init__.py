"""Inference on files of any size: streamed, chunked prediction with atomic outputs."""
