"""deploy/k8s: the example overlay builds, every object matches the Kubernetes API schemas, and
the deployment has the properties the project promises (issue 5, docs/deploy.md).

Schemas: those bundled by kubernetes-validate (a dev dependency; PyPI), strict variant (unknown
fields are errors), for the oldest Kubernetes the manifests support (native sidecars: 1.29)
and the newest the package knows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.deploy import kustomize
from tests.deploy.conftest import K8S, POLICY_COPY, REPO_ROOT, cerbos_version, load_yaml

OLDEST_SUPPORTED = "1.29"
KUBERNETES_VERSIONS = sorted({OLDEST_SUPPORTED, latest_version()})
WORKLOADS = ("agent-broker", "crm")


def pod(k8s: kustomize.Built, name: str) -> dict[str, Any]:
    spec = kustomize.pod_spec(k8s.get("Deployment", name))
    assert spec is not None
    return spec


def main_container(k8s: kustomize.Built, name: str) -> dict[str, Any]:
    (container,) = pod(k8s, name)["containers"]
    return container


def sidecar(k8s: kustomize.Built, name: str) -> dict[str, Any]:
    (cerbos,) = [c for c in kustomize.containers(pod(k8s, name))
                 if kustomize.image_name(c["image"]) == "ghcr.io/cerbos/cerbos"]
    return cerbos


def test_build_has_the_expected_objects(k8s: kustomize.Built) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in k8s.objects}
    assert {
        ("Namespace", "agent-broker"),
        ("Deployment", "agent-broker"), ("Service", "agent-broker"),
        ("HorizontalPodAutoscaler", "agent-broker"), ("PodDisruptionBudget", "agent-broker"),
        ("NetworkPolicy", "agent-broker"),
        ("Deployment", "crm"), ("Service", "crm"), ("PodDisruptionBudget", "crm"),
        ("ConfigMap", "broker-config"), ("ConfigMap", "agent-broker-env"),
        ("ConfigMap", "cerbos-config"), ("ConfigMap", "cerbos-policies"),
        ("ConfigMap", "cerbos-schemas"),
        ("Secret", "broker-keys"), ("Secret", "broker-secrets"), ("Secret", "redis-auth"),
    } <= kinds
    assert len(kinds) == len(k8s.objects), "an object is defined twice"
    for obj in k8s.objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "agent-broker", obj["metadata"]["name"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_objects_match_the_kubernetes_schemas(k8s: kustomize.Built, version: str) -> None:
    problems = []
    for obj in k8s.objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_the_schemas_reject_a_broken_object(k8s: kustomize.Built) -> None:
    # Strict validation really is applied: a misspelled field is an error.
    deployment = yaml.safe_load(yaml.safe_dump(k8s.get("Deployment", "agent-broker")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST_SUPPORTED, strict=True)


def test_broker_readiness_and_liveness(k8s: kustomize.Built) -> None:
    broker = main_container(k8s, "agent-broker")
    assert broker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert broker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in broker["ports"]}
    assert ports == {"http": 8400}
    assert broker["readinessProbe"]["httpGet"]["port"] == "http"


@pytest.mark.parametrize("name", WORKLOADS)
def test_replicas_and_spread(k8s: kustomize.Built, name: str) -> None:
    assert k8s.get("Deployment", name)["spec"]["replicas"] >= 2
    spec = pod(k8s, name)
    spread = spec.get("topologySpreadConstraints", [])
    anti = spec.get("affinity", {}).get("podAntiAffinity")
    assert any(c["topologyKey"] == "kubernetes.io/hostname" for c in spread) or anti


@pytest.mark.parametrize("name", WORKLOADS)
def test_pods_run_non_root_and_read_only(k8s: kustomize.Built, name: str) -> None:
    spec = pod(k8s, name)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001  # the image's user (deploy/Dockerfile)
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    for container in kustomize.containers(spec):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
        assert "memory" in resources["limits"], container["name"]


@pytest.mark.parametrize("name", WORKLOADS)
def test_cerbos_sidecar_in_every_pod(k8s: kustomize.Built, name: str) -> None:
    cerbos = sidecar(k8s, name)
    assert cerbos["image"] == f"ghcr.io/cerbos/cerbos:{cerbos_version()}"
    if cerbos in pod(k8s, name).get("initContainers", []):
        assert cerbos["restartPolicy"] == "Always", "an init container that is not a sidecar"
    mounts = {m["mountPath"]: m["name"] for m in cerbos["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(k8s, name)["volumes"]}
    assert volumes[mounts["/config"]]["configMap"]["name"] == "cerbos-config"
    sources = [s["configMap"]["name"] for s in volumes[mounts["/policies"]]["projected"]["sources"]]
    assert sources == ["cerbos-policies", "cerbos-schemas"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert cerbos[probe]["exec"]["command"][:2] == ["/cerbos", "healthcheck"]


def test_workloads_talk_to_their_own_sidecar(k8s: kustomize.Built) -> None:
    grpc = load_yaml(K8S / "base" / "cerbos" / "config.yaml")["server"]["grpcListenAddr"]
    broker_env = {e["name"]: e.get("value") for e in main_container(k8s, "agent-broker")["env"]}
    assert broker_env["BROKER_CERBOS__ADDRESS"] == grpc
    assert f"--cerbos={grpc}" in main_container(k8s, "crm")["args"]


def test_signing_keys_mount_can_be_reloaded(k8s: kustomize.Built) -> None:
    # A subPath mount never sees Secret updates; the whole folder does (docs/deploy.md).
    broker = main_container(k8s, "agent-broker")
    env = {e["name"]: e.get("value") for e in broker["env"]}
    keys_file = Path(env["BROKER_SIGNING__KEYS_FILE"])
    (mount,) = [m for m in broker["volumeMounts"] if m["mountPath"] == str(keys_file.parent)]
    assert "subPath" not in mount and mount["readOnly"] is True
    volume = next(v for v in pod(k8s, "agent-broker")["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "broker-keys"
    assert keys_file.name in k8s.get("Secret", "broker-keys")["data"]
    # Updated in place (no hash suffix), so running brokers pick a rotation up.
    assert ("Secret", "broker-keys") in k8s.unhashed


def test_hpa_scales_the_broker(k8s: kustomize.Built) -> None:
    hpa = k8s.get("HorizontalPodAutoscaler", "agent-broker")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "agent-broker"}
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def _selects(selector: dict[str, str], k8s: kustomize.Built, name: str) -> bool:
    labels = k8s.get("Deployment", name)["spec"]["template"]["metadata"]["labels"]
    return bool(selector) and selector.items() <= labels.items()


@pytest.mark.parametrize("name", WORKLOADS)
def test_selectors_match_their_pods(k8s: kustomize.Built, name: str) -> None:
    deployment = k8s.get("Deployment", name)
    assert _selects(deployment["spec"]["selector"]["matchLabels"], k8s, name)
    assert _selects(k8s.get("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"],
                    k8s, name)
    assert _selects(k8s.get("NetworkPolicy", name)["spec"]["podSelector"]["matchLabels"],
                    k8s, name)
    service = k8s.get("Service", name)
    assert _selects(service["spec"]["selector"], k8s, name)
    port_names = {p["name"] for p in main_container(k8s, name)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_broker_pdb_allows_one_disruption(k8s: kustomize.Built) -> None:
    assert k8s.get("PodDisruptionBudget", "agent-broker")["spec"] == {
        "maxUnavailable": 1,
        "selector": k8s.get("Deployment", "agent-broker")["spec"]["selector"],
    }


def _references(spec: dict[str, Any]) -> set[tuple[str, str]]:
    refs = set()
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            refs.add(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume:
            refs.add(("Secret", volume["secret"]["secretName"]))
        for source in volume.get("projected", {}).get("sources", []):
            refs |= {("ConfigMap", source["configMap"]["name"])} if "configMap" in source else set()
    for container in kustomize.containers(spec):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                refs.add(("ConfigMap", source["configMapRef"]["name"]))
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add(("Secret", ref["name"]))
    return refs


@pytest.mark.parametrize("name", WORKLOADS)
def test_every_referenced_configmap_and_secret_exists(k8s: kustomize.Built, name: str) -> None:
    spec = pod(k8s, name)
    for kind, ref in _references(spec):
        k8s.get(kind, ref)
    for volume in spec["volumes"]:
        for source in volume.get("projected", {}).get("sources", []):
            data = k8s.get("ConfigMap", source["configMap"]["name"])["data"]
            for item in source["configMap"].get("items", []):
                assert item["key"] in data, item
    for container in kustomize.containers(spec):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in k8s.get("Secret", ref["name"])["data"], ref


@pytest.mark.parametrize("name", WORKLOADS)
def test_env_references_are_defined(k8s: kustomize.Built, name: str) -> None:
    # $(VAR) in env and args expands only from variables defined in the container: a typo
    # would reach the program as the literal text "$(VAR)".
    container = main_container(k8s, name)
    defined = set()
    for source in container.get("envFrom", []):
        defined |= set(k8s.get("ConfigMap", source["configMapRef"]["name"])["data"])
    texts = []
    for env in container.get("env", []):
        texts.append(env.get("value", ""))
        defined.add(env["name"])
    texts += container.get("args", [])
    used = {m for text in texts for m in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", text)}
    assert used <= defined, used - defined


def test_images_are_pinned_and_from_the_overlay(k8s: kustomize.Built) -> None:
    for name in WORKLOADS:
        for container in kustomize.containers(pod(k8s, name)):
            _, tag, digest = kustomize.split_image(container["image"])
            assert (tag and tag != "latest") or digest, container["image"]
    assert main_container(k8s, "agent-broker")["image"] == "registry.example.com/agent-broker:0.1.0"
    assert main_container(k8s, "crm")["image"] == main_container(k8s, "agent-broker")["image"]


def _policy_files() -> set[str]:
    root = REPO_ROOT / "policies"
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and p.suffix in (".yaml", ".yml", ".json")
            and not p.relative_to(root).as_posix().startswith("tests/")}


def test_policy_configmaps_carry_every_policy(k8s: kustomize.Built) -> None:
    # A policy added to policies/ must reach the sidecars: the generator lists files one by one.
    read = {p.relative_to(POLICY_COPY).as_posix() for p in k8s.files_read
            if p.is_relative_to(POLICY_COPY)}
    assert read == _policy_files()
    schemas = set(k8s.get("ConfigMap", "cerbos-schemas")["data"])
    for name in WORKLOADS:
        volume = next(v for v in pod(k8s, name)["volumes"] if v["name"] == "policies")
        source = volume["projected"]["sources"][1]["configMap"]
        assert {i["key"] for i in source["items"]} == schemas
        assert all(i["path"] == f"_schemas/{i['key']}" for i in source["items"])


def test_sync_script_copies_what_the_generator_reads() -> None:
    script = (K8S / "sync-policies.sh").read_text(encoding="utf-8")
    assert 'dest=deploy/k8s/base/policies' in script
    assert POLICY_COPY == REPO_ROOT / "deploy/k8s/base/policies"
    assert '"$dest/tests"' in script


def test_redis_values_fit_the_broker(k8s: kustomize.Built) -> None:
    values = load_yaml(K8S / "redis-values.yaml")
    config = values["commonConfiguration"].splitlines()
    assert "appendonly yes" in config
    assert "maxmemory-policy noeviction" in config
    assert values["architecture"] == "replication"  # with Sentinel; never Redis Cluster
    assert values["sentinel"]["enabled"] is True
    assert values["sentinel"]["masterService"]["enabled"] is True
    # The chart's validation couples these three to the master Service.
    assert values["rbac"]["create"] and values["serviceAccount"]["create"]
    assert values["replica"]["automountServiceAccountToken"] is True
    # The broker's connection: the master Service and the same password Secret and key.
    env = k8s.get("ConfigMap", "agent-broker-env")["data"]
    assert env["REDIS_HOST"] == f"{values['fullnameOverride']}-master"
    auth = values["auth"]
    assert auth["enabled"] and ("Secret", auth["existingSecret"]) in k8s.unhashed
    ref = next(e["valueFrom"]["secretKeyRef"] for e in main_container(k8s, "agent-broker")["env"]
               if e["name"] == "REDIS_PASSWORD")
    assert (ref["name"], ref["key"]) == (auth["existingSecret"], auth["existingSecretPasswordKey"])
    # Its NetworkPolicy admits pods labelled <fullname>-client=true.
    assert values["networkPolicy"]["allowExternal"] is False
    for name in WORKLOADS:
        labels = k8s.get("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert labels[f"{values['fullnameOverride']}-client"] == "true"
