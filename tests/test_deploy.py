"""docker-compose.yml and deploy/k8s validated offline against the official schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agentstore_server.devstack.binaries import compose_schema

ROOT = Path(__file__).parent.parent
K8S = ROOT / "deploy" / "k8s"
SERVICES = ("logs", "tasks", "artifacts", "metrics", "web", "otlp", "identity")


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted([*(K8S / "base").glob("*.yaml"), *(K8S / "examples").glob("*.yaml")]):
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
    # Presigned URLs signed for the address MinIO is published at, on this host only.
    assert services["artifacts"]["environment"]["S3_PUBLIC_URL"].endswith("http://127.0.0.1:9000}")
    assert "127.0.0.1:9000:9000" in services["minio"]["ports"]
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
    config = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentstore-config"
    )
    assert "S3_PUBLIC_URL" in config["data"]  # the operator's ingress for presigned URLs
    for name in SERVICES:
        full = f"agentstore-{name}"
        deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == full)
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
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


def test_keda_overlay_scales_each_ingest_service_on_its_consumer_backlog() -> None:
    from agentstore import contract

    folder = K8S / "overlays" / "keda"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../../base", "scaledobjects.yaml"]
    scaled = list(yaml.safe_load_all((folder / "scaledobjects.yaml").read_text()))
    dropped = {d["metadata"]["name"] for d in yaml.safe_load_all((folder / "drop-cpu-hpas.yaml").read_text())}
    consuming = [s for s in contract.SERVICES if s.streams]
    assert dropped == {f"agentstore-{s.name}" for s in consuming}
    for service in consuming:
        obj = next(d for d in scaled if d["metadata"]["name"] == f"agentstore-{service.name}")
        assert obj["apiVersion"] == "keda.sh/v1alpha1" and obj["kind"] == "ScaledObject"
        assert obj["spec"]["scaleTargetRef"]["name"] == f"agentstore-{service.name}"
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "nats-jetstream"
        meta = trigger["metadata"]
        assert (meta["stream"], meta["consumer"]) == (service.streams[0], service.durable)
        assert meta["natsServerMonitoringEndpoint"].endswith(":8222")
    # The monitoring port is reachable from KEDA's namespace.
    nats_policy = next(d for _, d in k8s_docs() if d["kind"] == "NetworkPolicy"
                       and d["metadata"]["name"] == "nats-clients-and-routes")  # fmt: skip
    assert any({"port": 8222} in rule.get("ports", []) for rule in nats_policy["spec"]["ingress"])


def test_grafana_dashboard_reads_metrics_the_services_export() -> None:
    import re

    from agentstore_server.lifecycle.metrics import ServiceMetrics

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "agentstore-dashboard.json").read_text())
    exported = {m.name for m in ServiceMetrics().registry.collect()}
    used = {name for p in dashboard["panels"] for t in p["targets"]
            for name in re.findall(r"\b(agentstore_[a-z_]+|process_[a-z_]+)", t["expr"])}  # fmt: skip
    suffixes = ("_total", "_bucket", "_sum", "_count")
    base = {next((n[: -len(s)] for s in suffixes if n.endswith(s)), n) for n in used}
    assert base <= exported | {"process_cpu_seconds", "process_resident_memory_bytes"}, base - exported
    assert {"agentstore_consumer_backlog", "agentstore_deadletters"} <= base


def test_only_labelled_agent_pods_may_export_to_the_otlp_receiver() -> None:
    """The receiver writes for whatever agent an export names: no rule of its policy lets in
    every pod of the cluster (an ingress rule without `from` did)."""
    policy = next(d for _, d in k8s_docs() if d["kind"] == "NetworkPolicy"
                  and d["metadata"]["name"] == "otlp-receiver")  # fmt: skip
    rules = policy["spec"]["ingress"]
    assert all(rule.get("from") for rule in rules), rules
    otlp = next(rule for rule in rules if {"port": 4318} in rule["ports"])
    assert otlp["from"] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"agentstore/otlp": "export"}}}
    ]


def test_a_service_refuses_the_placeholder_secrets_but_in_the_dev_overlay() -> None:
    """base's Secret holds `change-me` placeholders: `agentstore serve` on them stops with an
    error naming each one and the fix; the dev overlay (and only it) allows them."""
    from agentstore.errors import ConfigError
    from agentstore_server.config import Settings

    secret = next(
        d for _, d in k8s_docs() if d["kind"] == "Secret" and d["metadata"]["name"] == "agentstore-secrets"
    )
    placeholders = {
        k.lower(): v for k, v in secret["stringData"].items() if k.lower() in Settings.model_fields
    }
    with pytest.raises(
        ConfigError, match="POSTGRES_URL, MONGODB_URL, S3_SECRET_KEY still hold the placeholder"
    ):
        Settings(**placeholders).refuse_placeholder_secrets()
    Settings(**placeholders, allow_placeholder_secrets=True).refuse_placeholder_secrets()
    Settings().refuse_placeholder_secrets()  # the local stack's own
    for overlay in ("dev", "prod"):
        kustomization = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
        allows = [p for p in kustomization["patches"] if "placeholder" in p["path"]]
        assert bool(allows) == (overlay == "dev"), overlay


def test_every_pod_runs_as_non_root_without_privilege_escalation() -> None:
    """The datastores too (they ran as root with every capability): each pod template of the
    base runs as a non-root user, each container without privilege escalation."""
    templates = [(name, d["spec"]["template"]["spec"]) for name, d in k8s_docs()
                 if d["kind"] in ("Deployment", "StatefulSet")]  # fmt: skip
    assert len(templates) >= 10
    for name, pod in templates:
        assert pod.get("securityContext", {}).get("runAsNonRoot") is True, name
        for container in pod["containers"]:
            assert container.get("securityContext", {}).get("allowPrivilegeEscalation") is False, (
                name,
                container,
            )
