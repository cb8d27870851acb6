"""Create or update (by name) the Prefect automations in infra/automations/*.yaml on the API at PREFECT_API_URL.

Idempotent: an automation with the same name is replaced in place, duplicates of it are deleted.
Usage: python infra/apply_automations.py [FILE.yaml ...]   (default: every file in infra/automations/)
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def _call(api: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{api}{path}", data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


def apply(api: str, spec: dict[str, Any]) -> str:
    existing = [a for a in _call(api, "POST", "/automations/filter", {"limit": 200}) if a["name"] == spec["name"]]
    if not existing:
        _call(api, "POST", "/automations/", spec)
        return "created"
    _call(api, "PUT", f"/automations/{existing[0]['id']}", spec)
    for dup in existing[1:]:
        _call(api, "DELETE", f"/automations/{dup['id']}")
    return "updated"


def main(argv: list[str]) -> int:
    api = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    if not api:
        print("error: PREFECT_API_URL is not set", file=sys.stderr)
        return 1
    files = [Path(a) for a in argv] or sorted((HERE / "automations").glob("*.yaml"))
    for f in files:
        spec = yaml.safe_load(f.read_text())
        try:
            outcome = apply(api, spec)
        except urllib.error.HTTPError as e:
            print(
                f"error: automation {spec.get('name')!r} from {f}: HTTP {e.code}: {e.read().decode()[:500]}",
                file=sys.stderr,
            )
            return 1
        except OSError as e:
            print(f"error: automation {spec.get('name')!r} from {f}: {e}", file=sys.stderr)
            return 1
        print(f"automation {spec['name']} {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
