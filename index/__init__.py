"""The on-disk index: data model, encoder, tokenizer, stores and atomic publishing.

Both ``ingest`` (writer) and ``service`` (reader) depend on this package; it depends on neither.
"""
