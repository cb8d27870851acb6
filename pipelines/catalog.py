"""The recipe catalog: the bundled one (``pipelines/data/recipes.jsonl``) or a user's CSV/JSONL/Parquet.

A catalog has the columns ``name``, ``cuisine``, ``ingredients`` (list of str), ``diet_tags`` (list of
str) and ``total_time_min`` (int), and optionally ``aliases``: alternate names of the row's
ingredients as ``ingredient=alternate`` entries (``["eggplant=aubergine", "eggplant=brinjal"]``);
they add to the bundled table ``pipelines/data/aliases.json``. In CSV, list columns are ``;``- or
``|``-separated strings (``eggplant=aubergine;eggplant=brinjal``).
User catalogs are checked with :class:`pipelines.schemas.CatalogSchema`; any problem is one
:class:`~pipelines.errors.InputError` line naming the file.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipelines.config import CatalogConfig
from pipelines.errors import InputError
from pipelines.io import read_table, sha256_file
from pipelines.schemas import CATALOG_COLUMNS, OPTIONAL_CATALOG_COLUMNS, CatalogSchema

_MAX_PROBLEMS_SHOWN = 5


def bundled_catalog_path() -> Path:
    return Path(str(resources.files("pipelines") / "data" / "recipes.jsonl"))


def catalog_path(cfg: CatalogConfig) -> Path:
    return Path(cfg.path) if cfg.path is not None else bundled_catalog_path()


def catalog_digest(cfg: CatalogConfig) -> str:
    """sha256 of the catalog file's bytes (bundled or user)."""
    path = catalog_path(cfg)
    try:
        return sha256_file(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read catalog ({exc.strerror or exc})") from exc


def load_catalog(cfg: CatalogConfig) -> pd.DataFrame:
    """The checked catalog, one row per recipe, sorted as in the file."""
    path = catalog_path(cfg)
    if cfg.path is None:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        df = pd.DataFrame(rows, columns=list(CATALOG_COLUMNS))
    else:
        df = read_table(path, required=CATALOG_COLUMNS)
    return check_catalog(df, source=str(path))


def _to_list(v: Any) -> Any:
    """Normalize a list cell: CSV strings split on ``;``/``|``, Parquet arrays to lists, JSON lists kept."""
    if isinstance(v, str):
        sep = ";" if ";" in v else "|"
        return [part.strip() for part in v.split(sep) if part.strip()]
    if isinstance(v, np.ndarray | tuple):
        return list(v)
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return []
    return v


def check_catalog(df: pd.DataFrame, source: str = "catalog") -> pd.DataFrame:
    """Coerce list columns, validate with ``CatalogSchema`` (lazy) and raise one line on failure."""
    if df.empty:
        raise InputError(f"{source}: catalog has no recipes")
    out = df[[c for c in (*CATALOG_COLUMNS, *OPTIONAL_CATALOG_COLUMNS) if c in df.columns]].copy()
    for col in ("name", "cuisine"):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    for col in ("ingredients", "diet_tags", *[c for c in OPTIONAL_CATALOG_COLUMNS if c in out.columns]):
        out[col] = out[col].astype(object).map(_to_list)
    try:
        checked = CatalogSchema.validate(out, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise InputError(f"{source}: invalid catalog: {_describe(exc.failure_cases, out)}") from exc
    checked = checked.reset_index(drop=True)
    checked["name"] = checked["name"].str.strip()
    checked["cuisine"] = checked["cuisine"].str.strip().str.lower()
    checked["ingredients"] = checked["ingredients"].map(lambda xs: [x.strip().lower() for x in xs])
    checked["diet_tags"] = checked["diet_tags"].map(lambda xs: [x.strip().lower() for x in xs])
    checked["total_time_min"] = checked["total_time_min"].astype(int)
    if "aliases" in checked.columns:
        checked["aliases"] = checked["aliases"].map(_clean_aliases)
    else:
        checked["aliases"] = [[] for _ in range(len(checked))]
    return checked


def _clean_aliases(entries: list[str]) -> list[str]:
    out = []
    for entry in entries:
        canonical, _, alternate = entry.partition("=")
        out.append(f"{canonical.strip().lower()}={alternate.strip()}")
    return out


_LABELS = {
    "not_nullable": "is empty",
    "blank": "is blank",
    "duplicate_name": "duplicate name",
    "empty_ingredients": "empty ingredient list",
    "bad_diet_tags": "diet_tags is not a list of tags",
    "bad_aliases": "aliases is not a list of ingredient=alternate entries naming the row's ingredients",
}


def _describe(fc: pd.DataFrame, df: pd.DataFrame) -> str:
    """pandera failure cases -> ``3 problem(s): row 4 ingredients: empty ingredient list; ...``."""
    parts: list[str] = []
    fc = fc.copy()
    fc.loc[fc["check"] == "bad_aliases", "column"] = "aliases"  # a row-level check: one case per column
    fc = fc.drop_duplicates(subset=["column", "check", "index"])
    for (col, check), grp in fc.groupby(["column", "check"], sort=False, dropna=False):
        label = _LABELS.get(str(check), str(check))
        rows = [int(i) + 1 for i in grp["index"].dropna()]
        if check == "duplicate_name":
            names = sorted({str(df.at[i - 1, "name"]).strip() for i in rows})
            parts.append(f"duplicate name(s) {', '.join(map(repr, names[:3]))} (rows {_rows(rows)})")
        elif rows:
            parts.append(f"{col}: {label} (row {_rows(rows)})")
        else:
            parts.append(f"{col}: {label}")
    shown = "; ".join(parts[:_MAX_PROBLEMS_SHOWN])
    more = f"; and {len(parts) - _MAX_PROBLEMS_SHOWN} more" if len(parts) > _MAX_PROBLEMS_SHOWN else ""
    return f"{shown}{more}"


def _rows(rows: list[int]) -> str:
    head = ", ".join(map(str, rows[:5]))
    return head + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
