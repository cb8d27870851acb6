"""Keep what the base model knew: fine-tuned and base weights mixed, the mix chosen on validation.

Fine-tuning on synthesized questions teaches the catalog's names and our wordings, and wears away some
of what the base model knew about the way people type (dish names, synonyms missing from the alias
table). A weighted average of the fine-tuned and the base weights, ``alpha * tuned + (1 - alpha) * base``
(weight-space ensembling, "WiSE-FT": Wortsman et al., *Robust fine-tuning of zero-shot models*, CVPR
2022), keeps much of both, at no cost when serving: it is one model of the same size.

``training.base_interpolation`` lists the ``alpha`` values tried after training (1 = the fine-tuned
model, 0 = the base model; empty = keep the fine-tuned model). Each is scored on the validation split
(mean map@100 over the Matryoshka dims; averaged over validation's slices where it has them, so the
hand-written ``human_dev`` questions weigh as much as the synthesized ones); :func:`choose_alpha` takes
the smallest ``alpha`` whose score is within ``training.base_interpolation_tolerance`` of the best: the
validation split is small and drawn from the training distribution, and among mixes it cannot tell
apart, the one nearer the base model keeps more of what the base knew. Eval never takes part in the choice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.metrics import PRIMARY, SELECTION, parse_key


@dataclass(frozen=True)
class Interpolation:
    """The chosen ``alpha`` and every tried ``alpha``'s validation score (mean map@100 over dims)."""

    alpha: float
    scores: dict[float, float]
    metrics: dict[str, float] = field(default_factory=dict)
    """The validation metrics of the chosen mix."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "validation_mean_map@100": {f"{a:g}": round(s, 6) for a, s in sorted(self.scores.items())},
        }


def mean_primary(metrics: Mapping[str, float], dims: Sequence[int]) -> float:
    """The mean over ``dims`` of validation's score in evaluator metrics: :data:`~pipelines.metrics.SELECTION`
    (map@100 averaged over validation's slices) where the metrics have it, else ``map@100``."""
    whole = [(parsed, float(v)) for k, v in metrics.items() if (parsed := parse_key(k)) and parsed[0] is None]
    name = SELECTION if any(p[3] == SELECTION for p, _ in whole) else PRIMARY
    values = [v for d in dims for p, v in whole if p[2] == d and p[3] == name]
    if len(values) != len(dims):
        raise ValueError(f"expected one {name} per dim {list(dims)}, found {len(values)} in the metrics")
    return sum(values) / len(values)


def choose_alpha(scores: Mapping[float, float], tolerance: float) -> float:
    """The smallest ``alpha`` whose score is within ``tolerance`` of the best score."""
    if not scores:
        raise ValueError("no alpha was scored")
    best = max(scores.values())
    return min(a for a, s in scores.items() if s >= best - tolerance)


def mixed_state(base: Mapping[str, Any], tuned: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """``alpha * tuned + (1 - alpha) * base`` for every floating-point tensor; others from ``tuned``."""
    if set(base) != set(tuned):
        missing = sorted(set(base) ^ set(tuned))[:3]
        raise ValueError(f"the base and the fine-tuned model differ in their weights: {missing}")
    out: dict[str, Any] = {}
    for name, t in tuned.items():
        b = base[name]
        out[name] = (b.to(t.device, t.dtype).lerp(t, alpha)) if t.is_floating_point() else t
    return out


def interpolate_toward_base(
    model: Any,
    base_state: Mapping[str, Any],
    evaluate: Callable[[Any], Mapping[str, float]],
    dims: Sequence[int],
    alphas: Sequence[float],
    tolerance: float,
) -> Interpolation:
    """Score each mix of ``model`` (fine-tuned, changed in place) and ``base_state`` with ``evaluate``
    (validation metrics of a model); leave ``model`` holding the chosen mix."""
    import torch

    tuned = {k: v.detach().clone() for k, v in model.state_dict().items()}
    scores: dict[float, float] = {}
    metrics: dict[float, dict[str, float]] = {}
    with torch.no_grad():
        for alpha in sorted(set(alphas)):
            model.load_state_dict(mixed_state(base_state, tuned, alpha))
            metrics[alpha] = dict(evaluate(model))
            scores[alpha] = mean_primary(metrics[alpha], dims)
        chosen = choose_alpha(scores, tolerance)
        model.load_state_dict(mixed_state(base_state, tuned, chosen))
    return Interpolation(chosen, scores, metrics[chosen])


# --- after training (pipelines/training.py, step 8) ------------------------------------------------------


def base_weights(model: Any, cfg: Any) -> dict[str, Any] | None:
    """A CPU copy of ``model``'s (the base's) weights when ``cfg.base_interpolation`` asks for a mix, on
    the rank that saves the model; else None."""
    from pipelines import distributed

    if not cfg.base_interpolation or not distributed.is_main_process():
        return None
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def mix_with_base(
    model: Any, base_state: Mapping[str, Any] | None, evaluator: Any, cfg: Any, device: str
) -> Interpolation | None:
    """``model`` becomes the mix of its weights and ``base_state`` that the validation ``evaluator``
    prefers (``cfg``: the training config); None when there is nothing to mix."""
    if base_state is None or evaluator is None:
        return None
    from pipelines.attention import attention_context

    with attention_context(cfg.attention_backend, device):  # evaluator.score: not counted as training time
        mix = interpolate_toward_base(
            model,
            base_state,
            evaluator.score,
            cfg.matryoshka_dims,
            cfg.base_interpolation,
            cfg.base_interpolation_tolerance,
        )
    tried = ", ".join(f"{a:g}: {s:.4f}" for a, s in sorted(mix.scores.items()))
    score = (
        "mean over dims of map@100 averaged over its slices" if len(evaluator.slices) > 1 else "mean map@100 over dims"
    )
    print(f"base interpolation: alpha {mix.alpha:g} (validation {score}, by alpha: {tried})", flush=True)
    return mix
