"""A generated model card in the style of the reference card (``docs/reference-card.md``).

Hyperparameters, data counts, per-dimension metric tables (base vs fine-tuned, and the champion
when there is one) and the training loss log. Pure: data in, Markdown out.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipelines.metrics import (
    LOAD_LINE,
    METRIC_NAMES,
    PRIMARY,
    SIMILARITY,
    dim_prefix,
    groups_in,
    lookup,
    metric_key,
    parse_key,
    size_key,
)
from pipelines.serving import serving_card_lines

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig

METRIC_ORDER = tuple(f"{SIMILARITY}_{m}" for m in METRIC_NAMES)
"""The reference card's row order (the library's metric order, with the score function)."""
PRIMARY_ROW = f"{SIMILARITY}_{PRIMARY}"


def fmt(value: Any) -> str:
    """4 significant decimals like the reference card (``0.9898``); ``-`` for missing."""
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return str(v)
    return f"{round(v, 4):g}" if abs(v) < 1e6 else f"{v:.4g}"


def metric_names(metrics: Mapping[str, float], dim: int) -> list[str]:
    """Metric names present for ``dim``, in the reference card's order, unknown ones last."""
    prefix = dim_prefix(dim)
    present = [k[len(prefix) :] for k in metrics if k.startswith(prefix)]
    known = [m for m in METRIC_ORDER if m in present]
    return known + sorted(m for m in present if m not in METRIC_ORDER)


def markdown_metrics_table(
    dim: int,
    columns: Mapping[str, Mapping[str, float] | None],
) -> str:
    """A Markdown table: one row per metric, one column per model; map@100 in bold."""
    cols = {name: m for name, m in columns.items() if m}
    names: list[str] = []
    for m in cols.values():
        names += [n for n in metric_names(m, dim) if n not in names]
    names = [n for n in METRIC_ORDER if n in names] + [n for n in names if n not in METRIC_ORDER]
    header = "| Metric | " + " | ".join(cols) + " |"
    sep = "|:--------------------|" + "|".join([":-----------"] * len(cols)) + "|"
    rows = [header, sep]
    for n in names:
        cells = [fmt(m.get(dim_prefix(dim) + n)) for m in cols.values()]
        if n == PRIMARY_ROW:
            rows.append(f"| **{n}** | " + " | ".join(f"**{c}**" for c in cells) + " |")
        else:
            rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _delta(value: float | None, other: float | None) -> str:
    if value is None or other is None:
        return "-"
    d = float(value) - float(other)
    return f"{d:+.4f}" if math.isfinite(d) else "-"


def _decision_lines(decision: Mapping[str, Any] | None) -> list[str]:
    from pipelines.report import format_decision, interval_text, saturation_note

    if not decision:
        return []
    out = ["### Promotion decision", "", f"**{format_decision(decision)}**", ""]
    interval = interval_text(decision)
    if interval:
        against = decision.get("scored_against") or decision.get("champion_version")
        out += [
            f"Paired bootstrap over eval queries of the per-query average precision, candidate minus champion "
            f"version {against}: {interval} (mean, 95% interval).",
            "",
        ]
    note = saturation_note(decision)
    if note:
        out += [f"> **Warning:** {note}.", ""]
    return out


def _group_lines(dims: Sequence[int], primary: int, columns: Mapping[str, Mapping[str, float] | None]) -> list[str]:
    """``map@100`` per eval slice (each dim) and per intent (the primary dim), when the eval has them."""
    cols = {name: m for name, m in columns.items() if m}
    out: list[str] = []
    for kind, shown_dims in (("slice", list(dims)), ("intent", [primary])):
        groups: list[str] = []
        for m in cols.values():
            groups += [g for g in groups_in(m, kind) if g not in groups]
        if not groups:
            continue
        title = "### By eval slice" if kind == "slice" else f"### By intent (dim {primary})"
        out += [title, "", f"`{PRIMARY_ROW}`; each query still searches the whole eval corpus.", ""]
        header = f"| {kind} | queries | " + " | ".join(
            f"{name} @{d}" if len(shown_dims) > 1 else name for d in shown_dims for name in cols
        )
        out += [header + " |", "|:--|--:|" + "--:|" * (len(shown_dims) * len(cols))]
        for g in groups:
            size = next((m.get(size_key(kind, g)) for m in cols.values() if m.get(size_key(kind, g)) is not None), None)
            cells = [fmt(lookup(m, d, PRIMARY, kind, g)) for d in shown_dims for m in cols.values()]
            out.append(f"| {g} | {'-' if size is None else int(size)} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def _counts_lines(manifest: Mapping[str, Any]) -> list[str]:
    counts = manifest.get("counts") or {}
    lines = []
    for split, value in counts.items():
        if isinstance(value, Mapping):
            total = value.get("total", value.get("rows"))
            detail = ", ".join(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}" for k, v in value.items())
            lines.append(f"- `{split}`: {total if total is not None else ''} ({detail})".replace(" ()", ""))
        else:
            lines.append(f"- `{split}`: {value:,}" if isinstance(value, int) else f"- `{split}`: {value}")
    return lines


def _loss_log(train_result: Mapping[str, Any], max_rows: int = 40) -> list[str]:
    history: Sequence[Mapping[str, Any]] = train_result.get("loss_history") or []
    if not history:
        return []
    stride = max(1, math.ceil(len(history) / max_rows))
    picked = list(history[::stride])
    if picked[-1] is not history[-1]:
        picked.append(history[-1])
    lines = ["| Epoch | Step | Training Loss |", "|:------:|:----:|:-------------:|"]
    for row in picked:
        lines.append(f"| {fmt(row.get('epoch'))} | {row.get('step', '-')} | {fmt(row.get('loss'))} |")
    return lines


def _versions() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = [f"- Python: {platform.python_version()}"]
    for label, dist in (
        ("Sentence Transformers", "sentence-transformers"),
        ("Transformers", "transformers"),
        ("PyTorch", "torch"),
        ("Accelerate", "accelerate"),
        ("Datasets", "datasets"),
        ("MLflow", "mlflow"),
    ):
        try:
            out.append(f"- {label}: {version(dist)}")
        except PackageNotFoundError:
            continue
    return out


def render_model_card(
    cfg: PipelineConfig,
    candidate: Mapping[str, float],
    base: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
    manifest: Mapping[str, Any],
    train_result: Mapping[str, Any],
    decision: Mapping[str, Any] | None = None,
    serving: Mapping[str, Any] | None = None,
) -> str:
    """The card as Markdown (``decision``: :meth:`pipelines.promotion.Decision.to_dict`, when there was one)."""
    t = cfg.training
    dims = list(cfg.evaluation.dims)
    name = cfg.registry.model_name
    base_model = cfg.model.base_model
    primary = cfg.registry.primary_dim
    key = metric_key(primary)
    out: list[str] = [
        f"# {name}: SentenceTransformer fine-tuned from {base_model}",
        "",
        f"A recipe-search embedding model fine-tuned from `{base_model}` with "
        f"MatryoshkaLoss(MultipleNegativesRankingLoss) at {', '.join(map(str, t.matryoshka_dims))} dimensions. "
        "Generated by recipe-embed.",
        "",
        "## Model Details",
        "### Model Description",
        "- **Model Type:** Sentence Transformer",
        f"- **Base model:** `{base_model}`",
        f"- **Maximum Sequence Length:** {cfg.model.max_seq_length} tokens",
        f"- **Output Dimensionality:** {max(t.matryoshka_dims)} (truncatable to "
        f"{', '.join(map(str, t.matryoshka_dims[1:]))})",
        "- **Similarity Function:** Cosine Similarity",
        f"- **Profile:** `{cfg.profile}`",
        "",
        "## Usage",
        "```python",
        "import mlflow",
        "",
        "# the registered champion (this model, once promoted)",
        "model = " + LOAD_LINE.format(name=name, alias=cfg.registry.champion_alias),
        'embeddings = model.encode(["Quick vegetarian recipes with chickpeas?"])',
        "```",
        "",
        "## Evaluation",
        "### Baseline vs fine-tuned",
        "",
        f"`{PRIMARY_ROW}` per dimension on the held-out eval set:",
        "",
        "| Dimension | base | fine-tuned | Δ vs base | champion (same eval) | Δ vs champion (same eval) |",
        "|:---------:|:----:|:----------:|:---------:|:--------------------:|:-------------------------:|",
    ]
    for d in dims:
        k = metric_key(d)
        cand = candidate.get(k)
        b = base.get(k) if base else None
        ch = champion.get(k) if champion else None
        out.append(f"| {d} | {fmt(b)} | {fmt(cand)} | {_delta(cand, b)} | {fmt(ch)} | {_delta(cand, ch)} |")
    out.append("")
    if champion:
        out += [
            "The champion's numbers are its own model re-scored on this eval set (the one the decision uses), "
            "not the figures on its own run.",
            "",
        ]
    if candidate.get(key) is not None:
        out.append(f"Primary metric: `{key}` = **{fmt(candidate.get(key))}**.")
        out.append("")
    out += _decision_lines(decision)
    out += _group_lines(dims, primary, {"base": base, "fine-tuned": candidate, "champion (same eval)": champion})
    out += serving_card_lines(serving)
    out.append("### Metrics")
    for d in dims:
        out += [
            "#### Information Retrieval",
            f"* Dataset: `dim_{d}`",
            "* Evaluated with `pipelines.evaluation.evaluate_pairs` (equivalent to `InformationRetrievalEvaluator`)",
            "",
            markdown_metrics_table(d, {"base": base, "fine-tuned": candidate, "champion (same eval)": champion}),
            "",
        ]
    out += ["## Training Details", "### Training Dataset"]
    counts = _counts_lines(manifest)
    if counts:
        out += ["* Counts:", *counts]
    else:
        out.append(f"* Size: {train_result.get('train_pairs', 'unknown')} training samples")
    out.append("* Columns: <code>anchor</code> and <code>positive</code>")
    if manifest.get("seed") is not None:
        out.append(f"* Seed: {manifest['seed']}")
    digests = manifest.get("digests") or {}
    if digests:
        out.append("* Digests (sha256): " + ", ".join(f"`{k}` {str(v)[:12]}" for k, v in digests.items()))
    loss_cfg = {
        "loss": "CachedMultipleNegativesRankingLoss" if t.loss == "cached_mnrl" else "MultipleNegativesRankingLoss",
        "matryoshka_dims": list(t.matryoshka_dims),
        "matryoshka_weights": [1] * len(t.matryoshka_dims),
        "n_dims_per_step": -1,
    }
    out += [
        "* Loss: `MatryoshkaLoss` with these parameters:",
        "```json",
        json.dumps(loss_cfg, indent=2),
        "```",
        "### Training Hyperparameters",
        f"- `eval_strategy`: {t.eval_strategy}",
        f"- `per_device_train_batch_size`: {t.per_device_batch_size}",
        f"- `per_device_eval_batch_size`: {t.eval_batch_size}",
        f"- `gradient_accumulation_steps`: {t.gradient_accumulation_steps}",
        f"- `learning_rate`: {t.learning_rate:g}",
        f"- `num_train_epochs`: {t.epochs:g}",
        f"- `max_steps`: {t.max_steps}",
        f"- `lr_scheduler_type`: {t.lr_scheduler}",
        f"- `warmup`: {t.warmup:g}",
        f"- `precision`: {t.precision}",
        f"- `tf32`: {t.tf32}",
        "- `load_best_model_at_end`: True",
        f"- `optim`: {t.optim}",
        f"- `weight_decay`: {t.weight_decay:g}",
        f"- `max_grad_norm`: {t.max_grad_norm:g}",
        f"- `batch_sampler`: {t.batch_sampler}",
        f"- `seed`: {t.seed}",
        f"- `base_interpolation`: {list(t.base_interpolation)} (tolerance {t.base_interpolation_tolerance:g})",
    ]
    run_facts = []
    for label, k in (
        ("Device", "device"),
        ("Train pairs", "train_pairs"),
        ("Seconds", "seconds"),
        ("Pairs per second", "pairs_per_second"),
        ("Best checkpoint", "best_checkpoint"),
    ):
        if train_result.get(k) is not None:
            v = train_result[k]
            run_facts.append(f"- {label}: {fmt(v) if isinstance(v, float) else v}")
    stage = (train_result.get("settings") or {}).get("names_stage")
    if stage and "steps" in stage:
        run_facts.append(
            f"- Names stage: {stage['rounds']} rounds over {stage['pairs']:,} name pairs in {stage['classes']:,} "
            f"synonym classes ({stage['steps']} steps, {fmt(stage['seconds'])} s), before the question pairs"
        )
    val = train_result.get("validation_metrics") or {}
    sliced = groups_in(val, "slice")
    mix = (train_result.get("settings") or {}).get("base_interpolation")
    if mix:
        tried = ", ".join(f"{a}: {s:.4f}" for a, s in mix["validation_mean_map@100"].items())
        score = "map@100 averaged over its slices and dims" if len(sliced) > 1 else "mean map@100 over dims"
        run_facts.append(
            f"- Weights: {mix['alpha']:g} x fine-tuned + {1 - mix['alpha']:g} x base (WiSE-FT), chosen on validation "
            f"({score}, by share of fine-tuned weights: {tried})"
        )
    if len(sliced) > 1:
        slice_dims = {p[2] for k in val if (p := parse_key(k)) and p[0] == "slice"}
        shown = sorted({max(slice_dims), min(slice_dims)}, reverse=True)
        per = "; ".join(
            f"`{g}` "
            + " / ".join(f"{v:.3f}" for d in shown if (v := lookup(val, d, kind="slice", group=g)) is not None)
            for g in sliced
        )
        run_facts.append(f"- Validation map@100 at {' / '.join(map(str, shown))}, per slice: {per}")
    if run_facts:
        out += ["### Training Run", *run_facts]
    log = _loss_log(train_result)
    if log:
        out += ["### Training Logs", *log]
    out += ["", "### Framework Versions", *_versions(), ""]
    return "\n".join(out)
