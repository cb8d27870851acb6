"""Create or update (by name) the Prefect automations in infra/automations/*.yaml on the API at PREFECT_API_URL.

Idempotent: an automation with the same name is replaced in place, duplicates of it are deleted.
A file holds one automation, or ``automations:`` (a list) with ``notify:``, the notification blocks their
``send-notification`` actions go to (saved here from environment variables; see alerts.yaml).
Usage: python infra/apply_automations.py [FILE.yaml ...]   (default: every file in infra/automations/)
       python infra/apply_automations.py --name-deployment-limits   (after `prefect deploy`)
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


API_RETRIES = 6
"""A busy server's answers (429, 502, 503: e.g. a sqlite database locked for a moment while the server's
own services write) are retried, with a growing pause (about 30 s in all), as Prefect's own client does."""


def _call(api: str, method: str, path: str, body: Any = None) -> Any:
    from pipelines import prefect_http

    return prefect_http.call(api, method, path, body, timeout_s=30.0, retries=API_RETRIES)


def apply(api: str, spec: dict[str, Any]) -> str:
    existing = [a for a in _call(api, "POST", "/automations/filter", {"limit": 200}) if a["name"] == spec["name"]]
    if not existing:
        _call(api, "POST", "/automations/", spec)
        return "created"
    _call(api, "PUT", f"/automations/{existing[0]['id']}", spec)
    for dup in existing[1:]:
        _call(api, "DELETE", f"/automations/{dup['id']}")
    return "updated"


def remove(api: str, name: str) -> bool:
    """Delete the automations called ``name``; True if there were any."""
    existing = [a for a in _call(api, "POST", "/automations/filter", {"limit": 200}) if a["name"] == name]
    for a in existing:
        _call(api, "DELETE", f"/automations/{a['id']}")
    return bool(existing)


def save_block(target: dict[str, Any]) -> str | None:
    """Save one ``notify`` entry as a Prefect notification block; its id, or None when its variables are unset.

    ``env`` maps a field to the variable holding its value: a field of the block type, else a secret of
    a custom webhook (used as ``{{name}}`` in its templates). Values are never printed."""
    import prefect.blocks.notifications  # noqa: F401  (registers the notification block types)
    from prefect.blocks.core import Block

    values = {field: os.environ.get(var, "") for field, var in (target.get("env") or {}).items()}
    if not all(values.values()):
        return None
    cls = Block.get_block_class_from_key(target["type"])
    fields = dict(target.get("fields") or {})
    secrets = {k: v for k, v in values.items() if k not in cls.model_fields}
    fields.update({k: v for k, v in values.items() if k in cls.model_fields})
    if secrets:
        fields["secrets"] = secrets
    block = cls(**fields)
    block.save(target["name"], overwrite=True)
    return str(block._block_document_id)


def apply_file(api: str, spec: dict[str, Any], source: Path) -> list[str]:
    """Apply every automation of one file; the lines to print."""
    if "automations" not in spec:
        return [f"automation {spec['name']} {apply(api, spec)}"]
    targets = spec.get("notify") or []
    blocks = [b for b in (save_block(t) for t in targets) if b]
    lines = []
    for auto in spec["automations"]:
        actions = []
        for action in auto["actions"]:
            if action.get("type") == "send-notification" and "block_document_id" not in action:
                actions += [{**action, "block_document_id": b} for b in blocks]
            else:
                actions.append(action)
        if not actions:
            lines.append(f"automation {auto['name']} {'removed' if remove(api, auto['name']) else 'not applied'}")
            continue
        lines.append(f"automation {auto['name']} {apply(api, {**auto, 'actions': actions})}")
    if not blocks:
        needed = sorted({v for t in targets for v in (t.get("env") or {}).values()})
        lines.append(
            f"alerts: none sent: {' / '.join(needed) or 'no target'} not set ({source.name} names the targets)"
        )
    return lines


def limit_name(flow: str, deployment: dict[str, Any]) -> str:
    """``train-and-evaluate nightly: 1 run at a time, CANCEL_NEW`` (a limit name may not hold ``/``)."""
    gcl = deployment["global_concurrency_limit"]
    strategy = (deployment.get("concurrency_options") or {}).get("collision_strategy") or "ENQUEUE"
    runs = "1 run" if gcl["limit"] == 1 else f"{gcl['limit']} runs"
    return f"{flow} {deployment['name']}: {runs} at a time, {strategy}"


def name_deployment_limits(api: str) -> list[str]:
    """Give each deployment's concurrency limit (``deployment:<uuid>`` on the Concurrency page) a readable
    name; the deployment refers to it by id, so renaming changes nothing else."""
    lines = []
    for dep in _call(api, "POST", "/deployments/filter", {"limit": 200}):
        gcl = dep.get("global_concurrency_limit")
        if not gcl:
            continue
        name = limit_name(_call(api, "GET", f"/flows/{dep['flow_id']}")["name"], dep)
        if gcl["name"] != name:
            _call(api, "PATCH", f"/v2/concurrency_limits/{gcl['id']}", {"name": name})
            lines.append(f"concurrency limit of deployment {dep['name']} named {name!r}")
    return lines


def main(argv: list[str]) -> int:
    api = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    if not api:
        print("error: PREFECT_API_URL is not set", file=sys.stderr)
        return 1
    if argv == ["--name-deployment-limits"]:
        try:
            lines = name_deployment_limits(api)
        except (urllib.error.HTTPError, OSError) as e:
            print(f"error: naming the deployments' concurrency limits: {e}", file=sys.stderr)
            return 1
        if lines:
            print("\n".join(lines))
        return 0
    files = [Path(a) for a in argv] or sorted((HERE / "automations").glob("*.yaml"))
    for f in files:
        spec = yaml.safe_load(f.read_text())
        try:
            lines = apply_file(api, spec, f)
        except urllib.error.HTTPError as e:
            print(
                f"error: automation {spec.get('name', f.name)!r} from {f}: HTTP {e.code}: {e.read().decode()[:500]}",
                file=sys.stderr,
            )
            return 1
        except Exception as e:  # OSError, a block the API refuses: one line, never the values
            print(f"error: automation {spec.get('name', f.name)!r} from {f}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
