"""The Prefect server for the Kubernetes work-pool tests: the session's shared stack (tests/integration/conftest.py).

The tests only need a real server to store and validate a work pool and a deployment; they use their own
pool (``recipe-embed-k8s``) and deployment (``nightly-k8s``, unscheduled), which the stack's own worker
and deployments never look at.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def prefect_server(stack: Any) -> Any:
    pytest.importorskip("prefect_kubernetes", reason="prefect-kubernetes is not installed (pip install -e '.[k8s]')")
    return stack
