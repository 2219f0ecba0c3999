"""Starts bqemulator without its DuckDB `spatial` extension, which it would download (offline: abort).

GEOGRAPHY columns are unsupported as a result; the kit uses none.
"""

from bqemulator.storage import engine

engine.DuckDBEngine._load_spatial = lambda self: None

from bqemulator.cli import main  # noqa: E402  (must import after the patch)

main()
