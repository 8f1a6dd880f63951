"""The answer engine (retrieval -> answer composition -> conversations) and its HTTP service."""
