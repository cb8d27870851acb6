"""The run report: the dict that ``recipe-embed run`` and the Prefect flow return, rendered as markdown
(the flow's Prefect artifact) and plain text (the console). Also the one spelling of a decision line,
shared with the registry (each model version's description) and the model card."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.metrics import PRIMARY, SATURATION, groups_in, lookup
from pipelines.serving import grid_text

METRICS = ("map@100", "ndcg@10", "mrr@10")
COLUMNS = ("candidate", "champion", "base")


def metric(values: Mapping[str, float] | None, dim: int, name: str) -> float | None:
    """``dim_384_cosine_map@100`` (or its MLflow spelling ``..._map_at_100``) from a metrics dict."""
    return lookup(values, dim, name)


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


def group_rows(
    metrics: Mapping[str, Mapping[str, float] | None], dims: Sequence[int], kind: str
) -> list[dict[str, Any]]:
    """map@100 per (group, dim) for ``kind`` "slice" or "intent": ``{"group", "dim", "candidate", ...}``."""
    groups: list[str] = []
    for col in COLUMNS:
        groups += [g for g in groups_in(metrics.get(col), kind) if g not in groups]
    rows = []
    for group in groups:
        for dim in dims:
            row: dict[str, Any] = {"group": group, "dim": dim}
            row.update({col: lookup(metrics.get(col), dim, PRIMARY, kind, group) for col in COLUMNS})
            if any(row[col] is not None for col in COLUMNS):
                rows.append(row)
    return rows


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f


def interval_text(decision: Mapping[str, Any]) -> str | None:
    """``map@100 at 384 +0.0123 [0.0081, 0.0170]`` from a decision dict, or None when it has no interval."""
    delta, low, high = (_num(decision.get(k)) for k in ("delta", "ci_low", "ci_high"))
    if delta is None:
        return None
    dim = decision.get("primary_dim")
    where = f" at {dim}" if dim is not None else ""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return f"{PRIMARY}{where} {delta:+.4f}"
    return f"{PRIMARY}{where} {delta:+.4f} [{low:.4f}, {high:.4f}]"


def format_decision(decision: Mapping[str, Any]) -> str:
    """``PROMOTED (version 7 over 6): map@100 at 384 +0.0123 [0.0081, 0.0170]: <reason>``.

    A rejection with a champion reads ``KEPT champion (version 6): ...``; without one,
    ``REJECTED (version 7, no champion): ...``.
    """
    cand, champ = decision.get("candidate_version"), decision.get("champion_version")
    if decision.get("promote"):
        head = "PROMOTED" + (
            f" (version {cand} over {champ})"
            if cand is not None and champ not in (None, cand)
            else (f" (version {cand})" if cand is not None else "")
        )
    elif champ is not None:
        head = f"KEPT champion (version {champ})"
    else:
        head = "REJECTED" + (f" (version {cand}, no champion)" if cand is not None else " (no champion)")
    parts = [head]
    interval = interval_text(decision)
    if interval:
        parts.append(interval)
    if decision.get("reason"):
        parts.append(str(decision["reason"]))
    return ": ".join(parts)


def saturation_note(decision: Mapping[str, Any] | None) -> str | None:
    """The warning shown when the champion already scores >= SATURATION on this eval."""
    if not decision or not decision.get("saturated"):
        return None
    value = _num(decision.get("champion_primary"))
    shown = f" ({value:.4f})" if value is not None else ""
    return (
        f"eval saturated: the champion's {PRIMARY}{shown} is >= {SATURATION} on this eval set, "
        "which cannot separate models any more"
    )


def decision_line(report: Mapping[str, Any]) -> str:
    if report.get("skipped"):
        return f"SKIPPED training: {report['skipped']}"
    decision = report.get("decision") or {}
    if not decision:
        return "no decision"
    return format_decision(decision)


def ui_hint(report: Mapping[str, Any]) -> str:
    """``mlflow ui`` on the run's store (a local URI), or the server to open."""
    uri = str(report.get("tracking_uri") or "")
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    if uri:
        return f"mlflow ui --backend-store-uri {uri}"
    return "mlflow ui --backend-store-uri <the tracking URI>"


def mlflow_line(report: Mapping[str, Any]) -> str:
    if report.get("mlflow_url"):
        return f"MLflow run: {report['mlflow_url']}"
    return f"MLflow run {report.get('run_id')}: open the UI with `{ui_hint(report)}` (then http://127.0.0.1:5000)"


def _sorted_deltas(deltas: Mapping[Any, Any]) -> list[tuple[str, float]]:
    """Deltas by dim, largest dim first (numeric order, not string order)."""
    items = []
    for k, v in deltas.items():
        num = _num(v)
        if num is not None:
            items.append((str(k), num))

    def order(item: tuple[str, float]) -> tuple[int, float, str]:
        try:
            return (0, -float(item[0]), item[0])
        except ValueError:
            return (1, 0.0, item[0])

    return sorted(items, key=order)


def _md_group_table(rows: list[dict[str, Any]], label: str) -> list[str]:
    if not rows:
        return []
    out = [
        "",
        f"eval {PRIMARY} per {label}:",
        "",
        f"| {label} | dim | candidate | champion | base |",
        "|---|---:|---:|---:|---:|",
    ]
    out += [
        f"| {r['group']} | {r['dim']} | {_fmt(r['candidate'])} | {_fmt(r['champion'])} | {_fmt(r['base'])} |"
        for r in rows
    ]
    return out


def to_markdown(report: Mapping[str, Any]) -> str:
    metrics = report.get("metrics", {}) or {}
    dims = report.get("dims", ())
    rows = metric_rows(metrics, dims)
    lines = [
        f"# train-and-evaluate: {report.get('profile')}",
        "",
        f"**Decision:** {decision_line(report)}",
        "",
        "Every figure below is measured on the eval split (held-out queries); the decision compares "
        "candidate and champion there.",
        "",
    ]
    note = saturation_note(report.get("decision"))
    if note:
        lines += [f"**Warning:** {note}", ""]
    lines += [f"**Synthesis:** {report.get('synthesis', '?')} (`{report.get('data_dir')}`)", ""]
    url = report.get("mlflow_url")
    run_id = report.get("run_id")
    lines.append(f"**MLflow run:** [{run_id}]({url})" if url else f"**MLflow run:** `{run_id}` (`{ui_hint(report)}`)")
    lines.append("")
    if rows:
        lines += ["| dim | metric (eval split) | candidate | champion | base |", "|---:|---|---:|---:|---:|"]
        lines += [
            f"| {r['dim']} | {r['metric']} | {_fmt(r['candidate'])} | {_fmt(r['champion'])} | {_fmt(r['base'])} |"
            for r in rows
        ]
    lines += _md_group_table(group_rows(metrics, dims, "slice"), "slice")
    primary = [report["primary_dim"]] if report.get("primary_dim") in dims else list(dims)[:1]
    lines += _md_group_table(group_rows(metrics, primary, "intent"), "intent")
    lines += grid_text((report.get("decision") or {}).get("serving"), markdown=True)
    deltas = (report.get("decision") or {}).get("deltas")
    if deltas:
        lines += [
            "",
            "eval map@100 deltas vs champion: " + ", ".join(f"dim {k} {v:+.4f}" for k, v in _sorted_deltas(deltas)),
        ]
    return "\n".join(lines) + "\n"


def _text_table(
    rows: list[dict[str, Any]], first: tuple[str, int, str], second: tuple[str, int, str], note: str = ""
) -> list[str]:
    """Fixed-width rows: two key columns (name, width, alignment), then candidate / champion / base."""
    if not rows:
        return []
    (k1, w1, a1), (k2, w2, a2) = first, second
    label = "slice" if k1 == "group" else k1
    out = [f"{label:{a1}{w1}}  {k2:{a2}{w2}}  " + "  ".join(f"{c:>9}" for c in COLUMNS) + note]
    for r in rows:
        out.append(f"{r[k1]!s:{a1}{w1}}  {r[k2]!s:{a2}{w2}}  " + "  ".join(f"{_fmt(r[c]):>9}" for c in COLUMNS))
    return [*out, ""]


def to_text(report: Mapping[str, Any]) -> str:
    metrics = report.get("metrics", {}) or {}
    dims = report.get("dims", ())
    rows = metric_rows(metrics, dims)
    out = _text_table(rows, ("dim", 4, ">"), ("metric", 8, "<"), "   (eval split)")
    out += _text_table(group_rows(metrics, dims, "slice"), ("group", 16, "<"), ("dim", 4, ">"), f"   (eval {PRIMARY})")
    out += grid_text((report.get("decision") or {}).get("serving"))
    out.append(f"synthesis: {report.get('synthesis')} ({report.get('data_dir')})")
    note = saturation_note(report.get("decision"))
    if note:
        out.append(f"WARNING: {note}")
    out.append(decision_line(report))
    out.append(mlflow_line(report))
    return "\n".join(out)
