"""infra/apply_automations.py on infra/automations/alerts.yaml, against a recorded fake of the Prefect API."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "infra" / "automations" / "alerts.yaml"


@pytest.fixture
def apply_mod(monkeypatch):
    spec = importlib.util.spec_from_file_location("apply_automations", ROOT / "infra" / "apply_automations.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    api: dict[str, Any] = {"automations": {}, "calls": []}

    def call(_api: str, method: str, path: str, body: Any = None) -> Any:
        api["calls"].append((method, path))
        if path == "/automations/filter":
            return [{"id": i, "name": a["name"]} for i, a in api["automations"].items()]
        if method == "POST" and path == "/automations/":
            api["automations"][f"a{len(api['calls'])}"] = body
        elif method == "PUT":
            api["automations"][path.rsplit("/", 1)[1]] = body
        elif method == "DELETE":
            del api["automations"][path.rsplit("/", 1)[1]]
        return None

    monkeypatch.setattr(mod, "_call", call)
    mod.fake_api = api
    return mod


def test_without_a_webhook_nothing_is_applied_and_one_line_says_so(apply_mod, monkeypatch) -> None:
    monkeypatch.delenv("RECIPE_EMBED_WEBHOOK_URL", raising=False)
    # the real save_block: without its variable a target is left out, nothing is saved
    spec = yaml.safe_load(ALERTS.read_text())
    lines = apply_mod.apply_file("http://api", spec, ALERTS)
    assert apply_mod.fake_api["automations"] == {}
    assert [ln for ln in lines if ln.startswith("alerts:")] == [
        "alerts: none sent: RECIPE_EMBED_WEBHOOK_URL not set (alerts.yaml names the targets)"
    ]


def test_with_a_webhook_each_automation_notifies_the_block_and_reapplying_is_idempotent(apply_mod, monkeypatch) -> None:
    monkeypatch.setenv("RECIPE_EMBED_WEBHOOK_URL", "http://127.0.0.1:9/secret-hook")
    saved: list[dict[str, Any]] = []

    def save(target: dict[str, Any]) -> str | None:
        saved.append(target)
        return "block-1" if target["type"] == "custom-webhook" else None

    monkeypatch.setattr(apply_mod, "save_block", save)
    spec = yaml.safe_load(ALERTS.read_text())
    for _ in range(2):
        lines = apply_mod.apply_file("http://api", spec, ALERTS)
        assert not any("secret-hook" in ln for ln in lines) and not any(ln.startswith("alerts:") for ln in lines)
    autos = {a["name"]: a for a in apply_mod.fake_api["automations"].values()}
    assert set(autos) == {"recipe-embed-alert-outcomes", "recipe-embed-alert-failed-runs"}  # one of each
    for auto in autos.values():
        assert "notify" not in auto
        (action,) = auto["actions"]
        assert action["type"] == "send-notification" and action["block_document_id"] == "block-1"
    assert autos["recipe-embed-alert-outcomes"]["actions"][0]["body"] == "{{ event.payload.message }}"
    expect = set(autos["recipe-embed-alert-outcomes"]["trigger"]["expect"])
    assert {"recipe-embed.candidate.promoted", "recipe-embed.champion.stale", "recipe-embed.eval.saturated"} <= expect
    assert set(autos["recipe-embed-alert-failed-runs"]["trigger"]["expect"]) == {
        "prefect.flow-run.Failed",
        "prefect.flow-run.Crashed",
    }

    # the webhook unset again: the alert automations go away, nothing is sent any more
    monkeypatch.delenv("RECIPE_EMBED_WEBHOOK_URL")
    monkeypatch.setattr(apply_mod, "save_block", lambda target: None)
    lines = apply_mod.apply_file("http://api", spec, ALERTS)
    assert apply_mod.fake_api["automations"] == {}
    assert "automation recipe-embed-alert-outcomes removed" in lines


def test_the_webhook_block_keeps_the_url_secret(apply_mod, monkeypatch) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    monkeypatch.setenv("RECIPE_EMBED_WEBHOOK_URL", "http://127.0.0.1:9/secret-hook")
    built: list[Any] = []
    monkeypatch.setattr(
        CustomWebhookNotificationBlock, "save", lambda self, name, overwrite=False: built.append((name, self))
    )
    monkeypatch.setattr(CustomWebhookNotificationBlock, "_block_document_id", "doc-1", raising=False)
    (target,) = yaml.safe_load(ALERTS.read_text())["notify"]
    assert apply_mod.save_block(target) == "doc-1"
    ((name, block),) = built
    assert name == "recipe-embed-alerts-webhook"
    assert "secret-hook" not in block.url and "secret-hook" not in repr(block)
    request = block._build_request_args("PROMOTED v7", "recipe-embed: recipe-embed.candidate.promoted")
    assert request["url"] == "http://127.0.0.1:9/secret-hook"
    assert request["json"] == {"text": "PROMOTED v7", "subject": "recipe-embed: recipe-embed.candidate.promoted"}


def test_a_busy_server_is_asked_again(monkeypatch) -> None:
    """503 (a sqlite database locked for a moment) twice, then the answer: the bring-up goes on."""
    import http.server
    import threading

    spec = importlib.util.spec_from_file_location("apply_automations_real", ROOT / "infra" / "apply_automations.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr("time.sleep", lambda s: None)
    seen: list[str] = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = (503, b"") if len(seen) < 3 else (200, b'[{"id": "a1", "name": "x"}]')
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = f"http://127.0.0.1:{server.server_port}/api"
        assert mod._call(api, "POST", "/automations/filter", {"limit": 200}) == [{"id": "a1", "name": "x"}]
        assert seen == ["/api/automations/filter"] * 3
    finally:
        server.shutdown()
