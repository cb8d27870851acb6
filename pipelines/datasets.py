"""Dataset directories: synthesize or read pairs, validate, split, write atomically with a manifest.

``DIR/train.parquet``, ``DIR/validation.parquet``, ``DIR/eval.parquet`` hold accepted pairs
(``anchor, positive, intent, group_id``); synthesized train and validation files add a mined hard
``negative`` (column order ``anchor, positive, negative``, see :mod:`pipelines.negatives`) and
``eval.parquet`` adds ``slice`` (``seen_wording``, ``unseen_wording``, ``recipe_card``, ``human``,
``unseen_ingredient``, ``other_catalog``; a user's file: its own ``slice`` column, else ``unspecified``) and, synthesized,
``relevant`` (every recipe card correct for a recipe-card question); ``DIR/rejects.parquet`` every rejected row with its
``split``, its input ``row`` and one ``reason``; ``DIR/manifest.json`` the counts, the sha256 of
each file, the seed, the catalog digest and the resolved config. Every file, the manifest included,
is first written under a temp name; only when all are written (so a full disk or a kill changes
nothing) is the old manifest removed and the files renamed into place, the manifest last, so no
manifest ever describes files that were not finished (``read_manifest`` also re-checks every digest).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines import __version__
from pipelines.catalog import catalog_digest, load_catalog
from pipelines.config import PipelineConfig
from pipelines.errors import DataQualityError, InputError, storage_error
from pipelines.io import StagedFiles, read_json_object, read_jsonl_records, read_table, sha256_file, to_parquet
from pipelines.schemas import (
    PAIR_COLUMNS,
    SPLITS,
    EvalFileSchema,
    NamesFileSchema,
    TrainFileSchema,
    ValidationFileSchema,
    leaked_keys,
    normalize_text,
)
from pipelines.synthesis import (
    ALIAS_INTENT,
    ANSWER_COLUMNS,
    EXTRA_EVAL_SLICES,
    VALIDATION_SLICE,
    is_correct_answer,
    name_pairs,
    relevant_cards,
    split_targets,
    synthesize,
)
from pipelines.validation import ValidationResult, check_splits, load_tokenizer, validate_pairs

MANIFEST = "manifest.json"
FILES = {"train": "train.parquet", "validation": "validation.parquet", "eval": "eval.parquet"}
REJECTS = "rejects.parquet"
NAMES = "names.parquet"
"""Synthesized datasets only: every training name pair with its synonym class (the names stage's input)."""
SYNTH_MARGIN = 0.01
"""Spare pairs per (split, intent), as a share of the target (+2), to replace rejected rows."""

Progress = Callable[[str], None] | None


def build_dataset(cfg: PipelineConfig, out_dir: Path, progress: Progress = None) -> dict[str, Any]:
    """Synthesize from the catalog, validate, keep exactly the targeted counts, write; return the manifest."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    catalog = load_catalog(cfg.catalog)
    digest = catalog_digest(cfg.catalog)
    timings["catalog_s"] = time.perf_counter() - t

    t = time.perf_counter()
    pairs = synthesize(
        catalog,
        cfg.synthesis,
        margin=SYNTH_MARGIN,
        answer_budget_chars=max(60, cfg.model.max_seq_length * 2),
        progress=progress,
    )
    names = name_pairs(catalog, cfg.synthesis)
    timings["synthesize_s"] = time.perf_counter() - t

    t = time.perf_counter()
    if progress:
        progress(f"validating {len(pairs):,} pairs")
    result = validate_pairs(
        pairs[[*PAIR_COLUMNS, "split"]],
        max_tokens=cfg.model.max_seq_length,
        tokenizer=load_tokenizer(cfg.model.base_model),
        max_text_bytes=cfg.validation.max_text_bytes,
    )
    timings["validate_s"] = time.perf_counter() - t

    targets = split_targets(cfg.synthesis)
    accepted = result.accepted
    for col in ("slice", *ANSWER_COLUMNS):
        accepted[col] = pairs[col].to_numpy()[result.accepted_rows]
    cell = accepted.groupby(["split", "intent"], sort=False).cumcount().to_numpy()
    per_cell = pd.Series({(s, i): n for s, by_intent in targets.items() for i, n in by_intent.items()})
    cells = pd.MultiIndex.from_arrays([accepted["split"], accepted["intent"]])
    wanted = per_cell.reindex(cells).fillna(0).to_numpy(dtype=np.int64)
    keep = cell < wanted if len(accepted) else np.zeros(0, dtype=bool)
    # Written in full, outside the per-intent targets: the extra eval slices, the hand-written validation
    # questions and the alias pairs.
    full = [*EXTRA_EVAL_SLICES, VALIDATION_SLICE]
    keep |= (accepted["slice"].isin(full) | (accepted["intent"] == ALIAS_INTENT)).to_numpy()
    surplus = int((~keep).sum())
    kept = accepted[keep].reset_index(drop=True)
    relevant: list[list[str] | None] = [None] * len(kept)
    for split in ("validation", "eval"):  # each split's recipe cards are judged among that split's cards
        rows = np.flatnonzero((kept["split"] == split).to_numpy())
        if len(rows):
            part = kept.iloc[rows]
            cols = (part[c].tolist() for c in ("intent", "positive", *ANSWER_COLUMNS))
            for row, texts in zip(rows, relevant_cards(*cols), strict=True):
                relevant[row] = texts
    kept["relevant"] = pd.Series(relevant, index=kept.index, dtype=object)

    shortfalls = []
    got = kept.groupby(["split", "intent"]).size()
    for s in SPLITS:
        for intent, n in targets[s].items():
            have = int(got.get((s, intent), 0))
            if have < n:
                shortfalls.append(f"{s}/{intent} {have}/{n}")
    extra: dict[str, Any] = {
        "kind": "synthesized",
        "source": "catalog",
        "seed": cfg.synthesis.seed,
        "catalog_digest": digest,
        "targets": targets,
        "surplus_unused": surplus,
    }
    if cfg.synthesis.hard_negatives and not shortfalls:
        t = time.perf_counter()
        kept, extra["hard_negatives"] = _mine(kept, cfg, progress)
        timings["mine_negatives_s"] = time.perf_counter() - t
    t = time.perf_counter()
    manifest = _write(out_dir, kept, result, cfg, extra, shortfalls, progress, names)
    timings["write_s"] = time.perf_counter() - t
    manifest["timings"] = {k: round(v, 3) for k, v in timings.items()}
    _gate(manifest, out_dir)
    return manifest


def _mine(kept: pd.DataFrame, cfg: PipelineConfig, progress: Progress) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A ``negative`` for every train and validation row, mined per split and kind: a question's among the
    split's other answers, an alias pair's (``aubergine`` -> ``eggplant``) among the split's other names
    outside its synonym class (its ``group_id``). A bare name is never a question's negative: the
    question that says "aubergine" would be taught away from the word itself."""
    from pipelines.negatives import add_negatives, load_miner

    loaded: list[Any] = []

    def model() -> Any:
        if not loaded:
            loaded.append(load_miner(cfg.model.base_model, cfg.model.max_seq_length))
        return loaded[0]

    kept = kept.copy()
    kept["negative"] = None
    report: dict[str, Any] = {"base_model": cfg.model.base_model, "by_split": {}}
    t0 = time.perf_counter()
    alias = (kept["intent"] == ALIAS_INTENT).to_numpy()
    for split in ("train", "validation"):
        in_split = (kept["split"] == split).to_numpy()
        for kind, mask in (("", in_split & ~alias), ("/alias", in_split & alias)):
            rows = np.flatnonzero(mask)
            if len(rows) == 0:
                continue
            part = kept.iloc[rows].reset_index(drop=True)
            is_correct = _same_class(part) if kind else _correct_answer(part)
            negatives, report["by_split"][split + kind] = add_negatives(
                part,
                is_correct,
                base_model=cfg.model.base_model,
                model=model,
                candidates=cfg.synthesis.negative_candidates,
                seed=cfg.synthesis.seed,
                cache_dir=cfg.paths.data_dir / "cache" / "negatives",
                progress=progress,
            )
            kept.iloc[rows, kept.columns.get_loc("negative")] = negatives
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return kept, report


def _correct_answer(part: pd.DataFrame) -> Callable[[int, str], bool]:
    """Whether another question's answer also answers row ``row`` (:func:`is_correct_answer`)."""
    info: dict[str, tuple[str, tuple[int, ...]]] = {}
    for text, intent, named in zip(part["positive"], part["intent"], part["answer_recipes"], strict=True):
        info.setdefault(text, (intent, named))
    intents, correct = part["intent"].tolist(), part["correct_recipes"].tolist()

    def is_correct(row: int, text: str) -> bool:
        other_intent, named = info[text]
        return is_correct_answer(intents[row], correct[row], other_intent, named)

    return is_correct


def _same_class(part: pd.DataFrame) -> Callable[[int, str], bool]:
    """Whether a name is the alias row's own anchor or in its synonym class (``group_id``: a name's class
    is the same in every row that holds it)."""
    classes = dict(zip(part["positive"], part["group_id"], strict=True))
    anchors, groups = part["anchor"].tolist(), part["group_id"].tolist()

    def is_correct(row: int, text: str) -> bool:
        return text.casefold() == anchors[row].casefold() or classes.get(text) == groups[row]

    return is_correct


def validate_file(path: Path, out_dir: Path, cfg: PipelineConfig, progress: Progress = None) -> dict[str, Any]:
    """Validate a user's pairs file (``anchor``, ``positive``; optional ``intent``, ``group_id``, ``split``).

    Without ``split``, rows are split by group: ``group_id`` (default: the normalized question) is
    hashed with the seed, ``n_eval / (n_train + n_eval)`` of the groups go to eval and
    ``validation_fraction`` of the rest to validation.
    """
    path = Path(path)
    df = read_pairs_table(path)
    if df.empty:
        raise InputError(f"{path}: no rows")
    pairs = pd.DataFrame({"anchor": df["anchor"], "positive": df["positive"]})
    pairs["intent"] = _fill(df["intent"], "unspecified") if "intent" in df else "unspecified"
    default_group = "text:" + normalize_text(pairs["anchor"])
    if "group_id" in df:
        pairs["group_id"] = _fill(df["group_id"], None).where(df["group_id"].notna(), default_group)
        pairs["group_id"] = pairs["group_id"].astype(str)
    else:
        pairs["group_id"] = default_group
    if "split" in df:
        pairs["split"] = df["split"].astype(object)
        try:
            check_splits(pairs)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from exc
    else:
        pairs["split"] = assign_splits(pairs["group_id"], cfg)
    # Train rows first, so that duplicates and leaked questions are rejected in the later split.
    order = pairs["split"].map({s: i for i, s in enumerate(SPLITS)}).to_numpy()
    pairs = pairs.iloc[np.argsort(order, kind="stable")]

    if progress:
        progress(f"validating {len(pairs):,} rows of {path}")
    result = validate_pairs(
        pairs,
        max_tokens=cfg.model.max_seq_length,
        tokenizer=load_tokenizer(cfg.model.base_model),
        max_text_bytes=cfg.validation.max_text_bytes,
    )
    result.rejects["row"] = pairs.index.to_numpy()[result.rejects["row"].to_numpy()]
    given_slice = _fill(df["slice"], "unspecified").astype(str) if "slice" in df else None
    result.accepted["slice"] = (
        given_slice.loc[pairs.index].to_numpy()[result.accepted_rows] if given_slice is not None else "unspecified"
    )
    extra = {
        "kind": "validated",
        "source": str(path),
        "source_digest": sha256_file(path),
        "seed": cfg.synthesis.seed,
        "catalog_digest": None,
        "surplus_unused": 0,
    }
    manifest = _write(out_dir, result.accepted, result, cfg, extra, [], progress)
    _gate(manifest, out_dir)
    return manifest


def read_pairs_table(path: Path) -> pd.DataFrame:
    """Like :func:`pipelines.io.read_table`, but JSONL is parsed with :mod:`json` line by line.

    ``pandas.read_json`` silently drops lone surrogates (``"\\ud800"``); ``json`` keeps them, so the
    row is rejected as ``invalid_text`` instead of being changed. Bad JSON names its line.
    """
    required = ("anchor", "positive")
    if path.suffix.lower() not in (".jsonl", ".json") or not path.is_file():
        return read_table(path, required=required)
    records = read_jsonl_records(path)
    df = pd.DataFrame(records, dtype=object) if records else pd.DataFrame()
    missing = [c for c in required if c not in df.columns]
    if missing:
        found = ", ".join(map(str, df.columns)) or "none"
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (found: {found})")
    return df


def assign_splits(group_id: pd.Series, cfg: PipelineConfig) -> pd.Series:
    """Seeded, grouped split: every row of a group lands in the same split."""
    key = f"{cfg.synthesis.seed:016d}"[-16:]
    h = pd.util.hash_pandas_object(group_id.astype(str), index=False, hash_key=key).to_numpy()
    u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    syn = cfg.synthesis
    eval_share = syn.n_eval / (syn.n_train + syn.n_eval)
    val_cut = eval_share + (1 - eval_share) * syn.validation_fraction
    split = np.where(u < eval_share, "eval", np.where(u < val_cut, "validation", "train"))
    return pd.Series(split, index=group_id.index, dtype=object)


def read_manifest(data_dir: Path, *, verify: bool = True, require_passed: bool = True) -> dict[str, Any]:
    """The manifest of a dataset directory; InputError if missing, corrupt or out of date with its files."""
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    hint = "not a dataset directory, or an interrupted run; write one with `recipe-embed synthesize`"
    manifest = read_json_object(path, hint=hint)
    if "files" not in manifest or "counts" not in manifest:
        raise InputError(f"{path}: not a recipe-embed dataset manifest")
    if verify:
        for name, info in manifest["files"].items():
            f = data_dir / name
            if not f.exists():
                raise InputError(f"{f}: listed in the manifest but missing")
            if sha256_file(f) != info.get("sha256"):
                raise InputError(f"{f}: content does not match the manifest digest (modified or half-written)")
    if require_passed and not manifest.get("quality_gate", {}).get("passed", False):
        raise DataQualityError(f"{data_dir}: {manifest.get('quality_gate', {}).get('reason', 'quality gate failed')}")
    return manifest


# --- internals ------------------------------------------------------------------------------------


def _fill(s: pd.Series, default: Any) -> pd.Series:
    out = s.astype(object)
    blank = out.isna() | out.map(lambda v: isinstance(v, str) and not v.strip())
    return out.where(~blank, default)


def _write(
    out_dir: Path,
    accepted: pd.DataFrame,
    result: ValidationResult,
    cfg: PipelineConfig,
    extra: dict[str, Any],
    shortfalls: list[str],
    progress: Progress,
    names: pd.DataFrame | None = None,
) -> dict[str, Any]:
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, out_dir, "cannot create") from exc
    if progress:
        progress(f"writing {out_dir}")
    with StagedFiles() as staged:  # every file under a temp name until all are written
        manifest = _stage(staged, out_dir, accepted, result, cfg, extra, shortfalls, names)
        staged.commit(before_rename=lambda: (out_dir / MANIFEST).unlink(missing_ok=True))
    return manifest


def _stage(
    staged: StagedFiles,
    out_dir: Path,
    accepted: pd.DataFrame,
    result: ValidationResult,
    cfg: PipelineConfig,
    extra: dict[str, Any],
    shortfalls: list[str],
    names: pd.DataFrame | None = None,
) -> dict[str, Any]:
    files: dict[str, dict[str, Any]] = {}
    counts: dict[str, dict[str, Any]] = {}
    for split, name in FILES.items():
        part = accepted[accepted["split"] == split][split_columns(split, accepted.columns)].reset_index(drop=True)
        check_split_file(part, split)
        tmp = staged.path(out_dir / name)
        to_parquet(part, tmp, out_dir / name)
        files[name] = {"sha256": sha256_file(tmp), "rows": len(part)}
        counts[split] = {
            "total": len(part),
            "by_intent": {k: int(v) for k, v in part["intent"].value_counts().sort_index().items()},
        }
        if "slice" in part.columns:
            counts[split]["by_slice"] = {k: int(v) for k, v in part["slice"].value_counts().sort_index().items()}
        if "negative" in part.columns:
            counts[split]["with_negative"] = int(part["negative"].notna().sum())
    tmp = staged.path(out_dir / REJECTS)
    to_parquet(result.rejects, tmp, out_dir / REJECTS)
    files[REJECTS] = {"sha256": sha256_file(tmp), "rows": len(result.rejects)}
    name_counts = None
    if names is not None:
        check_names_file(names)
        tmp = staged.path(out_dir / NAMES)
        to_parquet(names, tmp, out_dir / NAMES)
        files[NAMES] = {"sha256": sha256_file(tmp), "rows": len(names)}
        name_counts = {"pairs": len(names), "classes": int(names["group_id"].nunique())}

    by_split = {s: int((result.rejects["split"] == s).sum()) for s in SPLITS}
    fraction = result.reject_fraction
    limit = cfg.validation.max_reject_fraction
    reason = None
    if fraction > limit:
        top = ", ".join(f"{r} {n}" for r, n in result.by_reason.items())
        reason = (
            f"{len(result.rejects):,} of {result.n_input:,} rows rejected ({fraction:.2%}) > "
            f"validation.max_reject_fraction {limit:.2%} ({top}); see {out_dir / REJECTS}"
        )
    elif shortfalls:
        reason = f"too few accepted pairs for the targets: {', '.join(shortfalls)}; see {out_dir / REJECTS}"
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "created_by": f"recipe-embed {__version__}",
        **extra,
        "counts": counts,
        "input_rows": result.n_input,
        "accepted_rows": len(accepted),
        "rejected": {"total": len(result.rejects), "by_reason": result.by_reason, "by_split": by_split},
        "reject_fraction": round(fraction, 6),
        "quality_gate": {"passed": reason is None, "max_reject_fraction": limit, "reason": reason},
        "leakage": leakage_report(accepted),
        **({"names": name_counts} if name_counts else {}),
        "files": files,
        "digests": {name: info["sha256"] for name, info in files.items()},
        "config": cfg.model_dump(mode="json"),
    }
    manifest_tmp = staged.path(out_dir / MANIFEST)  # staged last: renamed into place last
    try:
        manifest_tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        raise storage_error(exc, out_dir / MANIFEST) from exc
    return manifest


def timing_line(manifest: dict[str, Any]) -> str:
    """``time: synthesize 0.41 s, validate 0.93 s, write 0.05 s; hard negatives 12.3 s (...)`` or ``""``."""
    timings = manifest.get("timings") or {}
    parts = [f"{k.removesuffix('_s')} {v:.2f} s" for k, v in timings.items() if k != "mine_negatives_s"]
    text = f"time: {', '.join(parts)}" if parts else ""
    mined = manifest.get("hard_negatives")
    if mined:
        splits = mined.get("by_split", {})
        detail = ", ".join(
            f"{s} {r['rows']:,}{' cached' if r.get('cached') else ''}"
            + (f", {r['fallback_random']} random" if r.get("fallback_random") else "")
            for s, r in splits.items()
        )
        text += f"{'; ' if text else ''}hard negatives (own step) {mined.get('seconds', 0):.2f} s ({detail})"
    return text


def check_split_file(part: pd.DataFrame, split: str) -> None:
    """The written-file contract (:class:`TrainFileSchema` / :class:`EvalFileSchema`); DataQualityError."""
    schema = {"eval": EvalFileSchema, "validation": ValidationFileSchema}.get(split, TrainFileSchema)
    _check_contract(schema, part, split)


def check_names_file(names: pd.DataFrame) -> None:
    """The names-file contract (:class:`NamesFileSchema`); DataQualityError."""
    _check_contract(NamesFileSchema, names, "names")


def _check_contract(schema: Any, frame: pd.DataFrame, what: str) -> None:
    import pandera.pandas as pa

    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        rows = exc.failure_cases.groupby(exc.failure_cases["check"].astype(str))["index"].nunique()
        broken = ", ".join(f"{check} ({n} rows)" for check, n in rows.items())
        raise DataQualityError(f"{what}: written rows break the file contract: {broken}") from exc


def split_columns(split: str, available: Any) -> list[str]:
    """The written columns of a split: ``anchor, positive[, negative], intent, group_id`` (+ ``slice`` and
    ``relevant`` in validation and eval)."""
    have = set(available)
    graded = [c for c in ("slice", "relevant") if c in have]
    if split == "eval":
        return [*PAIR_COLUMNS, *graded]
    cols = ["anchor", "positive", *(["negative"] if "negative" in have else []), "intent", "group_id"]
    return [*cols, *graded] if split == "validation" else cols


def leakage_report(accepted: pd.DataFrame) -> dict[str, int]:
    """Cross-split overlap in the *written* data: eval groups also in train/validation, and questions
    (case-insensitive, trimmed) that occur in an earlier split. The validator's normalized check is
    stricter; this is the independent double-check the manifest records."""
    ev = (accepted["split"] == "eval").to_numpy()
    shared_groups = set(accepted.loc[ev, "group_id"]) & set(accepted.loc[~ev, "group_id"])
    key = accepted["anchor"].astype("string[pyarrow]").str.lower().str.strip().reset_index(drop=True)
    return {
        "eval_groups_also_in_train_or_validation": len(shared_groups),
        "questions_seen_in_an_earlier_split": int(leaked_keys(key, accepted["split"].reset_index(drop=True)).sum()),
    }


def _gate(manifest: dict[str, Any], out_dir: Path) -> None:
    if not manifest["quality_gate"]["passed"]:
        raise DataQualityError(str(manifest["quality_gate"]["reason"]))
