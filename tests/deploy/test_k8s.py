"""`deploy/k8s/`, checked statically: Kubernetes' own schemas, then what our pods promise.

`kubernetes-validate` ships the API schemas (strict: unknown fields are errors); KEDA's
ScaledObject is a custom resource it has no schema for, so its fields are checked here.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from shared.settings import Settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
REPO = K8S.parents[1]
KUBERNETES_VERSION = "1.30.0"
"""Oldest Kubernetes the manifests are meant for (an old one still under extended support)."""
CUSTOM_KINDS = {"ScaledObject", "Kustomization"}

Resource = dict[str, Any]


def load_all() -> list[tuple[str, Resource]]:
    return [
        (path.name, document)
        for path in sorted(K8S.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document is not None
    ]


RESOURCES = load_all()


def find(kind: str, name: str) -> Resource:
    (found,) = [r for _, r in RESOURCES if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def container(workload: Resource) -> Resource:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    result: Resource = only
    return result


def image_env(dockerfile: str) -> dict[str, str]:
    parser = DockerfileParser(fileobj=io.BytesIO((REPO / dockerfile).read_bytes()))
    envs: dict[str, str] = parser.envs
    return envs


@pytest.mark.parametrize(
    ("file", "resource"),
    [(file, r) for file, r in RESOURCES if r["kind"] not in CUSTOM_KINDS],
    ids=lambda value: value if isinstance(value, str) else value["kind"],
)
def test_valid_against_the_kubernetes_schema(file: str, resource: Resource) -> None:
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    assert "namespace" not in resource["metadata"], f"{file}: namespace-agnostic"


def test_the_schema_refuses_an_unknown_field() -> None:
    broken = copy.deepcopy(find("Deployment", "jobgate-worker"))
    container(broken)["livenesProbe"] = container(broken).pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    (kustomization,) = [r for _, r in RESOURCES if r["kind"] == "Kustomization"]
    manifests = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests - {"secret.example.yaml"}
    assert "namespace" not in kustomization


@pytest.mark.parametrize(
    "workload",
    [
        ("Deployment", "jobgate-gateway"),
        ("Deployment", "jobgate-worker"),
        ("Job", "jobgate-migrate"),
    ],
    ids=lambda value: value[1],
)
def test_pods_run_locked_down(workload: tuple[str, str]) -> None:
    resource = find(*workload)
    pod = resource["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The image's USER (tests/deploy/test_dockerfiles.py): files in the image belong to it.
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    main = container(resource)
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(main["resources"]["requests"])
    assert "memory" in main["resources"]["limits"]
    # A read-only root needs a writable /tmp (the worker's heartbeat lives there).
    mounts = {mount["mountPath"]: mount["name"] for mount in main["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 (a mount point, not a temp file)
    assert {ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in main["envFrom"]} == {
        "jobgate-config",
        "jobgate-secrets",
    }


def test_gateway_probes_and_service() -> None:
    gateway = container(find("Deployment", "jobgate-gateway"))
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["startupProbe"]["httpGet"]["path"] == "/healthz"
    (port,) = gateway["ports"]
    assert port["containerPort"] == 8000
    service = find("Service", "jobgate-gateway")
    selector = find("Deployment", "jobgate-gateway")["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]


def test_worker_probe_and_grace_period_match_the_worker() -> None:
    deployment = find("Deployment", "jobgate-worker")
    worker = container(deployment)
    heartbeat = image_env("Dockerfile.worker")["JOBGATE_WORKER_HEARTBEAT_FILE"]
    probe = ["python", "-m", "worker.heartbeat", heartbeat]
    assert worker["livenessProbe"]["exec"]["command"] == probe
    assert worker["startupProbe"]["exec"]["command"] == probe
    assert "readinessProbe" not in worker  # no Service in front of workers
    # SIGTERM drains for the configured grace; the pod must be given longer than that.
    config = find("ConfigMap", "jobgate-config")["data"]
    grace = float(config["JOBGATE_WORKER_SHUTDOWN_GRACE_SECONDS"])
    assert grace < deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert "lifecycle" not in worker  # no preStop: SIGTERM itself drains
    (port,) = worker["ports"]
    assert str(port["containerPort"]) == config["JOBGATE_WORKER_METRICS_PORT"]


def test_config_and_secret_keys_are_settings() -> None:
    config = find("ConfigMap", "jobgate-config")["data"]
    secret = find("Secret", "jobgate-secrets")["stringData"]
    assert {"JOBGATE_DATABASE_URL", "JOBGATE_REDIS_URL", "JOBGATE_ADMIN_TOKEN"} == set(secret)
    assert all("CHANGE-ME" in value for value in secret.values())  # an example, not a secret
    assert not set(config) & set(secret)
    Settings.model_validate(
        {name.removeprefix("JOBGATE_").lower(): v for name, v in config.items()}
    )
    for name in [*config, *secret]:
        assert name.removeprefix("JOBGATE_").lower() in Settings.model_fields, name


def test_migrate_job_runs_jobgate_migrate_once() -> None:
    job = find("Job", "jobgate-migrate")
    assert container(job)["command"] == ["jobgate", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


def test_keda_scales_workers_on_queue_depth() -> None:
    scaled = find("ScaledObject", "jobgate-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "jobgate-worker")
    # Workers also run cron, the reconciler and webhook delivery: never scale to zero.
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    assert set(spec) <= {
        "scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
        "cooldownPeriod", "idleReplicaCount", "fallback", "advanced", "triggers",
    }  # fmt: skip
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    metadata = trigger["metadata"]
    assert "jobgate_queue_depth" in metadata["query"]
    # ... the gauge the gateways export (their pods carry the scrape annotations).
    assert '"jobgate_queue_depth"' in (REPO / "gateway" / "metrics.py").read_text()
    annotations = find("Deployment", "jobgate-gateway")["spec"]["template"]["metadata"]
    assert annotations["annotations"]["prometheus.io/scrape"] == "true"
    assert metadata["serverAddress"].startswith("http")
    # KEDA reads trigger metadata as strings.
    assert all(isinstance(value, str) for value in metadata.values())
    assert float(metadata["threshold"]) > 0


def test_a_release_can_migrate_before_it_rolls_out() -> None:
    # docs/deployment.md: `kubectl apply -k deploy/k8s -l 'app.kubernetes.io/component in
    # (config,migrate)'` first, then everything: that selector must pick exactly what the Job needs.
    picked = {
        (r["kind"], r["metadata"]["name"])
        for _, r in RESOURCES
        if r["kind"] not in CUSTOM_KINDS | {"Secret"}
        and r["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        in {"config", "migrate"}
    }
    assert picked == {("ConfigMap", "jobgate-config"), ("Job", "jobgate-migrate")}
