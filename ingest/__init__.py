"""Ingest: read article files, clean them, chunk, embed and publish a new index version."""
