"""docker-compose.yml and deploy/k8s validated offline against the official schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agentstore.devstack.binaries import compose_schema

ROOT = Path(__file__).parent.parent
K8S = ROOT / "deploy" / "k8s"
SERVICES = ("logs", "tasks", "artifacts", "metrics", "web")


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((K8S / "base").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(f"{path.name}#{i}", d) for i, d in enumerate(yaml.safe_load_all(path.read_text())) if d]
    return docs


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(compose_schema().read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    services = compose["services"]
    for name in SERVICES:
        service = services[name]
        assert service["command"] == [name]
        assert all(dep["condition"] == "service_healthy" for dep in service["depends_on"].values())
        assert "healthcheck" in service
    assert set(compose["volumes"]) == {"nats-data", "postgres-data", "mongodb-data", "minio-data"}
    assert "sync_interval: always" in (ROOT / "deploy" / "nats-server.conf").read_text()


@pytest.mark.parametrize(("where", "doc"), k8s_docs(), ids=lambda v: v if isinstance(v, str) else "")
def test_k8s_manifests_validate_against_the_kubernetes_schemas(where: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_every_service_has_probes_limits_graceful_stop_hpa_and_pdb() -> None:
    docs = [d for _, d in k8s_docs()]
    drain = int(
        next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentstore-config")[
            "data"
        ]["DRAIN_SECONDS"]
    )
    for name in SERVICES:
        full = f"agentstore-{name}"
        deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == full)
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"requests", "limits"} <= set(container["resources"])
        assert pod["terminationGracePeriodSeconds"] > drain
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert any(d["kind"] == "HorizontalPodAutoscaler" and d["metadata"]["name"] == full for d in docs)
        assert any(d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == full for d in docs)
    nats = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats")
    assert nats["spec"]["replicas"] == 3
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    db_policy = next(
        p for p in policies if p["spec"]["podSelector"]["matchLabels"] == {"agentstore/tier": "database"}
    )
    assert db_policy["spec"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"agentstore/tier": "service"}}}]}
    ]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_kustomize_overlays_reference_real_files_and_valid_patches(overlay: str) -> None:
    folder = K8S / "overlays" / overlay
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../../base"]
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    for resource in base["resources"]:
        assert (K8S / "base" / resource).exists(), resource
    for patch in kustomization["patches"]:
        ops = yaml.safe_load((folder / patch["path"]).read_text())
        assert isinstance(ops, list) and all(op["op"] in ("add", "replace", "remove") for op in ops)


def test_the_service_image_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER 10001" in dockerfile and 'ENTRYPOINT ["agentstore", "serve"]' in dockerfile
