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
    assert list(bundled.columns) == ["name", "cuisine", "ingredients", "diet_tags", "total_time_min", "aliases"]
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


# An expectation written independently of scripts/build_catalog.py's category table: plain words that
# mark an ingredient as meat, fish, dairy or gluten, with the plant-based look-alikes excepted.
_MEAT = ("chicken", "beef", "pork", "lamb", "bacon", "ham", "turkey", "duck", "goat meat", "veal", "chorizo",
         "sausage", "prosciutto", "pancetta", "salami", "lard", "gelatin")  # fmt: skip
_FISH = ("shrimp", "prawns", "salmon", "tuna", "cod", "fish", "anchovies", "mussels", "clams", "scallops",
         "squid", "crab", "lobster", "sardines", "mackerel", "halibut", "sea bass", "snapper", "bonito",
         "oyster sauce", "worcestershire")  # fmt: skip
_DAIRY = ("butter", "milk", "cream", "cheese", "yogurt", "ghee", "paneer", "mozzarella", "parmesan", "feta",
          "ricotta", "mascarpone", "gruyere", "brie", "halloumi", "khoya", "malai", "kefir", "whey")  # fmt: skip
_PLANT_LOOKALIKES = ("vegan ", "peanut butter", "almond butter", "almond milk", "oat milk", "soy milk",
                     "coconut", "cashew cream", "fish-free", "oyster mushrooms", "cream of tartar")  # fmt: skip


def _has(ings: list[str], words: tuple[str, ...]) -> bool:
    def hit(ing: str) -> bool:
        if any(p in ing for p in _PLANT_LOOKALIKES):
            return False
        return any(re.search(rf"\b{re.escape(w)}\b", ing) for w in words)

    return any(hit(i) for i in ings)


def test_diet_tags_are_consistent_with_ingredients(bundled: pd.DataFrame) -> None:
    for ings, tags in zip(bundled["ingredients"], bundled["diet_tags"], strict=True):
        meat, fish, dairy = _has(ings, _MEAT), _has(ings, _FISH), _has(ings, _DAIRY)
        if meat or fish:
            assert "vegetarian" not in tags and "vegan" not in tags, ings
        if meat:
            assert "pescatarian" not in tags, ings
        if dairy:
            assert "dairy-free" not in tags and "vegan" not in tags, ings
        if "egg" in ings:
            assert "egg-free" not in tags and "vegan" not in tags, ings
        if "vegan" in tags:
            assert "vegetarian" in tags and "dairy-free" in tags and "egg-free" in tags
    by_dish = {n.split("'s ", 1)[1]: t for n, t in zip(bundled["name"], bundled["diet_tags"], strict=True)}
    # Known dishes, by their core ingredients (extras never make a dish less vegetarian or vegan).
    assert "vegan" in by_dish["Masoor Dal"] and "vegan" in by_dish["Guacamole"]
    assert "vegetarian" in by_dish["Palak Paneer"] and "dairy-free" not in by_dish["Palak Paneer"]
    assert "vegetarian" not in by_dish["Butter Chicken"] and "dairy-free" not in by_dish["Butter Chicken"]
    assert "pescatarian" in by_dish["Shrimp Ceviche"]
    assert "gluten-free" not in by_dish["Spaghetti Carbonara"] and "egg-free" not in by_dish["Spaghetti Carbonara"]


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


def test_user_catalog_aliases_column(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text(
        "name,cuisine,ingredients,diet_tags,total_time_min,aliases\n"
        "Ann's Bake,Indian,Eggplant;rice,vegan,30,eggplant=aubergine;Eggplant = brinjal\n"
        "Bo's Rice,Thai,jasmine rice,vegan,25,\n"
    )
    cat = load_catalog(CatalogConfig(path=f))
    assert cat["aliases"].tolist() == [["eggplant=aubergine", "eggplant=brinjal"], []]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(json.dumps(_recipe("A", aliases=["rice=chawal"])) + "\n" + json.dumps(_recipe("B")) + "\n")
    assert load_catalog(CatalogConfig(path=jsonl))["aliases"].tolist() == [["rice=chawal"], []]


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
        (
            [_recipe("A", aliases=["rice=chawal", "tofu=bean curd"])],
            r"aliases: .*naming the row's ingredients \(row 1\)",
        ),
        ([_recipe("A", aliases=["rice=chawal"]), _recipe("B", aliases=["rice"])], r"aliases: .*\(row 2\)"),
        ([_recipe("A", aliases=["rice=  "])], r"aliases: "),
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
