"""A stub of the few Prefect REST endpoints the core uses over HTTP (no Prefect server, no Prefect import):
global concurrency limits with leases (``/v2/concurrency_limits/...``) and the flow-run reads of
``recipe-embed reconcile``. Every request is recorded as ``(method, path)``."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LIMITS = "/api/v2/concurrency_limits"


class StubPrefectAPI:
    def __init__(self) -> None:
        self.limits: dict[str, dict[str, Any]] = {}  # name -> {"limit": n, "active": n}
        self.leases: dict[str, str] = {}  # lease id -> limit name
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.url = ""
        self.min_lease_s = 60.0  # the real server's bound

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p in self.calls if method is None or m == method]

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.calls.append((method, path))
            if method == "GET" and path.startswith(LIMITS + "/"):
                name = path[len(LIMITS) + 1 :]
                if name not in self.limits:
                    return 404, {"detail": "Concurrency Limit not found"}, {}
                lim = self.limits[name]
                return 200, {"name": name, "limit": lim["limit"], "active_slots": lim["active"]}, {}
            if method == "POST" and path == LIMITS + "/":
                if body["name"] in self.limits:
                    return 409, {"detail": "exists"}, {}
                self.limits[body["name"]] = {"limit": int(body["limit"]), "active": 0}
                return 201, {"name": body["name"], "limit": body["limit"]}, {}
            if method == "POST" and path == LIMITS + "/increment-with-lease":
                if body["slots"] != 1 or not self.min_lease_s <= body["lease_duration"] <= 86400:
                    return 422, {"detail": f"bad request {body}"}, {}
                (name,) = body["names"]
                lim = self.limits[name]
                if lim["active"] + 1 > lim["limit"]:
                    return 423, {"detail": "locked"}, {"Retry-After": "0.05"}
                lim["active"] += 1
                lease = str(uuid.uuid4())
                self.leases[lease] = name
                return 200, {"lease_id": lease, "limits": [{"name": name, "limit": lim["limit"]}]}, {}
            if method == "POST" and path == LIMITS + "/decrement-with-lease":
                name = self.leases.pop(body["lease_id"], "")
                if name:
                    self.limits[name]["active"] -= 1
                return 204, None, {}
            if method == "POST" and path.startswith(LIMITS + "/leases/") and path.endswith("/renew"):
                return 204, None, {}
            if method == "POST" and path == "/api/flow_runs/filter":
                return 200, [], {}
            return 404, {"detail": "not in the stub"}, {}


@contextlib.contextmanager
def serve() -> Iterator[StubPrefectAPI]:
    """A :class:`StubPrefectAPI` listening on 127.0.0.1 (``.url`` is its ``PREFECT_API_URL``)."""
    api = StubPrefectAPI()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(size) or b"null")
            code, payload, headers = api.handle(method, self.path, body)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply("GET")

        def do_POST(self) -> None:
            self._reply("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}/api"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
