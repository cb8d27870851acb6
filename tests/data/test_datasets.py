"""Dataset directories: exact sizes, digests, determinism, no leakage, hostile user files, the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.datasets import FILES, NAMES, build_dataset, check_names_file, read_manifest, validate_file
from pipelines.errors import DataQualityError, InputError
from pipelines.io import sha256_file
from pipelines.schemas import REASONS
from pipelines.synthesis import split_targets

SMOKE = load_config("smoke")


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ds") / "smoke"
    return out, build_dataset(SMOKE, out)


def _digests(m: dict) -> dict[str, str]:
    return {k: v["sha256"] for k, v in m["files"].items()}


def test_smoke_dataset_has_exact_counts_and_a_full_manifest(smoke_dir: tuple[Path, dict]) -> None:
    out, m = smoke_dir
    written = [*FILES.values(), NAMES, "rejects.parquet", "manifest.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(written)
    t = split_targets(SMOKE.synthesis)
    for split, name in FILES.items():
        df = pd.read_parquet(out / name)
        # smoke mines no negatives; validation and eval carry their slice and relevant answers
        extra = ["slice", "relevant"] if split != "train" else []
        assert list(df.columns) == ["anchor", "positive", "intent", "group_id", *extra]
        assert len(df) == m["counts"][split]["total"] == sum(t[split].values())
        assert df.groupby("intent").size().to_dict() == {k: v for k, v in t[split].items() if v}
        assert m["files"][name]["sha256"] == m["digests"][name] == sha256_file(out / name)
    assert m["counts"]["train"]["total"] + m["counts"]["validation"]["total"] == SMOKE.synthesis.n_train
    assert m["counts"]["eval"]["total"] == SMOKE.synthesis.n_eval
    assert m["seed"] == SMOKE.synthesis.seed and len(m["catalog_digest"]) == 64
    assert m["config"] == SMOKE.model_dump(mode="json")
    assert m["input_rows"] == m["accepted_rows"] + m["surplus_unused"] + m["rejected"]["total"]
    assert m["leakage"] == {"eval_groups_also_in_train_or_validation": 0, "questions_seen_in_an_earlier_split": 0}
    assert m["quality_gate"]["passed"] is True
    names = pd.read_parquet(out / NAMES)
    assert list(names.columns) == ["anchor", "positive", "group_id"]
    assert m["names"] == {"pairs": len(names), "classes": names["group_id"].nunique()} and len(names) > 100
    assert m["files"][NAMES]["sha256"] == sha256_file(out / NAMES)
    assert read_manifest(out) == json.loads((out / "manifest.json").read_text())


def test_no_group_or_question_crosses_splits(smoke_dir: tuple[Path, dict]) -> None:
    out, _ = smoke_dir
    frames = {s: pd.read_parquet(out / n) for s, n in FILES.items()}
    ev = frames["eval"]
    rest = pd.concat([frames["train"], frames["validation"]])
    assert not set(ev["group_id"]) & set(rest["group_id"])
    assert not set(frames["validation"]["group_id"]) & set(frames["train"]["group_id"])
    assert not set(ev["anchor"].str.lower()) & set(rest["anchor"].str.lower())


def test_same_seed_same_digests_other_seed_different(smoke_dir: tuple[Path, dict], tmp_path: Path) -> None:
    _, first = smoke_dir
    again = build_dataset(SMOKE, tmp_path / "again")
    assert _digests(again) == _digests(first)
    other = build_dataset(load_config("smoke", sets=["synthesis.seed=43"]), tmp_path / "other")
    for name in FILES.values():
        assert _digests(other)[name] != _digests(first)[name]


def test_rejected_rows_are_replaced_from_the_margin(tmp_path: Path) -> None:
    """A tight token limit rejects some long answers (recipe cards: none at 40 tokens, too many for the spares
    at 34); the spares keep the exact targets."""
    cfg = load_config("smoke", sets=["model.max_seq_length=36", "validation.max_reject_fraction=0.5"])
    m = build_dataset(cfg, tmp_path / "d")
    assert m["rejected"]["total"] > 0 and set(m["rejected"]["by_reason"]) <= set(REASONS)
    assert m["counts"]["eval"]["total"] == cfg.synthesis.n_eval
    rejects = pd.read_parquet(tmp_path / "d" / "rejects.parquet")
    assert len(rejects) == m["rejected"]["total"] and set(rejects["reason"]) == {"too_long"}


def test_gate_fails_after_writing_rejects(tmp_path: Path) -> None:
    cfg = load_config("smoke", sets=["model.max_seq_length=16"])
    with pytest.raises(DataQualityError, match=r"rows rejected .* > validation.max_reject_fraction"):
        build_dataset(cfg, tmp_path / "d")
    rejects = pd.read_parquet(tmp_path / "d" / "rejects.parquet")
    m = read_manifest(tmp_path / "d", require_passed=False)
    assert len(rejects) == m["rejected"]["total"] > 0
    assert m["quality_gate"]["passed"] is False
    with pytest.raises(DataQualityError):
        read_manifest(tmp_path / "d")  # a failed dataset is not handed to training


def test_read_manifest_detects_missing_corrupt_and_stale(smoke_dir: tuple[Path, dict], tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"manifest\.json: no such file .*recipe-embed synthesize"):
        read_manifest(tmp_path)
    out, _ = smoke_dir
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in out.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    pd.read_parquet(copy / "eval.parquet").head(3).to_parquet(copy / "eval.parquet")  # half-written / edited
    with pytest.raises(InputError, match=r"eval\.parquet: content does not match"):
        read_manifest(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match=r"manifest\.json: not readable JSON"):
        read_manifest(copy)


def test_rerun_replaces_files_without_leftovers(tmp_path: Path) -> None:
    out = tmp_path / "d"
    build_dataset(SMOKE, out)
    build_dataset(load_config("smoke", sets=["synthesis.seed=5"]), out)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    read_manifest(out)  # digests match the second run's files


# --- user files -----------------------------------------------------------------------------------


def _pairs(n: int = 60) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "anchor": [f"What can I make with ingredient {i} and ingredient {i + 1}?" for i in range(n)],
            "positive": [f"No recipes found with these ingredient {i} and ingredient {i + 1}!" for i in range(n)],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_validate_file_formats(tmp_path: Path, suffix: str) -> None:
    df = _pairs()
    f = tmp_path / f"pairs{suffix}"
    {".csv": lambda: df.to_csv(f, index=False), ".jsonl": lambda: df.to_json(f, orient="records", lines=True),
     ".parquet": lambda: df.to_parquet(f)}[suffix]()  # fmt: skip
    m = validate_file(f, tmp_path / "out", SMOKE)
    total = sum(m["counts"][s]["total"] for s in FILES)
    assert total == len(df) and m["rejected"]["total"] == 0
    assert m["counts"]["eval"]["total"] > 0 and m["counts"]["train"]["total"] > 0
    assert m["kind"] == "validated" and m["source_digest"] == sha256_file(f)
    assert m["leakage"]["eval_groups_also_in_train_or_validation"] == 0


def test_validate_file_keeps_groups_and_given_splits(tmp_path: Path) -> None:
    df = _pairs(40)
    df["group_id"] = [f"g{i // 4}" for i in range(40)]
    df["intent"] = "ingredient_pair"
    f = tmp_path / "p.parquet"
    df.to_parquet(f)
    validate_file(f, tmp_path / "o", SMOKE)
    parts = {s: pd.read_parquet(tmp_path / "o" / n) for s, n in FILES.items()}
    seen = [set(p["group_id"]) for p in parts.values()]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    df["split"] = ["eval" if i < 10 else "train" for i in range(40)]
    df.to_parquet(f)
    m = validate_file(f, tmp_path / "o2", SMOKE)
    assert m["counts"]["eval"]["total"] == 10 and m["counts"]["train"]["total"] == 30


def test_hostile_rows_in_a_user_file_all_accounted_for(tmp_path: Path) -> None:
    lines = [json.dumps({"anchor": a, "positive": p}) for a, p in zip(_pairs(200)["anchor"], _pairs(200)["positive"],
                                                                       strict=True)]  # fmt: skip
    lines += [
        '{"anchor": "lone \\ud800", "positive": "x"}',
        '{"anchor": null, "positive": "x"}',
        '{"anchor": 7, "positive": "x"}',
        '{"anchor": "ctl \\u0007", "positive": "x"}',
        '{"positive": "no anchor key"}',
    ]
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(lines) + "\n")
    cfg = load_config("smoke", sets=["validation.max_reject_fraction=0.05"])
    m = validate_file(f, tmp_path / "o", cfg)
    assert m["input_rows"] == 205 == m["accepted_rows"] + m["rejected"]["total"]
    assert m["rejected"]["by_reason"] == {"missing": 2, "not_text": 1, "invalid_text": 2}
    rejects = pd.read_parquet(tmp_path / "o" / "rejects.parquet")
    assert sorted(rejects["row"]) == [200, 201, 202, 203, 204]  # the input line (0-based) of each
    assert "lone \\ud800" in rejects["anchor"].tolist()  # kept, escaped


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("p.txt", b"anchor,positive\n", r"p.txt: unsupported format '.txt'"),
        (
            "p.csv",
            b"question,answer\nq,a\n",
            r"p.csv: missing column\(s\) anchor, positive \(found: question, answer\)",
        ),
        ("p.csv", b"anchor,positive\n\xff\xfe,x\n", r"p.csv: not valid UTF-8"),
        ("p.parquet", b"PAR1 garbage", r"p.parquet: cannot read as parquet"),
        ("p.jsonl", b'{"anchor": "a", "positive": "b"}\n{broken\n', r"p.jsonl: line 2 is not valid JSON"),
        ("p.jsonl", b'["a", "b"]\n', r"p.jsonl: line 1 is not a JSON object"),
        ("p.jsonl", b"", r"p.jsonl: missing column\(s\) anchor, positive \(found: none\)"),
        ("p.csv", b"anchor,positive\n", r"p.csv: no rows"),
    ],
)
def test_bad_files_are_one_line_input_errors(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(InputError, match=match) as info:
        validate_file(f, tmp_path / "o", SMOKE)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        validate_file(tmp_path / "nope.jsonl", tmp_path / "o", SMOKE)
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        validate_file(tmp_path / "d.csv", tmp_path / "o", SMOKE)


def test_bad_split_values_are_an_input_error(tmp_path: Path) -> None:
    df = _pairs(4)
    df["split"] = ["train", "test", "eval", "train"]
    f = tmp_path / "p.parquet"
    df.to_parquet(f)
    with pytest.raises(InputError, match=r"split must be one of train, validation, eval; found \['test'\]"):
        validate_file(f, tmp_path / "o", SMOKE)


def test_digests_do_not_depend_on_the_process(smoke_dir: tuple[Path, dict], tmp_path: Path) -> None:
    """Same seed in a fresh interpreter with another string-hash seed: byte-identical files."""
    import os
    import subprocess
    import sys

    _, first = smoke_dir
    code = (
        "import json, sys; from pathlib import Path; from pipelines.config import load_config; "
        "from pipelines.datasets import build_dataset; "
        "m = build_dataset(load_config('smoke'), Path(sys.argv[1])); print(json.dumps(m['digests']))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p")], capture_output=True, text=True,
                          env=env, timeout=300, check=True)  # fmt: skip
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == first["digests"]


def test_the_names_file_contract_rejects_with_its_reasons() -> None:
    ok = pd.DataFrame({"anchor": ["aubergine", "eggplant"], "positive": ["eggplant", "aubergine"], "group_id": ["a"] * 2})
    check_names_file(ok)
    for bad, reason in [
        (pd.concat([ok, ok.iloc[:1]]), "duplicate"),
        (ok.assign(positive=["Aubergine!", "aubergine"]), "same_text"),
        (ok.assign(group_id=["a", "b"]), "one_class_per_name"),  # a name in two classes
        (ok.assign(group_id=["a", " "]), "blank"),
    ]:
        with pytest.raises(DataQualityError, match=f"names: written rows break the file contract: .*{reason}"):
            check_names_file(bad.reset_index(drop=True))


def test_a_users_pairs_file_gets_no_names_file(tmp_path: Path) -> None:
    src = tmp_path / "pairs.csv"
    _pairs().to_csv(src, index=False)
    m = validate_file(src, tmp_path / "d", SMOKE)
    assert NAMES not in m["files"] and "names" not in m
    assert not (tmp_path / "d" / NAMES).exists()


def test_the_hand_written_validation_questions_are_written_in_full_with_every_correct_card(tmp_path: Path) -> None:
    """``synthesis.human_dev``: validation.parquet holds every ``human_dev`` question beside the targeted rows,
    each with every correct recipe card among validation's answers; train and eval hold none."""
    from pipelines.human_eval import load_dev_questions
    from pipelines.schemas import ValidationFileSchema

    cfg = load_config("smoke", sets=["synthesis.human_dev=true"])
    m = build_dataset(cfg, tmp_path / "d")
    val = pd.read_parquet(tmp_path / "d" / "validation.parquet")
    ValidationFileSchema.validate(val)
    hand = val[val["slice"] == "human_dev"]
    assert 200 <= len(hand) == m["counts"]["validation"]["by_slice"]["human_dev"] <= len(load_dev_questions())
    assert len(val) - len(hand) == sum(split_targets(cfg.synthesis)["validation"].values())
    assert (hand["intent"] == "recipe_card").all()
    assert all(r[0] == p and len(set(r)) == len(r) for r, p in zip(hand["relevant"], hand["positive"], strict=True))
    assert sum(len(r) for r in hand["relevant"]) > 2 * len(hand)  # most questions have several correct cards
    for split in ("train", "eval"):
        df = pd.read_parquet(tmp_path / "d" / FILES[split])
        assert "slice" not in df.columns or not (df["slice"] == "human_dev").any()
