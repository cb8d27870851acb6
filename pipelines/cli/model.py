"""``recipe-embed train`` and ``recipe-embed evaluate``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipelines.cli._common import ConfigFileOpt, ProfileOpt, SetOpt, handle_errors, resolve
from pipelines.errors import InputError

if TYPE_CHECKING:
    from rich.table import Table


def parse_dims(text: str) -> tuple[int, ...]:
    """``"384,256,128,64"`` -> ``(384, 256, 128, 64)``; anything else -> InputError."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError as exc:
        raise InputError(f"--dims expects comma-separated integers, got {text!r}") from exc
    if not dims or any(d < 1 for d in dims):
        raise InputError(f"--dims expects positive integers, got {text!r}")
    if len(set(dims)) != len(dims):
        raise InputError(f"--dims has a duplicate: {text!r}")
    return dims


def rich_metrics_table(results: Mapping[str, Mapping[str, float]], dims: Sequence[int]) -> Table:
    """The console table of ``evaluate``: rows = the card's metrics; columns = each dim, each model
    (``{"base": {...}, "fine-tuned": {...}}``)."""
    import math

    from rich.table import Table

    from pipelines.metrics import METRIC_NAMES, SIMILARITY, lookup

    table = Table(title="Information retrieval per dimension", show_lines=False)
    table.add_column("metric", style="bold")
    names = list(results)
    for d in dims:
        for name in names:
            table.add_column(f"{d}\n{name}" if len(names) > 1 else f"dim {d}", justify="right")
    for metric in METRIC_NAMES:
        row = [f"{SIMILARITY}_{metric}"]
        for d in dims:
            for name in names:
                value = lookup(results[name], d, metric)
                row.append("-" if value is None or math.isnan(value) else f"{value:.4f}")
        table.add_row(*row)
    return table


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``evaluate``."""

    @app.command("train")
    @handle_errors
    def train_cmd(
        data: Annotated[Path, typer.Option("--data", help="Dataset directory (train/validation.parquet).")],
        out: Annotated[Path, typer.Option("--out", help="Model directory to write (model/, checkpoints/).")],
        profile: ProfileOpt = None,
        config: ConfigFileOpt = None,
        set_: SetOpt = None,
        resume: Annotated[
            bool, typer.Option("--resume", help="Continue from the last complete checkpoint in OUT.")
        ] = False,
        overwrite: Annotated[
            bool,
            typer.Option("--overwrite", help="Start over in an OUT from an earlier run (deletes its checkpoints)."),
        ] = False,
    ) -> None:
        """Fine-tune the base model with MatryoshkaLoss(MNRL); the best validation checkpoint -> OUT/model."""
        cfg = resolve(profile, config, set_)
        if not data.is_dir():
            raise InputError(f"{data}: no such dataset directory")
        from pipelines import distributed
        from pipelines.metrics import PRIMARY, dim_prefix
        from pipelines.stages import train_model
        from pipelines.training import CHECKPOINTS_SUBDIR, MODEL_SUBDIR

        if resume and overwrite:
            raise InputError("--resume and --overwrite exclude each other")
        earlier = [
            out / d for d in (CHECKPOINTS_SUBDIR, MODEL_SUBDIR) if (out / d).is_dir() and any((out / d).iterdir())
        ]
        if earlier and not (resume or overwrite):
            raise InputError(
                f"{earlier[0]}: holds an earlier run; pass --resume to continue from its last checkpoint "
                "or --overwrite to delete it and start over"
            )
        result = train_model(cfg, data, out, resume=resume, overwrite=overwrite)
        if result is None:  # the ranks ran under torchrun and printed their own summary
            return
        distributed.shutdown()
        if not distributed.is_main_process():
            return
        typer.echo(f"model: {result.model_dir}")
        typer.echo(f"best checkpoint: {result.best_checkpoint or '-'}")
        if result.loss_history:
            first, last = result.loss_history[0], result.loss_history[-1]
            typer.echo(f"loss: {first['loss']:.4f} (step {first['step']}) -> {last['loss']:.4f} (step {last['step']})")
        for d in cfg.training.matryoshka_dims:
            key = next(
                (k for k in result.validation_metrics if k.startswith(dim_prefix(d)) and k.endswith(PRIMARY)), None
            )
            if key:
                typer.echo(f"validation {key}: {result.validation_metrics[key]:.4f}")
        typer.echo(
            f"{result.train_pairs} train pairs, {result.global_step} steps, {result.seconds:.1f} s, "
            f"{result.pairs_per_second:.1f} pairs/s on {result.device}"
            + (f" (loop {loop:.1f} pairs/s)" if (loop := result.settings.get("loop_pairs_per_second")) else "")
            + (f" ({result.world_size} ranks)" if result.world_size > 1 else "")
        )

    @app.command("evaluate")
    @handle_errors
    def evaluate_cmd(
        model: Annotated[
            str,
            typer.Option(
                "--model",
                help="Model dir, train output dir, bundled:all-MiniLM-L6-v2, hub id, or models:/recipe-embedder@champion.",
            ),
        ],
        pairs: Annotated[Path, typer.Option("--pairs", help="anchor/positive pairs (Parquet, CSV or JSONL).")],
        json_out: Annotated[Path, typer.Option("--json", help="Write the metrics here as a flat JSON object.")],
        dims: Annotated[str | None, typer.Option("--dims", help="e.g. 384,256,128,64 (default: config).")] = None,
        base: Annotated[
            str | None, typer.Option("--base", help="Also evaluate this base model and print both.")
        ] = None,
        base_json: Annotated[
            Path | None, typer.Option("--base-json", help="Write the base model's metrics here.")
        ] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Encode batch size.")] = None,
        profile: ProfileOpt = None,
        config: ConfigFileOpt = None,
        set_: SetOpt = None,
    ) -> None:
        """The card's IR metrics per dimension (encode once, slice per dim); base vs fine-tuned with --base."""
        from rich.console import Console

        from pipelines.evaluation import evaluate_pairs, load_pairs
        from pipelines.io import write_json
        from pipelines.models import is_mlflow_uri, resolve_model_path

        cfg = resolve(profile, config, set_)
        if any(m is not None and is_mlflow_uri(m) for m in (model, base)):
            from pipelines import tracking

            tracking.connect(cfg)  # MLFLOW_TRACKING_URI, else the embedded store under paths.data_dir
        dim_list = parse_dims(dims) if dims else cfg.evaluation.dims
        bs = batch_size or cfg.evaluation.batch_size
        if base_json is not None and base is None:
            raise InputError("--base-json needs --base")
        frame = load_pairs(pairs)
        for name in (model, base):  # fail on a bad path before any model is loaded
            if name is not None:
                resolve_model_path(name)
        results: dict[str, dict[str, float]] = {}
        if base is not None:
            results["base"] = evaluate_pairs(base, frame, dim_list, bs, progress=True)
        metrics = evaluate_pairs(model, frame, dim_list, bs, progress=True)
        results["fine-tuned" if base is not None else "model"] = metrics
        write_json(metrics, json_out)
        if base_json is not None:
            write_json(results["base"], base_json)
        Console().print(rich_metrics_table(results, dim_list))
        typer.echo(f"{len(frame)} queries; metrics written to {json_out}")
