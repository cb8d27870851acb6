"""The champion/challenger rule, pure: no MLflow, no I/O.

:func:`decide` compares a candidate's :class:`~pipelines.metrics.Scores` with the champion's on the
same eval set: a seeded paired bootstrap (:mod:`pipelines.bootstrap`) over queries of the per-query
average precision at the primary dim, guarded by the other dims and the ``human`` slice, with ties
promoted on a newer catalog when configured. :class:`Decision` is its outcome, and
:func:`verdict_line` / :func:`superseded_line` / :func:`run_name_for` the words a run and a version
show for it. :mod:`pipelines.registry` reads and writes the MLflow registry around this rule
(``tests/unit/test_registry_rules.py`` imports this module with mlflow made unimportable).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.bootstrap import paired_bootstrap
from pipelines.metrics import Scores, is_saturated, metric_key
from pipelines.report import format_decision

if TYPE_CHECKING:
    from pipelines.config import RegistryConfig


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


def with_changes(d: Decision, **changes: Any) -> Decision:
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
        return with_changes(base, reason=f"the {who} has no per-query scores at dim {pd_}; cannot compare")
    if len(cand_ap) != len(champ_ap):
        return with_changes(
            base, reason=f"scored on different eval sets ({len(cand_ap)} vs {len(champ_ap)} queries); cannot compare"
        )
    iv = paired_bootstrap(cand_ap, champ_ap, reg.bootstrap_resamples, reg.bootstrap_seed)
    base = with_changes(base, delta=iv.delta, ci_low=iv.low, ci_high=iv.high)
    if not iv.finite:
        return with_changes(base, reason="non-finite per-query scores; never promoted")
    human_drop = guarded_slice_drop(cand.metrics, champ.metrics, pd_, reg.epsilon)
    if human_drop is not None:
        return with_changes(
            base,
            reason=f"map@100 on the {GUARDED_SLICE} slice at dim {pd_} drops by {human_drop:+.4f}, "
            f"more than epsilon {reg.epsilon:g}",
        )
    others_worse = [d for d, delta in deltas.items() if d != pd_ and not delta >= -reg.epsilon]
    any_worse = [d for d, delta in deltas.items() if not delta >= -reg.epsilon]
    drop = ", ".join(f"dim {d} {deltas[d]:+.4f}" for d in (others_worse or any_worse))
    if iv.low > reg.margin:
        if others_worse:
            return with_changes(
                base, reason=f"better at dim {pd_}, but map@100 drops by more than epsilon {reg.epsilon:g} at {drop}"
            )
        return with_changes(
            base, promote=True, reason=f"better than the champion (lower bound above the margin {reg.margin:g})"
        )
    newer = bool(candidate_catalog) and bool(champion_catalog) and candidate_catalog != champion_catalog
    if iv.contains(0.0):
        if reg.promote_on_tie_with_newer_catalog and newer and not any_worse:
            return with_changes(base, promote=True, reason="not worse, newer catalog")
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
        return with_changes(base, reason=why)
    if iv.high < 0:
        return with_changes(base, reason="worse than the champion (the whole interval is below 0)")
    return with_changes(base, reason=f"not better by more than the margin {reg.margin:g} (lower bound {iv.low:.4f})")


VERDICTS = ("PROMOTED", "REJECTED", "SUPERSEDED", "SKIPPED")
"""The first word of every run's and version's description (the runs list and the version list show it)."""


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
