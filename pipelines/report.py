"""The run report: the dict that ``recipe-embed run`` and the Prefect flow return, rendered as markdown
(the flow's Prefect artifact) and plain text (the console)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

METRICS = ("map@100", "ndcg@10", "mrr@10")
COLUMNS = ("candidate", "champion", "base")
MLFLOW_UI_HINT = "mlflow ui --backend-store-uri sqlite:///data/mlflow.db"


def metric(values: Mapping[str, float] | None, dim: int, name: str) -> float | None:
    """``dim_384_cosine_map@100`` (or its MLflow spelling ``..._map_at_100``) from a metrics dict."""
    if not values:
        return None
    for key in (f"dim_{dim}_cosine_{name}", f"dim_{dim}_cosine_{name.replace('@', '_at_')}"):
        if key in values:
            return float(values[key])
    return None


def metric_rows(
    metrics: Mapping[str, Mapping[str, float] | None], dims: Sequence[int], names: Sequence[str] = METRICS
) -> list[dict[str, Any]]:
    """One row per (dim, metric) present in any column: ``{"dim", "metric", "candidate", ...}``."""
    rows = []
    for dim in dims:
        for name in names:
            row: dict[str, Any] = {"dim": dim, "metric": name}
            row.update({col: metric(metrics.get(col), dim, name) for col in COLUMNS})
            if any(row[col] is not None for col in COLUMNS):
                rows.append(row)
    return rows


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def decision_line(report: Mapping[str, Any]) -> str:
    if report.get("skipped"):
        return f"SKIPPED training: {report['skipped']}"
    decision = report.get("decision") or {}
    if not decision:
        return "no decision"
    verdict = "PROMOTED" if decision.get("promote") else "KEPT champion"
    version = decision.get("candidate_version") if decision.get("promote") else decision.get("champion_version")
    suffix = f" (version {version})" if version is not None else ""
    return f"{verdict}{suffix}: {decision.get('reason', '')}".rstrip(": ")


def ui_hint(report: Mapping[str, Any]) -> str:
    """``mlflow ui`` on the run's sqlite store (the embedded default when unknown)."""
    uri = str(report.get("tracking_uri") or "")
    return f"mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite:") else MLFLOW_UI_HINT


def mlflow_line(report: Mapping[str, Any]) -> str:
    if report.get("mlflow_url"):
        return f"MLflow run: {report['mlflow_url']}"
    return f"MLflow run {report.get('run_id')}: open the UI with `{ui_hint(report)}` (then http://127.0.0.1:5000)"


def to_markdown(report: Mapping[str, Any]) -> str:
    rows = metric_rows(report.get("metrics", {}), report.get("dims", ()))
    lines = [
        f"# train-and-evaluate: {report.get('profile')}",
        "",
        f"**Decision:** {decision_line(report)}",
        "",
        f"**Synthesis:** {report.get('synthesis', '?')} (`{report.get('data_dir')}`)",
        "",
    ]
    url = report.get("mlflow_url")
    run_id = report.get("run_id")
    lines.append(f"**MLflow run:** [{run_id}]({url})" if url else f"**MLflow run:** `{run_id}` (`{ui_hint(report)}`)")
    lines.append("")
    if rows:
        lines += ["| dim | metric | candidate | champion | base |", "|---:|---|---:|---:|---:|"]
        lines += [
            f"| {r['dim']} | {r['metric']} | {_fmt(r['candidate'])} | {_fmt(r['champion'])} | {_fmt(r['base'])} |"
            for r in rows
        ]
    deltas = (report.get("decision") or {}).get("deltas")
    if deltas:
        lines += ["", "Deltas vs champion: " + ", ".join(f"`{k}` {v:+.4f}" for k, v in sorted(deltas.items()))]
    return "\n".join(lines) + "\n"


def to_text(report: Mapping[str, Any]) -> str:
    rows = metric_rows(report.get("metrics", {}), report.get("dims", ()))
    out = []
    if rows:
        out.append(f"{'dim':>4}  {'metric':<8}  {'candidate':>9}  {'champion':>9}  {'base':>9}")
        out += [
            f"{r['dim']:>4}  {r['metric']:<8}  {_fmt(r['candidate']):>9}  {_fmt(r['champion']):>9}  {_fmt(r['base']):>9}"
            for r in rows
        ]
        out.append("")
    out.append(f"synthesis: {report.get('synthesis')} ({report.get('data_dir')})")
    out.append(decision_line(report))
    out.append(mlflow_line(report))
    return "\n".join(out)
