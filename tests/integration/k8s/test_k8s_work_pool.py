"""The Kubernetes GPU work pool and its nightly-k8s deployment, created against a real local Prefect server.

No cluster is needed: the server stores and validates the pool's base job template and the deployment's job
variables; a Kubernetes worker would then render exactly what tests/unit/test_k8s_manifests.py renders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "infra" / "k8s" / "base-job-template.json"
POOL = "recipe-embed-k8s"


@pytest.fixture(scope="module")
def pool(prefect_server):  # type: ignore[no-untyped-def]
    out = prefect_server.prefect(
        "work-pool", "create", POOL, "--type", "kubernetes", "--base-job-template", str(TEMPLATE)
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return prefect_server.get(f"/work_pools/{POOL}")


def test_pool_is_created_with_the_template(pool) -> None:  # type: ignore[no-untyped-def]
    assert pool["type"] == "kubernetes"
    assert pool["base_job_template"] == json.loads(TEMPLATE.read_text())


def test_nightly_k8s_deploys_on_the_pool_unscheduled(prefect_server, pool) -> None:  # type: ignore[no-untyped-def]
    out = prefect_server.prefect("--no-prompt", "deploy", "--prefect-file", "infra/k8s/prefect.yaml", "--all")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    dep = prefect_server.get("/deployments/name/train-and-evaluate/nightly-k8s")
    assert dep["work_pool_name"] == POOL
    assert dep["job_variables"]["gpu_count"] == 4
    assert "MLFLOW_TRACKING_URI" not in dep["job_variables"].get("env", {})
    assert dep["parameters"] == {"profile": "auto", "overrides": {"training": {"nproc_per_node": "auto"}}}
    assert dep["schedules"] and all(not s["active"] for s in dep["schedules"])
    assert dep["concurrency_limit"] == 1 or (dep.get("global_concurrency_limit") or {}).get("limit") == 1


def test_server_rejects_job_variables_outside_the_pool_schema(prefect_server, pool) -> None:  # type: ignore[no-untyped-def]
    """The pool's variable schema is enforced: a bad gpu_count cannot be deployed (so the test above can fail)."""
    import httpx

    dep = prefect_server.get("/deployments/name/train-and-evaluate/nightly-k8s")
    body = {
        "name": "bad-gpus",
        "flow_id": dep["flow_id"],
        "work_pool_name": POOL,
        "job_variables": {"gpu_count": "four"},
        "entrypoint": dep["entrypoint"],
    }
    with pytest.raises(httpx.HTTPStatusError) as err:
        prefect_server.post("/deployments/", body)
    assert err.value.response.status_code == 422
    assert "gpu_count" in err.value.response.text
    body["job_variables"] = {"gpu_count": 2}  # the same request with a valid value is accepted
    assert prefect_server.post("/deployments/", body)["job_variables"] == {"gpu_count": 2}
