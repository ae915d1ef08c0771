"""Data flows one way: cli → reports → analysis | ingest → engines → journal → errors.

A lower layer never imports a higher one; only toolkit/journal imports deltalake, only
engines/duckdb_engine.py imports duckdb (and journal/prepare.py, for json_valid alone), and nothing
in toolkit imports marimo.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "toolkit"
RANK = {"errors": 0, "journal": 1, "engines": 2, "analysis": 3, "ingest": 3, "reports": 4, "cli": 5}
# the journal's check that appended cells are JSON calls DuckDB's json_valid on a locked, file-less
# in-memory connection of its own: the journal cannot import the engines, a layer above it
DUCKDB_MODULES = {"engines/duckdb_engine.py", "journal/prepare.py"}


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "toolkit" and len(parts) > 1 and parts[1] in RANK else None


SOURCES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_upward_imports(path: Path) -> None:
    own = path.relative_to(PKG).parts[0].removesuffix(".py")
    if own not in RANK:
        return
    for mod in imports(path):
        target = layer(mod)
        if target is not None and target != own:
            assert RANK[target] < RANK[own] or (own, target) == ("cli", "cli"), f"{path.name} imports {mod}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_engine_choke_points(path: Path) -> None:
    mods = {m.split(".")[0] for m in imports(path)}
    rel = path.relative_to(PKG).as_posix()
    if "duckdb" in mods:
        assert rel in DUCKDB_MODULES, f"{rel} imports duckdb"
    if "deltalake" in mods:
        assert rel.startswith("journal/"), f"{rel} imports deltalake"
    assert "marimo" not in mods, f"{rel} imports marimo"


def test_the_check_sees_imports() -> None:
    assert "duckdb" in imports(PKG / "engines" / "duckdb_engine.py")
    assert any(layer(m) == "journal" for m in imports(PKG / "engines" / "polars_engine.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_only_the_polars_engine_builds_scans(path: Path) -> None:
    rel = path.relative_to(PKG).as_posix()
    text = path.read_text(encoding="utf-8")
    if rel != "engines/polars_engine.py":
        assert "scan_parquet(" not in text and "scan_delta(" not in text, f"{rel} builds a Polars scan"
