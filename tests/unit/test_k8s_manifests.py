"""The Kubernetes files in infra/k8s, checked offline (no cluster, no kubectl): structure, placeholders, secrets.

The base job template is rendered the way a Prefect Kubernetes worker renders it (variable defaults and a
deployment's job variables into ``job_configuration``, then prefect-kubernetes' own job configuration
model, whose validator checks the manifest against the library's required base job manifest).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml

pytest.importorskip("prefect_kubernetes", reason="prefect-kubernetes is not installed (pip install -e '.[k8s]')")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
TEMPLATE = K8S / "base-job-template.json"
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")


def _template() -> dict[str, Any]:
    return dict(json.loads(TEMPLATE.read_text()))


def _k8s_deployment() -> dict[str, Any]:
    spec = yaml.safe_load((K8S / "prefect.yaml").read_text())
    (dep,) = [d for d in spec["deployments"] if d["name"] == "nightly-k8s"]
    return dict(dep)


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def render(job_variables: dict[str, Any]) -> Any:
    """A prepared KubernetesWorkerJobConfiguration, as a worker would build it for one flow run."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.utilities.templating import apply_values
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = _template()
    values = KubernetesWorkerJobConfiguration._get_base_config_defaults(template["variables"]["properties"])
    values.update(job_variables)
    config = KubernetesWorkerJobConfiguration(**apply_values(template["job_configuration"], values))
    config.prepare_for_flow_run(FlowRun(flow_id=uuid4(), name="nightly-k8s-test"))
    return config


def test_every_placeholder_is_a_declared_variable() -> None:
    template = _template()
    declared = set(template["variables"]["properties"])
    used = {m for s in _strings(template["job_configuration"]) for m in PLACEHOLDER.findall(s)}
    assert used - declared == set()
    assert {"gpu_count", "tracking_secret_name", "tracking_secret_key", "image"} <= used


def test_variable_defaults_satisfy_their_schema() -> None:
    import jsonschema

    variables = _template()["variables"]
    defaults = {k: v["default"] for k, v in variables["properties"].items() if "default" in v}
    jsonschema.validate(defaults, variables)
    jsonschema.validate(_k8s_deployment()["work_pool"]["job_variables"], variables)


def test_rendered_job_requests_gpus_runs_the_worker_image_and_reads_tracking_from_a_secret() -> None:
    job_vars = _k8s_deployment()["work_pool"]["job_variables"]
    manifest = render(job_vars).job_manifest
    assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job"
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "prefect-job"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == job_vars["gpu_count"] == 4
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 4
    # the image infra/Dockerfile.worker builds (`docker build -f infra/Dockerfile.worker -t recipe-embed-worker .`)
    assert container["image"].split(":")[0].endswith("recipe-embed-worker")
    assert "-t recipe-embed-worker" in (ROOT / "infra" / "Dockerfile.worker").read_text()
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == {
        "name": "MLFLOW_TRACKING_URI",
        "valueFrom": {"secretKeyRef": {"name": "recipe-embed-tracking", "key": "tracking-uri"}},
    }
    assert env["HF_HUB_OFFLINE"]["value"] == "1"  # the deployment's env is merged in, the secret kept
    assert {v["name"] for v in pod["volumes"]} == {"data", "dshm"}
    assert pod["restartPolicy"] == "Never" and manifest["spec"]["backoffLimit"] == 0


def test_no_tracking_uri_literal_anywhere() -> None:
    texts = [TEMPLATE.read_text(), (K8S / "prefect.yaml").read_text(), (K8S / "pytorchjob-train.yaml").read_text()]
    for text in texts:
        assert not re.search(r"(https?|postgresql|sqlite|databricks)://", text)
    env = _k8s_deployment()["work_pool"]["job_variables"]["env"]
    assert "MLFLOW_TRACKING_URI" not in env


def test_a_manifest_without_the_required_container_is_rejected() -> None:
    """The check above can fail: prefect-kubernetes refuses a job manifest that lacks its container."""
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    manifest = _template()["job_configuration"]["job_manifest"]
    manifest["spec"]["template"]["spec"]["containers"][0]["name"] = "renamed"
    with pytest.raises(ValueError, match="prefect-job"):
        KubernetesWorkerJobConfiguration(job_manifest=manifest)


def test_nightly_k8s_is_not_scheduled_by_default_and_its_overrides_are_a_valid_config() -> None:
    from pipelines.config import load_config

    dep = _k8s_deployment()
    assert dep["work_pool"]["name"] == "recipe-embed-k8s"
    assert dep["schedules"] and all(s["active"] is False for s in dep["schedules"])
    cfg = load_config(dep["parameters"]["profile"], overrides=dep["parameters"]["overrides"])
    assert cfg.training.nproc_per_node == "auto"
    root_names = {d["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    assert "nightly-k8s" not in root_names  # `prefect deploy --all` at the root never needs the k8s pool


def test_pytorchjob_launches_torchrun_with_operator_rendezvous() -> None:
    docs = list(yaml.safe_load_all((K8S / "pytorchjob-train.yaml").read_text()))
    (job,) = docs
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"} and specs["Master"]["replicas"] == 1
    for spec in specs.values():
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "pytorch"  # the operator injects PET_* rendezvous env into this one
        assert container["command"][:5] == ["python", "-m", "torch.distributed.run", "-m", "pipelines.cli"]
        gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
        assert gpus == int(job["spec"]["nprocPerNode"])
        env = {e["name"]: e for e in container["env"]}
        assert "secretKeyRef" in env["MLFLOW_TRACKING_URI"]["valueFrom"]
        # rendezvous comes from the operator, never hard-coded
        assert not any(
            a.startswith(("--rdzv", "--master", "--nnodes")) for a in container["command"] + container["args"]
        )
