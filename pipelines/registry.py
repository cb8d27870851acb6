"""Champion/challenger promotion in the MLflow Model Registry.

Each candidate becomes a version of ``cfg.registry.model_name``. The incumbent is the version under
the ``champion`` alias, always read with ``get_model_version_by_alias`` (search results may carry
empty aliases). The champion is re-scored on the candidate's eval set (through an injected
``evaluate`` callable) and :func:`decide` applies the rule: a seeded paired bootstrap over queries of
the per-query average precision at the primary dim. On promotion the aliases move: ``champion`` ->
candidate, ``previous-champion`` -> old champion; the decision tags are written first.

Races. The champion is scored before the lock (the slow part) and the candidate remembers which
version that was. Inside the lock the champion is read again: when it is still that version the rule
decides; when a racing promotion moved it meanwhile, the candidate must still pass the rule against
the version it was scored against AND beat the new champion by point estimate on the same eval set
(re-scored as needed). So when two candidates both beat the old champion, the better of the two ends
as champion whichever takes the lock first (an exact tie keeps the one that came first).
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines import tracking
from pipelines.bootstrap import paired_bootstrap
from pipelines.errors import InputError, TrackingError
from pipelines.metrics import LOAD_LINE, PRIMARY, Scores, headline, is_saturated, metric_key
from pipelines.report import format_decision

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from pipelines.config import PipelineConfig, RegistryConfig

RUN_ID_TAG = "recipe_embed.run_id"
CATALOG_DIGEST_TAG = "recipe_embed.catalog_digest"
SATURATED_TAG = "eval_saturated"

Evaluate = Callable[[str], "Scores | Mapping[str, float]"]
LockFactory = Callable[[], AbstractContextManager[Any]]

MODEL_DESCRIPTION = (
    "Recipe-search sentence embedder (recipe-embed): questions about recipes, ingredients, diets and times "
    "-> the catalog's answers. Fine-tuned with MatryoshkaLoss(MultipleNegativesRankingLoss); embeddings can be "
    "truncated to {dims} dimensions. The version under the alias '{alias}' is the one to serve: {load}. "
    "Each version's description is its promotion decision."
)


@dataclass(frozen=True)
class Decision:
    """The outcome of one comparison.

    ``deltas``: candidate minus champion map@100 per dim (point estimates). ``delta`` / ``ci_low`` /
    ``ci_high``: the mean per-query average-precision difference at ``primary_dim`` and its 95% paired
    bootstrap interval, against ``scored_against`` (the champion the candidate was first scored against;
    it differs from ``champion_version`` only when a racing promotion moved the alias meanwhile).
    """

    promote: bool
    reason: str
    deltas: dict[int, float] = field(default_factory=dict)
    candidate_version: str | None = None
    champion_version: str | None = None
    """The incumbent the candidate was compared with (None: there was none)."""
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    primary_dim: int | None = None
    champion_primary: float | None = None
    saturated: bool = False
    scored_against: str | None = None

    @property
    def label(self) -> str:
        return "promoted" if self.promote else "rejected"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["decision"] = self.label
        d["deltas"] = {str(k): _json_float(v) for k, v in self.deltas.items()}
        for k in ("delta", "ci_low", "ci_high", "champion_primary"):
            if d[k] is not None:
                d[k] = _json_float(d[k])
        return d

    def line(self) -> str:
        """``PROMOTED (version 7 over 6): map@100 at 384 +0.0123 [0.0081, 0.0170]: ...``."""
        return format_decision(self.to_dict())


def _json_float(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def as_scores(value: Scores | Mapping[str, float] | None) -> Scores | None:
    """A metrics dict becomes :class:`Scores` without per-query values (it cannot be compared)."""
    if value is None or isinstance(value, Scores):
        return value
    return Scores({k: float(v) for k, v in value.items()})


def _with(d: Decision, **changes: Any) -> Decision:
    return Decision(**{**asdict(d), **changes})


GUARDED_SLICE = "human"
"""The eval slice whose map@100 at the primary dim may not drop by more than ``registry.epsilon``."""


def guarded_slice_drop(
    candidate: Mapping[str, float], champion: Mapping[str, float], dim: int, epsilon: float
) -> float | None:
    """The candidate's change on :data:`GUARDED_SLICE` when it drops by more than ``epsilon``, else None
    (also None when either side lacks the slice, e.g. a user's own eval file)."""
    key = metric_key(dim, kind="slice", group=GUARDED_SLICE)
    if key not in candidate or key not in champion:
        return None
    delta = float(candidate[key]) - float(champion[key])
    return delta if not delta >= -epsilon else None


def decide(
    candidate: Scores | Mapping[str, float],
    champion: Scores | Mapping[str, float] | None,
    reg: RegistryConfig,
    dims: Sequence[int],
    *,
    candidate_catalog: str | None = None,
    champion_catalog: str | None = None,
) -> Decision:
    """Pure rule, on the same eval set:

    - a candidate with a missing or non-finite metric is never promoted;
    - no champion: promote;
    - paired bootstrap (``reg.bootstrap_resamples``, seed ``reg.bootstrap_seed``) over queries of the
      candidate's minus the champion's average precision at ``reg.primary_dim``: promote when the 95%
      interval's lower bound is above ``reg.margin`` and no other dim's map@100 drops by more than
      ``reg.epsilon``;
    - never when the ``human`` slice's map@100 at ``reg.primary_dim`` drops by more than ``reg.epsilon``;
    - tie: promote ("not worse, newer catalog") when ``reg.promote_on_tie_with_newer_catalog``, the
      interval contains 0, the catalogs' digests differ and no dim drops by more than ``reg.epsilon``.
    """
    cand = as_scores(candidate)
    champ = as_scores(champion)
    assert cand is not None
    pd_ = reg.primary_dim
    if not cand.metrics:
        return Decision(False, "candidate has no metrics", primary_dim=pd_)
    bad = sorted(k for k, v in cand.metrics.items() if not _finite(v))
    if bad:
        shown = ", ".join(f"{k}={cand.metrics[k]}" for k in bad[:3]) + (" ..." if len(bad) > 3 else "")
        return Decision(False, f"candidate has {len(bad)} non-finite metric(s): {shown}", primary_dim=pd_)
    missing = [metric_key(d) for d in dims if metric_key(d) not in cand.metrics]
    if pd_ not in dims:
        missing.insert(0, metric_key(pd_))
    if missing:
        return Decision(False, f"candidate metrics lack {', '.join(missing)}", primary_dim=pd_)
    if champ is None:
        return Decision(True, "no champion yet", primary_dim=pd_)
    deltas = {
        d: float(cand.metrics[metric_key(d)]) - float(champ.metrics[metric_key(d)])
        for d in dims
        if metric_key(d) in champ.metrics
    }
    pk = metric_key(pd_)
    if pk not in champ.metrics:
        return Decision(False, f"champion metrics lack {pk}; cannot compare", deltas, primary_dim=pd_)
    champ_primary = float(champ.metrics[pk])
    base = Decision(
        False,
        "",
        deltas,
        primary_dim=pd_,
        champion_primary=champ_primary,
        saturated=is_saturated(champ_primary),
    )
    cand_ap, champ_ap = cand.ap(pd_), champ.ap(pd_)
    if cand_ap is None or champ_ap is None:
        who = "candidate" if cand_ap is None else "champion"
        return _with(base, reason=f"the {who} has no per-query scores at dim {pd_}; cannot compare")
    if len(cand_ap) != len(champ_ap):
        return _with(
            base, reason=f"scored on different eval sets ({len(cand_ap)} vs {len(champ_ap)} queries); cannot compare"
        )
    iv = paired_bootstrap(cand_ap, champ_ap, reg.bootstrap_resamples, reg.bootstrap_seed)
    base = _with(base, delta=iv.delta, ci_low=iv.low, ci_high=iv.high)
    if not iv.finite:
        return _with(base, reason="non-finite per-query scores; never promoted")
    human_drop = guarded_slice_drop(cand.metrics, champ.metrics, pd_, reg.epsilon)
    if human_drop is not None:
        return _with(
            base,
            reason=f"map@100 on the {GUARDED_SLICE} slice at dim {pd_} drops by {human_drop:+.4f}, "
            f"more than epsilon {reg.epsilon:g}",
        )
    others_worse = [d for d, delta in deltas.items() if d != pd_ and not delta >= -reg.epsilon]
    any_worse = [d for d, delta in deltas.items() if not delta >= -reg.epsilon]
    drop = ", ".join(f"dim {d} {deltas[d]:+.4f}" for d in (others_worse or any_worse))
    if iv.low > reg.margin:
        if others_worse:
            return _with(
                base, reason=f"better at dim {pd_}, but map@100 drops by more than epsilon {reg.epsilon:g} at {drop}"
            )
        return _with(
            base, promote=True, reason=f"better than the champion (lower bound above the margin {reg.margin:g})"
        )
    newer = bool(candidate_catalog) and bool(champion_catalog) and candidate_catalog != champion_catalog
    if iv.contains(0.0):
        if reg.promote_on_tie_with_newer_catalog and newer and not any_worse:
            return _with(base, promote=True, reason="not worse, newer catalog")
        why = "a tie (the interval contains 0)"
        if any_worse:
            why += f", and map@100 drops by more than epsilon {reg.epsilon:g} at {drop}"
        elif not reg.promote_on_tie_with_newer_catalog:
            why += "; ties are not promoted (registry.promote_on_tie_with_newer_catalog is false)"
        elif not newer:
            why += (
                " on the same catalog"
                if candidate_catalog and candidate_catalog == champion_catalog
                else " (the catalog digests are unknown)"
            )
        return _with(base, reason=why)
    if iv.high < 0:
        return _with(base, reason="worse than the champion (the whole interval is below 0)")
    return _with(base, reason=f"not better by more than the margin {reg.margin:g} (lower bound {iv.low:.4f})")


# --- registry access ---------------------------------------------------------------------------------


def _not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


def get_alias(c: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version under ``alias``, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise


def find_version(c: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version registered earlier for ``run_id`` (lowest number), or None."""
    from mlflow.exceptions import MlflowException

    try:
        found = c.search_model_versions(f"name = '{name}' and tags.`{RUN_ID_TAG}` = '{run_id}'")
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise
    if not found:
        return None
    return min(found, key=lambda v: int(v.version))


def register_version(cfg: PipelineConfig, run_id: str, model_uri: str) -> ModelVersion:
    """Register ``model_uri`` as a version of the model; a rerun for the same run reuses its version.

    Safe against two processes registering one run at once: the check-then-register step holds a
    file lock keyed by the tracking URI (re-entered harmlessly under the promotion lock, which is a
    different file), and any duplicate that still appears (two hosts on one server) is deleted,
    keeping the lowest version for the run.
    """
    import mlflow

    from pipelines.locks import file_lock, lock_path

    c = tracking.client(cfg)
    name = cfg.registry.model_name
    uri = tracking.resolve_tracking_uri(cfg)
    with file_lock(lock_path(uri, f"register-{name}"), cfg.registry.lock_timeout_s):
        existing = find_version(c, name, run_id)
        if existing is None:
            mv = mlflow.register_model(model_uri, name, tags={RUN_ID_TAG: run_id})
            mine = str(mv.version)
            describe_model(cfg, c)
        else:
            mine = str(existing.version)
        return _dedupe_versions(c, name, run_id, mine)


def _dedupe_versions(c: MlflowClient, name: str, run_id: str, mine: str) -> ModelVersion:
    """Keep the lowest version registered for ``run_id``; delete ``mine`` if it is a later duplicate."""
    from mlflow.exceptions import MlflowException

    lowest = find_version(c, name, run_id)
    keep = str(lowest.version) if lowest is not None else mine
    if keep != mine:
        with contextlib.suppress(MlflowException):
            c.delete_model_version(name, mine)
    return c.get_model_version(name, keep)


def model_description(cfg: PipelineConfig) -> str:
    reg = cfg.registry
    return MODEL_DESCRIPTION.format(
        dims=", ".join(map(str, cfg.evaluation.dims)),
        alias=reg.champion_alias,
        load=LOAD_LINE.format(name=reg.model_name, alias=reg.champion_alias),
    )


def describe_model(cfg: PipelineConfig, c: MlflowClient) -> None:
    """Give the registered model its description (what it is, how to load the champion) when it differs."""
    name = cfg.registry.model_name
    text = model_description(cfg)
    if (c.get_registered_model(name).description or "") != text:
        c.update_registered_model(name, description=text)


def default_lock(cfg: PipelineConfig) -> AbstractContextManager[Any]:
    """The promotion lock keyed by the tracking URI (see :mod:`pipelines.locks`); a flow may inject
    a factory that also holds a distributed lock."""
    from pipelines.locks import registry_lock

    return registry_lock(cfg)()


def _decision_tags(decision: Decision) -> dict[str, str]:
    """The decision as tags, each said once and none empty (a missing champion or interval leaves its tag out)."""
    data = decision.to_dict()
    tags = {
        "decision": decision.label,
        "decision_reason": decision.reason[:4900],
        "decision_line": verdict_line(decision)[:4900],
        "decision_deltas": json.dumps(data["deltas"]) if decision.deltas else "",
        "decision_champion_version": decision.champion_version or "",
        "decision_candidate_version": decision.candidate_version or "",
        "decision_scored_against": decision.scored_against or "",
        SATURATED_TAG: "true" if decision.saturated else "false",
    }
    if decision.delta is not None:
        tags["decision_delta"] = f"{decision.delta:+.6f}"
        tags["decision_ci_low"] = f"{decision.ci_low:.6f}" if decision.ci_low is not None else ""
        tags["decision_ci_high"] = f"{decision.ci_high:.6f}" if decision.ci_high is not None else ""
    return {k: v for k, v in tags.items() if v}


VERDICTS = ("PROMOTED", "REJECTED", "SUPERSEDED", "SKIPPED")
"""The first word of every run's and version's description (the runs list and the version list show it)."""

CHAMPION_TAG = "champion"
"""``champion=true`` on the one run whose model holds the champion alias (runs list: ``tags.champion = 'true'``)."""


def verdict_line(decision: Decision) -> str:
    """The decision line starting with its verdict word: ``PROMOTED (version 7 over 6): ...`` or
    ``REJECTED: KEPT champion (version 6): map@100 at 384 -0.0100 [...]: <reason>``."""
    line = decision.line()
    word = "PROMOTED" if decision.promote else "REJECTED"
    return line if line.startswith(word) else f"{word}: {line}"


def superseded_line(old_description: str, by_version: str) -> str:
    """A former champion's description once ``by_version`` takes the alias (said once, however often called)."""
    import datetime as dt

    if old_description.startswith("SUPERSEDED"):
        return old_description
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    return f"SUPERSEDED by version {by_version} ({day}); was {old_description}".strip()


def run_name_for(label: str, version: str | None, old_name: str | None) -> str:
    """``promoted-v3-<flow run name>``, ``rejected-v4-...``, ``skipped-...``: the run name says what happened."""
    head = f"{label}-v{version}" if version else label
    old = old_name or ""
    if old.startswith(f"{label}-"):
        return old
    return f"{head}-{old}" if old else head


def show_verdict(c: MlflowClient, run_id: str, label: str, line: str, version: str | None = None) -> None:
    """The run's description is its verdict line; its name starts with what happened."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE

    c.set_tag(run_id, MLFLOW_RUN_NOTE, line[:4900])
    c.set_tag(run_id, MLFLOW_RUN_NAME, run_name_for(label, version, c.get_run(run_id).info.run_name))


def move_champion_tag(c: MlflowClient, new_run: str, old_run: str | None) -> None:
    """``champion=true`` on ``new_run`` only; taken off the former champion's run."""
    c.set_tag(new_run, CHAMPION_TAG, "true")
    if old_run and old_run != new_run:
        with contextlib.suppress(Exception):  # a deleted run: nothing to take off
            c.delete_tag(old_run, CHAMPION_TAG)


def _run_tag(c: MlflowClient, run_id: str | None, key: str) -> str | None:
    if not run_id:
        return None
    try:
        return c.get_run(run_id).data.tags.get(key)
    except Exception:  # a deleted or foreign run: no tag to compare
        return None


def _version_run_id(mv: ModelVersion) -> str | None:
    return (mv.tags or {}).get(RUN_ID_TAG) or mv.run_id


def promote(
    cfg: PipelineConfig,
    run_id: str,
    model_uri: str,
    candidate: Scores | Mapping[str, float],
    evaluate: Evaluate,
    lock: LockFactory | None = None,
) -> Decision:
    """Register the candidate and decide, under the lock, against the champion re-scored on the
    candidate's eval set.

    ``evaluate(uri)`` returns a model's :class:`Scores` on the candidate's eval set, for
    ``models:/<name>/<version>`` (the champion) and, when ``candidate`` carries no per-query scores,
    for ``model_uri`` itself. The decision tags go on the run and the version (and the version's
    description is its decision line) before any alias moves; the champion's metrics are logged on the
    run as ``champion_*`` and the paired per-query scores as ``decision/per_query_ap.parquet``.
    """
    if not run_id:
        raise InputError("promote: a run id is required")
    if not model_uri:
        raise InputError(f"promote: run {run_id} has no logged model URI")
    tracking.connect(cfg)
    reg = cfg.registry
    name = reg.model_name
    dims = tuple(cfg.evaluation.dims)
    c = tracking.client(cfg)
    cand = as_scores(candidate)
    assert cand is not None
    scored: dict[str, Scores] = {}

    def score(version: str) -> Scores:
        if version not in scored:
            got = as_scores(evaluate(f"models:/{name}/{version}"))
            assert got is not None
            scored[version] = got
        return scored[version]

    def full_candidate() -> Scores:
        nonlocal cand
        assert cand is not None
        if cand.ap(reg.primary_dim) is None:
            again = as_scores(evaluate(model_uri))
            if again is not None and again.per_query_ap:
                cand = Scores(cand.metrics, again.per_query_ap)
        return cand

    def catalog_of(mv: ModelVersion | None) -> str | None:
        return _run_tag(c, _version_run_id(mv), CATALOG_DIGEST_TAG) if mv is not None else None

    # Score the champion before taking the lock (the slow part); remember which version it was.
    first = get_alias(c, name, reg.champion_alias)
    if first is not None and _version_run_id(first) == run_id:
        first = None  # the candidate itself (a rerun after a crash)
    if first is not None and decide(cand, None, reg, dims).promote:
        score(str(first.version))
        full_candidate()

    with lock() if lock is not None else default_lock(cfg):
        version = register_version(cfg, run_id, model_uri)
        v = str(version.version)
        incumbent = get_alias(c, name, reg.champion_alias)
        if incumbent is not None and str(incumbent.version) == v:
            return Decision(True, f"version {v} is already the champion", {}, v, v, primary_dim=reg.primary_dim)
        mine = _run_tag(c, run_id, CATALOG_DIGEST_TAG)
        baseline = str(first.version) if first is not None else None
        current = str(incumbent.version) if incumbent is not None else None
        against: Scores | None = None
        if current is None:
            d = decide(cand, None, reg, dims)
        elif current == baseline:
            against = score(current)
            d = decide(full_candidate(), against, reg, dims, candidate_catalog=mine, champion_catalog=catalog_of(first))
        else:
            # A racing promotion moved the champion since this candidate was scored.
            assert current is not None
            d = _decide_after_race(
                cfg, cand, baseline, current, score, full_candidate, mine, catalog_of(first), catalog_of(incumbent)
            )
            against = scored.get(current) or (scored.get(baseline) if baseline is not None else None)
        decision = _with(d, candidate_version=v, champion_version=current, scored_against=baseline or current)
        if against is not None and decision.champion_primary is None:
            cp = against.metrics.get(metric_key(reg.primary_dim))
            if cp is not None:
                decision = _with(decision, champion_primary=float(cp), saturated=is_saturated(float(cp)))
        try:
            tags = _decision_tags(decision)
            for k, val in tags.items():
                c.set_model_version_tag(name, v, k, val)
            c.update_model_version(name, v, description=tags["decision_line"])
            tracking.set_tags(run_id, {**tags, "registered_version": v})
            show_verdict(c, run_id, decision.label, tags["decision_line"], v)
            if against is not None:
                tracking.log_metrics(run_id, headline(against.metrics, reg.primary_dim, "champion"), prefix="champion_")
                _log_per_query(run_id, cand, against)
            if decision.promote:
                if incumbent is not None:
                    c.set_registered_model_alias(name, reg.previous_alias, str(incumbent.version))
                c.set_registered_model_alias(name, reg.champion_alias, v)
                if incumbent is not None:
                    was = c.get_model_version(name, str(incumbent.version)).description or ""
                    c.update_model_version(name, str(incumbent.version), description=superseded_line(was, v)[:4900])
                move_champion_tag(c, run_id, _version_run_id(incumbent) if incumbent is not None else None)
        except Exception as exc:
            from mlflow.exceptions import MlflowException

            if isinstance(exc, MlflowException):
                raise TrackingError(f"promotion of {name} version {v} failed: {exc.message}") from exc
            raise
    return decision


def _decide_after_race(
    cfg: PipelineConfig,
    cand: Scores,
    baseline: str | None,
    current: str,
    score: Callable[[str], Scores],
    full_candidate: Callable[[], Scores],
    cand_catalog: str | None,
    baseline_catalog: str | None,
    current_catalog: str | None,
) -> Decision:
    """The champion is ``current`` now, not ``baseline`` (None: there was none) as when the candidate
    was scored: pass the rule against ``baseline``, then beat ``current`` by point estimate."""
    reg = cfg.registry
    dims = tuple(cfg.evaluation.dims)
    if baseline is None:
        first = decide(cand, None, reg, dims)
    else:
        first = decide(
            full_candidate(),
            score(baseline),
            reg,
            dims,
            candidate_catalog=cand_catalog,
            champion_catalog=baseline_catalog,
        )
    if not first.promote:
        return _with(first, reason=f"{first.reason} (against version {baseline})")
    now = score(current)
    pk = metric_key(reg.primary_dim)
    mine, theirs = float(cand.metrics[pk]), float(now.metrics.get(pk, math.nan))
    deltas = {
        d: float(cand.metrics[metric_key(d)]) - float(now.metrics[metric_key(d)])
        for d in dims
        if metric_key(d) in now.metrics
    }
    was = f"version {baseline}" if baseline is not None else "no champion"
    if mine > theirs:
        return _with(
            first,
            deltas=deltas,
            reason=(
                f"{first.reason} (against {was}); version {current} was promoted meanwhile and this candidate "
                f"beats it by point estimate ({PRIMARY} {mine - theirs:+.4f})"
            ),
        )
    return _with(
        first,
        promote=False,
        deltas=deltas,
        reason=(
            f"passes against {was}, but version {current}, promoted meanwhile, is at least as good by point "
            f"estimate ({PRIMARY} {mine - theirs:+.4f})"
        ),
    )


def _log_per_query(run_id: str, candidate: Scores, champion: Scores) -> None:
    """The paired per-query average precision (candidate and re-scored champion) as a run artifact."""
    import pandas as pd

    data: dict[str, Any] = {}
    for prefix, s in (("candidate", candidate), ("champion", champion)):
        for d, ap in s.per_query_ap.items():
            data[f"{prefix}_ap_dim_{d}"] = np.asarray(ap, dtype=np.float64)
    if not data or len({len(v) for v in data.values()}) != 1:
        return
    with tempfile.TemporaryDirectory(prefix="recipe-embed-decision-") as tmp:
        path = Path(tmp) / "per_query_ap.parquet"
        pd.DataFrame(data).to_parquet(path, index=False)
        tracking.client().log_artifact(run_id, str(path), artifact_path="decision")


def champion(cfg: PipelineConfig) -> dict[str, Any] | None:
    """The current champion: version, run id, its run's metrics, the decision tags and the load line."""
    c = tracking.client(cfg)
    name = cfg.registry.model_name
    mv = get_alias(c, name, cfg.registry.champion_alias)
    if mv is None:
        return None
    metrics: dict[str, float] = {}
    run_id = (mv.tags or {}).get(RUN_ID_TAG) or mv.run_id
    if run_id:
        with contextlib.suppress(Exception):
            metrics = tracking.read_metrics(run_id, c=c)
    return {
        "name": name,
        "version": str(mv.version),
        "run_id": run_id,
        "source": mv.source,
        "metrics": metrics,
        "tags": dict(mv.tags or {}),
        "load": LOAD_LINE.format(name=name, alias=cfg.registry.champion_alias),
    }
