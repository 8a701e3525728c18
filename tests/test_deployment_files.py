"""The deployment files work as written: every path compose mounts or builds from exists,
the sample models.toml loads, and ``docker-compose config`` accepts the file where the
tool is installed (``.ci/run`` installs Debian's; it needs no container runtime)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from core.models_file import load_catalog
from core.tasks import render_queue

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker" / "compose.yaml"


def _services() -> dict[str, dict[str, object]]:
    data = yaml.safe_load(COMPOSE.read_text())
    services = data["services"]
    assert isinstance(services, dict)
    return services


def test_every_build_and_host_mount_of_the_compose_file_exists() -> None:
    for name, service in _services().items():
        build = service.get("build")
        if isinstance(build, dict):
            context = (COMPOSE.parent / str(build["context"])).resolve()
            assert (context / str(build["dockerfile"])).is_file(), name
        for volume in service.get("volumes", []) or []:  # type: ignore[union-attr]
            host = str(volume).split(":")[0]
            if host.startswith("."):
                assert (COMPOSE.parent / host).exists(), f"{name} mounts {host}, which is missing"


def test_every_service_that_reads_models_toml_has_it_mounted() -> None:
    for name, service in _services().items():
        env = service.get("environment") or {}
        if isinstance(env, dict) and "MODELS_FILE" in env:
            models_file = Path(str(env["MODELS_FILE"]))
            mounts = [str(v).split(":") for v in service.get("volumes", []) or []]  # type: ignore[union-attr]
            inside = {m[1]: COMPOSE.parent / m[0] for m in mounts if len(m) > 1 and m[0].startswith(".")}
            host = next((base / models_file.relative_to(target) for target, base in inside.items()
                         if models_file.is_relative_to(target)), None)
            assert host is not None and host.is_file(), f"{name}: MODELS_FILE {models_file} is not mounted"


def test_the_sample_models_file_loads(tmp_path: Path) -> None:
    catalog = load_catalog(COMPOSE.parent / "config" / "models.toml", data_dir=tmp_path)
    assert catalog.default.name == "shapes"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "DISCORD_TOKEN": "x"}, check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_grafana_dashboard_plots_only_metrics_the_project_exports() -> None:
    import json
    import re

    from core.metrics import metrics

    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    exported = {
        family.name + suffix
        for metric in vars(metrics()).values()
        for family in metric.describe()
        for suffix in suffixes[family.type]
    }
    dashboard = json.loads((ROOT / "docker" / "grafana" / "imaginarium.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"imaginarium_[a-z_]+", target["expr"])
    }
    assert len(dashboard["panels"]) >= 10 and used
    unknown = used - exported
    assert not unknown, unknown


K8S = ROOT / "docker" / "k8s"
# KEDA's ScaledObject spec and its redis scaler's metadata, as documented at keda.sh
# (keda.sh/docs/2.16/reference/scaledobject-spec/ and .../scalers/redis-lists/).
KEDA_SPEC = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
    "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}
KEDA_REDIS = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv", "listName", "listLength",
    "activationListLength", "enableTLS", "unsafeSsl", "databaseIndex", "usernameFromEnv", "passwordFromEnv",
}


def _k8s_documents() -> list[dict]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_the_kubernetes_manifests_validate_offline() -> None:
    import kubernetes_validate

    docs = _k8s_documents()
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Job", "Service", "ConfigMap", "Secret", "ScaledObject"} <= kinds
    version = kubernetes_validate.utils.latest_version()
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any schema error


def test_the_autoscaler_uses_only_kedas_documented_fields_and_scales_a_worker() -> None:
    docs = _k8s_documents()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    [scaled] = [d for d in docs if d["kind"] == "ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) <= KEDA_SPEC and spec["minReplicaCount"] <= spec["maxReplicaCount"]
    target = deployments[spec["scaleTargetRef"]["name"]]
    [container] = target["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["imaginarium", "worker"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"] for e in container.get("env", [])}
    models = container["command"][container["command"].index("--models") + 1].split(",")
    for trigger in spec["triggers"]:
        assert trigger["type"] == "redis" and set(trigger["metadata"]) <= KEDA_REDIS
        meta = trigger["metadata"]
        assert meta["addressFromEnv"] in env and int(meta["listLength"]) > 0
        # The lists are the render queues the workers consume (core.tasks.render_queue).
        assert any(meta["listName"] == render_queue(lane, m) for lane in ("fast", "relax") for m in models)
