"""The skip policy: a night whose inputs match the champion's, or the last evaluated candidate's,
trains nothing. It reads MLflow (tags of the champion and of the last decided run)."""

from __future__ import annotations

from typing import Any

from pipelines.config import PipelineConfig
from pipelines.keys import TAG_PREFIX, run_tags
from pipelines.stages import tracking_ui_url

FORCE_HINT = (
    "to retrain anyway, set registry.skip_unchanged=false (`--set registry.skip_unchanged=false`, or flow "
    'overrides {"registry": {"skip_unchanged": false}}), or change the config, e.g. --set training.seed=N'
)


def last_evaluated_run(cfg: PipelineConfig) -> Any | None:
    """The most recent run of the experiment with a promotion decision (promoted or rejected), or None."""
    from pipelines import tracking

    c = tracking.client(cfg)
    exp = c.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return None
    found: list[Any] = []
    for label in ("promoted", "rejected"):
        found += c.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.decision = '{label}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    return max(found, key=lambda r: r.info.start_time) if found else None


def should_skip_training(cfg: PipelineConfig) -> str | None:
    """A reason to skip when the champion or the last evaluated candidate (promoted or rejected) was
    trained with this training key (catalog, data, model, training and evaluation config, code version
    and commit) and base model; else None. ``registry.skip_unchanged=false`` turns the skip off."""
    from pipelines import registry, tracking

    if not cfg.registry.skip_unchanged:
        return None
    tracking.connect(cfg)
    mine = run_tags(cfg)
    keys = [f"{TAG_PREFIX}{k}" for k in ("catalog_digest", "training_key", "base_model")]

    def same(tags: dict[str, str]) -> bool:
        return all(tags.get(k) == mine[k] for k in keys)

    c = tracking.client(cfg)
    champ = registry.champion(cfg)
    if champ and champ.get("run_id"):
        tags = c.get_run(champ["run_id"]).data.tags
        if same(tags):
            return (
                f"champion v{champ['version']} (run {champ['run_id']}) was trained with the same training key "
                f"{mine[keys[1]]} (catalog, config, code and base model); {FORCE_HINT}"
            )
    last = last_evaluated_run(cfg)
    if last is not None and same(last.data.tags):
        tags = last.data.tags
        version = tags.get("registered_version")
        what = f"v{version} " if version else ""
        return (
            f"the last evaluated candidate {what}(run {last.info.run_id}, {tags.get('decision')}) was trained with "
            f"the same training key {mine[keys[1]]} (catalog, config, code and base model); {FORCE_HINT}"
        )
    return None


SKIPPED = "skipped"


def mark_skipped_stage(cfg: PipelineConfig, run_id: str, reason: str) -> None:
    """Tag a skipped night's run ``decision=skipped`` with the reason (filter it out in the Compare view
    with ``tags.decision != 'skipped'``)."""
    from pipelines import registry, tracking

    tracking.connect(cfg)
    line = f"SKIPPED training: {reason}"
    tracking.set_tags(run_id, {"decision": SKIPPED, "decision_reason": reason[:4900], "decision_line": line[:4900]})
    champ = registry.champion(cfg)
    note = line
    if champ and champ.get("run_id"):
        link = champion_run_link(cfg, str(champ["run_id"]))
        note += f"\n\nChampion: version {champ['version']}, run [{champ['run_id']}]({link})"
    registry.show_verdict(tracking.client(cfg), run_id, SKIPPED, note)


def champion_run_link(cfg: PipelineConfig, run_id: str) -> str:
    """The champion run's page: a full URL on a tracking server, else the UI's own link (``#/experiments/...``)."""
    from pipelines import tracking

    url = tracking_ui_url(cfg, run_id)
    if url:
        return url
    exp_id = tracking.client(cfg).get_run(run_id).info.experiment_id
    return f"#/experiments/{exp_id}/runs/{run_id}"
