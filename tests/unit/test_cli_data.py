"""``recipe-embed synthesize`` / ``validate``: outputs, counts table, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def test_synthesize_writes_the_dataset_and_prints_counts(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    r = runner.invoke(app, ["synthesize", "--out", str(out), "--profile", "smoke"])
    assert r.exit_code == 0, r.output
    m = _manifest(out)
    for word in ("ingredient_pair", "quick_recipes", "accepted", "rejected", "train", "validation", "eval"):
        assert word in r.output
    assert f"{m['counts']['train']['by_intent']['ingredient_pair']:,}" in r.output
    assert "0 shared groups" in r.output
    assert (out / "validation.parquet").exists() and (out / "rejects.parquet").exists()


def test_seed_option_and_set_reach_the_config(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["synthesize", "--out", str(a), "-p", "smoke", "--set", "synthesis.seed=3", "--seed", "7"]
    assert runner.invoke(app, args).exit_code == 0  # --seed wins over --set
    r = runner.invoke(app, ["synthesize", "--out", str(b), "-p", "smoke", "--set", "synthesis.n_eval=60"])
    assert r.exit_code == 0, r.output
    assert _manifest(a)["seed"] == 7 and _manifest(a)["config"]["synthesis"]["seed"] == 7
    assert _manifest(b)["counts"]["eval"]["total"] == 60


def test_config_file_option(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("profile: smoke\nsynthesis:\n  n_train: 100\n  n_eval: 40\n")
    r = runner.invoke(app, ["synthesize", "--out", str(tmp_path / "d"), "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    m = _manifest(tmp_path / "d")
    assert m["counts"]["train"]["total"] + m["counts"]["validation"]["total"] == 100


def test_quality_gate_exit_1_prints_table_and_reason(tmp_path: Path) -> None:
    out = tmp_path / "d"
    r = runner.invoke(app, ["synthesize", "--out", str(out), "-p", "smoke", "--set", "model.max_seq_length=16"])
    assert r.exit_code == 1
    assert "too_long" in r.output and "recipe-embed: error:" in r.output
    assert "max_reject_fraction" in r.output.splitlines()[-1]
    assert len(pd.read_parquet(out / "rejects.parquet")) == _manifest(out)["rejected"]["total"]


def test_bad_config_exit_2(tmp_path: Path) -> None:
    r = runner.invoke(app, ["synthesize", "--out", str(tmp_path), "--set", "synthesis.n_eval=0"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "synthesis.n_eval" in r.output


def test_validate_accepts_a_file_and_reports_rejects(tmp_path: Path) -> None:
    f = tmp_path / "pairs.csv"
    rows = [(f"Question number {i} about kale?", f"Answer {i}.") for i in range(120)]
    rows += [("", "blank anchor"), ("Question number 0 about kale?", "Answer 0.")]
    pd.DataFrame(rows, columns=["anchor", "positive"]).to_csv(f, index=False)
    r = runner.invoke(app, ["validate", str(f), "--out", str(tmp_path / "o"), "--set",
                            "validation.max_reject_fraction=0.05"])  # fmt: skip
    assert r.exit_code == 0, r.output
    m = _manifest(tmp_path / "o")
    assert m["rejected"]["by_reason"] == {"missing": 1, "duplicate": 1}  # CSV empty cell -> null
    assert "duplicate" in r.output and "122 rows = 120 accepted + 2 rejected" in r.output.replace("\n", " ")


def test_validate_bad_file_exit_2_one_line_no_traceback(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("q,a\nx,y\n")
    r = runner.invoke(app, ["validate", str(f), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert r.output.strip() == f"recipe-embed: error: {f}: missing column(s) anchor, positive (found: q, a)"
    r = runner.invoke(app, ["validate", str(tmp_path / "absent.parquet"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no such file" in r.output and "Traceback" not in r.output
