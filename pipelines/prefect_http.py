"""The Prefect REST API over plain HTTP (``urllib``), for the Prefect-free core.

:mod:`pipelines.reconcile` asks it for flow-run states and sets lost flow runs Crashed;
:mod:`pipelines.locks` takes the promotion slot (a global concurrency limit) through it. No Prefect
import anywhere here: the API is ``$PREFECT_API_URL``, authenticated like Prefect's own client
(``$PREFECT_API_AUTH_STRING`` as HTTP basic auth, else ``$PREFECT_API_KEY`` as a bearer token).
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any


def api_url() -> str | None:
    """``$PREFECT_API_URL``, or None when no Prefect API is configured."""
    return os.environ.get("PREFECT_API_URL") or None


def auth_header() -> str | None:
    if auth := os.environ.get("PREFECT_API_AUTH_STRING"):
        return "Basic " + base64.b64encode(auth.encode("utf-8")).decode("ascii")
    if key := os.environ.get("PREFECT_API_KEY"):
        return f"Bearer {key}"
    return None


RETRY_STATUS = frozenset({429, 502, 503})
"""Answers of a busy server, retried (with a growing pause) like Prefect's own client does."""


def call(
    api: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    timeout_s: float = 10.0,
    retries: int = 0,
) -> Any:
    """One Prefect REST call: the decoded JSON answer (None for an empty one); a :data:`RETRY_STATUS`
    answer is retried up to ``retries`` times.

    Raises ``urllib.error.HTTPError`` for an error status (its ``code`` and ``headers`` tell which),
    ``urllib.error.URLError`` / ``OSError`` when the server cannot be reached, ``ValueError`` for an
    answer that is not JSON.
    """
    req = urllib.request.Request(
        f"{api.rstrip('/')}{path}",
        data=None if body is None else json.dumps(body).encode("utf-8"),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    if auth := auth_header():
        req.add_header("Authorization", auth)
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return json.loads(resp.read().decode("utf-8") or "null")
        except urllib.error.HTTPError as exc:
            if exc.code not in RETRY_STATUS or attempt == retries:
                raise
            time.sleep(min(0.5 * 2**attempt, 8.0))
    raise AssertionError("unreachable")
