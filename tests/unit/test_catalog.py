"""The bundled catalog and user catalogs (CSV / JSONL / Parquet) checked by CatalogSchema."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.catalog import bundled_catalog_path, catalog_digest, check_catalog, load_catalog
from pipelines.config import CatalogConfig
from pipelines.errors import InputError
from pipelines.io import sha256_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundled() -> pd.DataFrame:
    return load_catalog(CatalogConfig())


def test_bundled_catalog_size_and_columns(bundled: pd.DataFrame) -> None:
    assert list(bundled.columns) == ["name", "cuisine", "ingredients", "diet_tags", "total_time_min"]
    assert len(bundled) >= 300
    assert bundled["name"].is_unique
    assert len({i for ings in bundled["ingredients"] for i in ings}) >= 400
    assert bundled["total_time_min"].between(1, 24 * 60).all()
    assert bundled["cuisine"].nunique() >= 10


def test_bundled_names_follow_the_seed_style(bundled: pd.DataFrame) -> None:
    pattern = re.compile(r"^[A-Z][\w-]*'s [A-Z]")
    assert bundled["name"].map(lambda n: bool(pattern.match(n))).all()
    for ing in ("curry leaf", "rice cakes", "indian cottage cheese (paneer)", "red lentils/masoor"):
        assert any(ing in ings for ings in bundled["ingredients"]), ing


def test_diet_tags_are_consistent_with_ingredients(bundled: pd.DataFrame) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_catalog as bc
    finally:
        sys.path.pop(0)
    for ings, tags in zip(bundled["ingredients"], bundled["diet_tags"], strict=True):
        cats = {bc.CATEGORY_OF[i] for i in ings}
        if "vegan" in tags:
            assert "vegetarian" in tags and not cats & {"meat", "seafood", "dairy", "egg", "honey"}
        if "vegetarian" in tags:
            assert not cats & {"meat", "seafood"}
        if "gluten-free" in tags:
            assert "gluten" not in cats
        if "dairy-free" in tags:
            assert "dairy" not in cats
        assert ("vegetarian" in tags) == (not cats & {"meat", "seafood"})


def test_generator_reproduces_the_committed_file(tmp_path: Path) -> None:
    import subprocess

    out = tmp_path / "recipes.jsonl"
    subprocess.run([sys.executable, str(ROOT / "scripts/build_catalog.py"), "--out", str(out)], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    assert sha256_file(out) == sha256_file(bundled_catalog_path())


def test_catalog_digest_is_the_file_sha(tmp_path: Path) -> None:
    assert catalog_digest(CatalogConfig()) == sha256_file(bundled_catalog_path())
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps(_recipe("A's Dal")) + "\n")
    assert catalog_digest(CatalogConfig(path=f)) == sha256_file(f)
    with pytest.raises(InputError, match="cannot read catalog"):
        catalog_digest(CatalogConfig(path=tmp_path / "missing.csv"))


def _recipe(name: str, **kw: object) -> dict:
    base = {"name": name, "cuisine": "Indian", "ingredients": ["rice", "Curry Leaf"], "diet_tags": ["vegan"],
            "total_time_min": 20}  # fmt: skip
    base.update(kw)
    return base


def test_user_catalog_csv_with_separated_lists(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text(
        "name,cuisine,ingredients,diet_tags,total_time_min\n"
        "Ann's Dal,Indian,red lentils; turmeric ;ghee,vegetarian;gluten-free,30\n"
        "Bo's Rice,Thai,jasmine rice|coconut milk,vegan|gluten-free,25\n"
        "Cy's Toast,French,bread,,10\n"
    )
    cat = load_catalog(CatalogConfig(path=f))
    assert cat["ingredients"].tolist() == [["red lentils", "turmeric", "ghee"], ["jasmine rice", "coconut milk"],
                                           ["bread"]]  # fmt: skip
    assert cat["diet_tags"].tolist() == [["vegetarian", "gluten-free"], ["vegan", "gluten-free"], []]
    assert cat["cuisine"].tolist() == ["indian", "thai", "french"]
    assert cat["total_time_min"].tolist() == [30, 25, 10]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_user_catalog_jsonl_and_parquet(tmp_path: Path, suffix: str) -> None:
    df = pd.DataFrame([_recipe("A's Dal"), _recipe("B's Soup", ingredients=["leek"], diet_tags=[])])
    f = tmp_path / f"c{suffix}"
    if suffix == ".jsonl":
        df.to_json(f, orient="records", lines=True)
    else:
        df.to_parquet(f)
    cat = load_catalog(CatalogConfig(path=f))
    assert cat["ingredients"].tolist() == [["rice", "curry leaf"], ["leek"]]
    assert cat["diet_tags"].tolist() == [["vegan"], []]


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([_recipe("A's Dal"), _recipe("a's dal ")], r"duplicate name\(s\) .*A's Dal.*rows 1, 2"),
        ([_recipe("A's Dal", ingredients=[])], r"ingredients: empty ingredient list \(row 1\)"),
        ([_recipe("A's Dal"), _recipe("B", ingredients=["ok", "  "])], r"empty ingredient list \(row 2\)"),
        ([_recipe("  ")], r"name: is blank \(row 1\)"),
        ([_recipe("A", total_time_min=-5)], r"total_time_min"),
        ([_recipe("A", diet_tags=5)], r"diet_tags is not a list"),
    ],
)
def test_bad_user_catalogs_give_one_clear_line(tmp_path: Path, rows: list, match: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=match) as info:
        load_catalog(CatalogConfig(path=f))
    msg = str(info.value)
    assert msg.startswith(f"{f}: invalid catalog:") and "\n" not in msg


def test_missing_columns_and_bad_files(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text("name,cuisine\nA,B\n")
    with pytest.raises(InputError, match=r"missing column\(s\) ingredients, diet_tags, total_time_min"):
        load_catalog(CatalogConfig(path=f))
    with pytest.raises(InputError, match="no such file"):
        load_catalog(CatalogConfig(path=tmp_path / "none.parquet"))
    bad = tmp_path / "c.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot read as parquet"):
        load_catalog(CatalogConfig(path=bad))
    empty = tmp_path / "e.csv"
    empty.write_text("name,cuisine,ingredients,diet_tags,total_time_min\n")
    with pytest.raises(InputError, match="no recipes"):
        load_catalog(CatalogConfig(path=empty))


def test_many_problems_are_summarized_on_one_line() -> None:
    df = pd.DataFrame([_recipe(f"R{i}", ingredients=[]) for i in range(12)] + [_recipe("R0")])
    with pytest.raises(InputError) as info:
        check_catalog(df, source="x")
    msg = str(info.value)
    assert "\n" not in msg and "(row 1, 2, 3, 4, 5 and 7 more)" in msg and "duplicate name(s) 'R0'" in msg
