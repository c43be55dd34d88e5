"""The Kubernetes manifests (deploy/kubernetes/): README "Deploying"'s block runs as typed in a
copy of them (keys, URLs and the binding secret into the dev overlay's git-ignored secrets/,
then `kubectl kustomize`), the base and the dev overlay render, every rendered object validates
strictly against the Kubernetes schema (`kubernetes-validate`), and the objects say what the
README promises: 2 GC replicas on a PostgreSQL URL from a Secret, MC ids from pod names and a
key of their own each, a grace period longer than the drain, HTTP and gRPC probes on the ports
the services really listen on, PodDisruptionBudgets, zone spreading, NetworkPolicies that let
only GCs reach MC gRPC, non-root pods, and no Secret or key in the repository."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.support.readme import bash_blocks_in
from tests.support.services import darktower_env

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"
BLOCK_TIMEOUT_S = 240

# The README block starts `darktower` four times (seconds each, more on a loaded machine).
pytestmark = pytest.mark.timeout(BLOCK_TIMEOUT_S + 60)

Object = dict[str, Any]


def render(path: Path, cwd: Path = ROOT) -> list[Object]:
    kubectl = shutil.which("kubectl")
    # No skip: CI installs kubectl (scripts/install-tools.sh); without it this check is missing.
    assert kubectl is not None, "kubectl is not installed: bash scripts/install-tools.sh"
    done = subprocess.run(
        [kubectl, "kustomize", str(path)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    objects: list[Object] = [o for o in yaml.safe_load_all(done.stdout) if o]
    return objects


@pytest.fixture(scope="module")
def readme_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/kubernetes (without any secrets/ of a local run) in which README
    "Deploying"'s block ran as typed; the copy's root."""
    root = tmp_path_factory.mktemp("readme-deploy")
    shutil.copytree(
        KUSTOMIZE, root / "deploy" / "kubernetes", ignore=shutil.ignore_patterns("secrets")
    )
    [block] = bash_blocks_in("## Deploying")
    # As `tests.support.readme.run_bash`, with room for four `darktower` starts on a busy
    # machine.
    done = subprocess.run(
        ["bash", "-ec", block],
        env=darktower_env({}),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture(scope="module")
def dev(readme_copy: Path) -> list[Object]:
    rendered = (readme_copy / "darktower-dev.yaml").read_text()
    objects: list[Object] = [o for o in yaml.safe_load_all(rendered) if o]
    return objects


@pytest.fixture(scope="module")
def base() -> list[Object]:
    return render(KUSTOMIZE / "base")


def find(objects: list[Object], kind: str, name: str) -> Object:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def container(workload: Object) -> Object:
    [first] = workload["spec"]["template"]["spec"]["containers"]
    found: Object = first
    return found


def env(workload: Object) -> dict[str, Object]:
    return {e["name"]: e for e in container(workload).get("env", [])}


def test_both_render_and_every_dev_object_validates(base: list[Object], dev: list[Object]) -> None:
    kinds = {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy"}
    assert kinds <= {o["kind"] for o in base}
    assert {"Secret", "ConfigMap"} & {o["kind"] for o in base} == set()
    # The overlay holds every object of the base (patched), its namespace and the generated
    # Secrets (5) and ConfigMaps (3): validating it validates what an operator applies (each
    # validation loads schemas: seconds per object).
    assert len(dev) == len(base) + 1 + 5 + 3
    for found in dev:
        kubernetes_validate.validate(found, KUBERNETES_VERSION, strict=True)


def test_validation_would_catch_a_broken_object(dev: list[Object]) -> None:
    broken = find(dev, "Deployment", "gc")
    broken = {**broken, "spec": {**broken["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_dev_overlay_puts_everything_in_its_namespace(dev: list[Object]) -> None:
    namespaced = [o for o in dev if o["kind"] != "Namespace"]
    assert {o["metadata"].get("namespace") for o in namespaced} == {"darktower-dev"}
    assert env(find(dev, "StatefulSet", "mc"))["MC_GRPC_REFLECTION"]["value"] == "true"
    assert env(find(dev, "Deployment", "gc"))["GC_GRPC_REFLECTION"]["value"] == "true"


def secret_value(objects: list[Object], name: str, key: str) -> str:
    [secret] = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == name]
    return base64.b64decode(secret["data"][key]).decode()


def test_gc_two_replicas_on_postgresql_from_a_secret(dev: list[Object]) -> None:
    gc = find(dev, "Deployment", "gc")
    assert gc["spec"]["replicas"] == 2
    database = env(gc)["GC_DATABASE_URL"]
    assert "value" not in database
    ref = database["valueFrom"]["secretKeyRef"]
    # The generated Secret's name (with its content hash) is what the Deployment refers to.
    assert secret_value(dev, ref["name"], ref["key"]).startswith("postgresql+asyncpg://")
    redis = env(find(dev, "StatefulSet", "mc"))["MC_REDIS_URL"]["valueFrom"]["secretKeyRef"]
    assert secret_value(dev, redis["name"], redis["key"]).startswith("redis+sentinel://")
    binding = env(find(dev, "StatefulSet", "mc"))["MC_BINDING_TOKEN_SECRET"]["valueFrom"]
    secret = secret_value(dev, binding["secretKeyRef"]["name"], "MC_BINDING_TOKEN_SECRET")
    assert len(bytes.fromhex(secret)) == 32


def test_mc_ids_from_pod_names_and_a_grace_period_longer_than_the_drain(
    base: list[Object],
) -> None:
    mc = find(base, "StatefulSet", "mc")
    values = env(mc)
    assert values["MC_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert values["MC_SERVICE_KEY_FILE"]["value"].endswith("/$(MC_ID).key")
    drain = float(values["MC_DRAIN_SECONDS"]["value"])
    assert mc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain
    # The headless Service gives each pod the DNS name it advertises.
    assert find(base, "Service", "mc")["spec"]["clusterIP"] == "None"
    assert mc["spec"]["serviceName"] == "mc"


@pytest.mark.parametrize(
    ("kind", "name", "grpc_env", "health_port"),
    [
        ("Deployment", "gc", "GC_GRPC_BIND", "health"),
        ("StatefulSet", "mc", "MC_GRPC_BIND", "health"),
    ],
)
def test_probes_use_the_ports_the_service_listens_on(
    base: list[Object], kind: str, name: str, grpc_env: str, health_port: str
) -> None:
    workload = find(base, kind, name)
    main = container(workload)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    grpc_port = int(env(workload)[grpc_env]["value"].rsplit(":", 1)[1])
    assert ports["grpc"] == grpc_port
    assert main["startupProbe"]["grpc"]["port"] == grpc_port
    assert main["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": health_port}
    assert main["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": health_port}
    assert set(main["resources"]) == {"requests", "limits"}


def test_disruption_budgets_and_zone_spreading(base: list[Object]) -> None:
    for kind, name in (("Deployment", "gc"), ("StatefulSet", "mc")):
        workload = find(base, kind, name)
        labels = workload["spec"]["selector"]["matchLabels"]
        budget = find(base, "PodDisruptionBudget", name)
        assert budget["spec"]["selector"]["matchLabels"] == labels
        spread = workload["spec"]["template"]["spec"]["topologySpreadConstraints"]
        zones = [s for s in spread if s["topologyKey"] == "topology.kubernetes.io/zone"]
        assert zones and zones[0]["labelSelector"]["matchLabels"] == labels


def test_only_gcs_reach_mc_grpc(base: list[Object]) -> None:
    deny = find(base, "NetworkPolicy", "darktower-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in deny["spec"]
    mc_policy = find(base, "NetworkPolicy", "mc-ingress")["spec"]
    grpc_rules = [
        r for r in mc_policy["ingress"] if {"port": "grpc", "protocol": "TCP"} in r["ports"]
    ]
    [grpc_rule] = grpc_rules
    assert grpc_rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "darktower-gc"}}}
    ]
    # Clients reach the MC's WebSocket and the GC's HTTP from anywhere.
    assert {"ports": [{"port": "client", "protocol": "TCP"}]} in mc_policy["ingress"]
    gc_policy = find(base, "NetworkPolicy", "gc-ingress")["spec"]
    assert {"ports": [{"port": "http", "protocol": "TCP"}]} in gc_policy["ingress"]
    [gc_grpc] = [r for r in gc_policy["ingress"] if r.get("from") and "podSelector" in r["from"][0]]
    assert gc_grpc["ports"] == [{"port": "grpc", "protocol": "TCP"}]


def test_gc_health_and_metrics_are_on_their_own_port_for_monitoring_only(
    base: list[Object],
) -> None:
    """GC_HEALTH_BIND (README "Access model"): the GC's probes and scrapes use the health
    port, which only the monitoring namespace may reach; the public HTTP port has neither."""
    gc = find(base, "Deployment", "gc")
    main = container(gc)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    health = int(env(gc)["GC_HEALTH_BIND"]["value"].rsplit(":", 1)[1])
    assert ports["health"] == health != ports["http"]
    annotations = gc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(health)
    gc_policy = find(base, "NetworkPolicy", "gc-ingress")["spec"]
    [monitoring] = [
        r for r in gc_policy["ingress"] if {"port": "health", "protocol": "TCP"} in r["ports"]
    ]
    assert monitoring["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    # The Service (what a load balancer or ingress fronts) does not publish the health port.
    assert {p["name"] for p in find(base, "Service", "gc")["spec"]["ports"]} == {"http", "grpc"}


def test_pods_run_as_non_root_with_nothing_to_escalate(base: list[Object]) -> None:
    workloads = [o for o in base if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(workloads) == 3
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        main = container(workload)
        assert main["image"].startswith("darktower:")
        assert main["securityContext"]["allowPrivilegeEscalation"] is False
        assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_every_mc_pod_has_its_own_bound_key(dev: list[Object]) -> None:
    mc = find(dev, "StatefulSet", "mc")
    volumes = {v["name"]: v for v in mc["spec"]["template"]["spec"]["volumes"]}
    keys = secret_data(dev, volumes["keys"]["secret"]["secretName"])
    replicas = mc["spec"]["replicas"]
    assert sorted(keys) == [f"mc-{i}.key" for i in range(replicas)]
    for name, pem in keys.items():
        # `darktower keys generate --id` binds the key to the pod name that loads it.
        assert "PRIVATE KEY" in pem and name.removesuffix(".key") in pem, name
    trusted = [o for o in dev if o["kind"] == "ConfigMap" and "trusted-mc" in o["metadata"]["name"]]
    assert sorted(trusted[0]["data"]) == [f"mc-{i}.pub" for i in range(replicas)]


def secret_data(objects: list[Object], name: str) -> dict[str, str]:
    [secret] = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == name]
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_the_repository_holds_no_secret_and_no_key() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "deploy"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked
    for path in tracked:
        text = (ROOT / path).read_text()
        assert "PRIVATE KEY" not in text, path
        assert not path.endswith((".key", ".env", ".pem")), path
        assert "/secrets/" not in path, path
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/kubernetes/overlays/dev/secrets/gc/gc.key"],
        cwd=ROOT,
        check=False,
    )
    assert ignored.returncode == 0
