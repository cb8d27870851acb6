"""``recipe-embed synthesize`` and ``recipe-embed validate``: dataset directories with a counts table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli._common import ConfigFileOpt, ProfileOpt, SetOpt, handle_errors, resolve
from pipelines.errors import DataQualityError

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write.")]


def counts_table(manifest: dict[str, Any]) -> Any:
    """A rich table: rows = intents, columns = splits, then accepted / rejected totals and reasons."""
    from rich.table import Table

    counts = manifest["counts"]
    splits = [s for s in ("train", "validation", "eval") if s in counts]
    intents = sorted({i for s in splits for i in counts[s]["by_intent"]})
    table = Table(title=f"pairs ({manifest.get('kind', 'dataset')}, seed {manifest.get('seed')})")
    table.add_column("intent")
    for s in splits:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    for intent in intents:
        per = [counts[s]["by_intent"].get(intent, 0) for s in splits]
        table.add_row(intent, *(f"{n:,}" for n in per), f"{sum(per):,}")
    totals = [counts[s]["total"] for s in splits]
    table.add_row("[bold]accepted[/bold]", *(f"{n:,}" for n in totals), f"[bold]{sum(totals):,}[/bold]")
    rej = manifest["rejected"]
    table.add_row(
        "[bold]rejected[/bold]",
        *(f"{rej['by_split'].get(s, 0):,}" for s in splits),
        f"[bold]{rej['total']:,}[/bold]",
    )
    for reason, n in rej["by_reason"].items():
        table.add_row(f"  {reason}", *("" for _ in splits), f"{n:,}")
    return table


def _report(manifest: dict[str, Any], out: Path) -> None:
    from rich.console import Console

    console = Console()
    console.print(counts_table(manifest))
    gate = manifest["quality_gate"]
    leak = manifest["leakage"]
    spare = manifest.get("surplus_unused", 0)
    spare_txt = f" + {spare:,} unused spares" if spare else ""
    console.print(
        f"input {manifest['input_rows']:,} rows = {manifest['accepted_rows']:,} accepted{spare_txt}"
        f" + {manifest['rejected']['total']:,} rejected ({manifest['reject_fraction']:.2%}, "
        f"limit {gate['max_reject_fraction']:.2%}); cross-split leakage: "
        f"{leak['eval_groups_also_in_train_or_validation']} shared groups, "
        f"{leak['questions_seen_in_an_earlier_split']} repeated questions"
    )
    from pipelines.datasets import timing_line

    line = timing_line(manifest)
    if line:
        console.print(line)
    names = " names," if manifest.get("names") else ""
    console.print(f"wrote {out}/ (train, validation, eval,{names} rejects .parquet + manifest.json)")


def _run(fn: Any, out: Path, *args: Any) -> None:
    """Run a dataset builder, print the table even when the quality gate fails, then fail."""
    from rich.console import Console

    err = Console(stderr=True)
    with err.status("working ...") as status:
        try:
            manifest = fn(*args, progress=lambda msg: status.update(msg))
        except DataQualityError:
            from pipelines.datasets import read_manifest

            manifest = read_manifest(out, verify=False, require_passed=False)
            _report(manifest, out)
            raise
    _report(manifest, out)


def register(app: typer.Typer) -> None:
    """Add ``synthesize`` and ``validate``."""

    @app.command("synthesize")
    @handle_errors
    def synthesize_cmd(
        out: OutOpt,
        profile: ProfileOpt = None,
        config: ConfigFileOpt = None,
        set_: SetOpt = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Overrides synthesis.seed.")] = None,
    ) -> None:
        """Synthesize recipe question/answer pairs, validate them and write a dataset directory."""
        from pipelines.datasets import build_dataset

        sets = [*(set_ or []), *([f"synthesis.seed={seed}"] if seed is not None else [])]  # --seed wins
        cfg = resolve(profile, config, sets)
        _run(build_dataset, out, cfg, out)

    @app.command("validate")
    @handle_errors
    def validate_cmd(
        file: Annotated[Path, typer.Argument(help="Pairs file (.parquet, .csv or .jsonl) with anchor, positive.")],
        out: OutOpt,
        profile: ProfileOpt = None,
        config: ConfigFileOpt = None,
        set_: SetOpt = None,
    ) -> None:
        """Validate a user's pairs file and write the same dataset directory (accepted + rejects)."""
        from pipelines.datasets import validate_file

        cfg = resolve(profile, config, set_)
        _run(validate_file, out, file, out, cfg)
