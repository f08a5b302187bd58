"""Helpers shared by the chunked-store tests (a module of its own: every test folder has a conftest)."""

from __future__ import annotations

from pathlib import Path

CHUNK = 32


def store_files(store: Path) -> dict[str, bytes]:
    """Every chunk file of a store, by its key."""
    return {str(p.relative_to(store)): p.read_bytes()
            for p in sorted((store / "0" / "c").rglob("*")) if p.is_file()}
