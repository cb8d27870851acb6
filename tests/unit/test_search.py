"""``recipe-embed search``: bad input is one line and exit 2; the index ranks, caches and is reused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import load_config
from pipelines.search import build_index, card_text, run_search, search


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"RECIPE_EMBED_HOME": str(home), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "search", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("",), "empty query"),
        (("  ",), "empty query"),
        (("tofu", "-k", "0"), "-k must be a positive"),
        (("tofu", "--precision", "int4"), "unknown precision 'int4'"),
        (("tofu", "--model", "bundled:all-MiniLM-L6-v2", "--dim", "100"), "dim 100 was not trained"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], needle: str, tmp_path: Path) -> None:
    got = _cli(*args, home=tmp_path)
    assert got.returncode == 2, got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], got.stderr


def test_search_ranks_by_precision_and_caches_the_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    full = rng.normal(size=(40, 32)).astype(np.float32)
    cards = [f"card {i}" for i in range(40)]
    query = full[7] + 0.01 * rng.normal(size=32).astype(np.float32)
    for precision in ("float32", "int8", "binary"):
        index = build_index(full, cards, 16, precision, tmp_path, "d" * 64, normalize=True)
        hits = search(index, query, 3, normalize=True, rescore=precision != "float32")
        assert hits[0][0] == 7 and len(hits) == 3
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        cached = tmp_path / "search-index" / f"{'d' * 16}-d16-{precision}.npz"
        assert cached.exists()
        again = build_index(np.zeros_like(full), cards, 16, precision, tmp_path, "d" * 64, normalize=True)
        np.testing.assert_array_equal(again.vectors, index.vectors)  # read back, not recomputed


def test_search_prints_cards_from_the_bundled_catalog(tmp_path: Path) -> None:
    cfg = load_config("smoke", overrides={"paths": {"data_dir": str(tmp_path)}})
    lines = run_search(cfg, "quick vegan thai dinner with tofu", model="bundled:all-MiniLM-L6-v2", dim=128, k=3)
    assert len(lines) == 4 and "128 dims float32" in lines[0]
    assert all("min" in line and "Ingredients:" in line for line in lines[1:])
    assert list(tmp_path.glob("serving/*/search-index/*-full.npy"))


def test_card_text() -> None:
    import pandas as pd

    row = pd.Series(
        {
            "name": "Tofu Pad Thai",
            "cuisine": "thai",
            "ingredients": ["tofu", "rice noodles"],
            "diet_tags": ["vegan"],
            "total_time_min": 25,
        }
    )
    assert card_text(row) == "Tofu Pad Thai: thai, 25 min, vegan. Ingredients: tofu, rice noodles."


def test_no_champion_yet_is_exit_2(tmp_path: Path) -> None:
    got = _cli("quick vegan thai dinner with tofu", home=tmp_path)  # a fresh store: nothing registered
    assert got.returncode == 2, got.stderr
    assert "no champion yet" in got.stderr.strip().splitlines()[-1]
