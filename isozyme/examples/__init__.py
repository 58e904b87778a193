"""Bundled examples (used by ``isozyme demo`` and the docs)."""
