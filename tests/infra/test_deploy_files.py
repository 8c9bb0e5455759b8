"""Offline validation of the deployment files (no engine, cluster or registry is reachable here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.infra.infra_helpers import REPO_ROOT

K8S = sorted((REPO_ROOT / "infra" / "k8s").glob("*.yaml"))
COMPOSE = REPO_ROOT / "infra" / "compose" / "docker-compose.yml"
BIN = Path(sys.executable).parent


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_manifests_exist() -> None:
    kinds = {d["kind"] for p in K8S for d in _docs(p)}
    assert {"Namespace", "StatefulSet", "Deployment", "Service", "Secret", "Role", "RoleBinding"} <= kinds
    names = {d["metadata"]["name"] for p in K8S for d in _docs(p) if d["kind"] == "Deployment"}
    assert {"mlflow", "prefect", "prefect-worker", "dask-scheduler", "dask-worker"} <= names


def test_kubernetes_validate_strict() -> None:
    res = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", *map(str, K8S)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("passed") == sum(len(_docs(p)) for p in K8S)


@pytest.mark.parametrize("breakage, expected", [("replicas", "replicas"), ("unknown_field", "hostPortz")])
def test_kubernetes_validate_rejects_a_broken_manifest(tmp_path: Path, breakage: str, expected: str) -> None:
    docs = _docs(REPO_ROOT / "infra" / "k8s" / "30-mlflow.yaml")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    if breakage == "replicas":
        deployment["spec"]["replicas"] = "one"
    else:  # only --strict catches fields the schema does not know
        deployment["spec"]["template"]["spec"]["containers"][0]["hostPortz"] = 1
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    res = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", str(broken)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert expected in res.stdout + res.stderr


def test_yamllint() -> None:
    res = subprocess.run([str(BIN / "yamllint"), "-c", str(REPO_ROOT / "infra" / ".yamllint"), "-f", "parsable",
                          str(REPO_ROOT / "infra" / "k8s"), str(REPO_ROOT / "infra" / "compose")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_k8s_references_resolve() -> None:
    """Selectors, Secret keys, ConfigMaps and in-cluster URLs all point at things that exist."""
    docs = [d for p in K8S for d in _docs(p)]
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        assert d["metadata"].get("namespace", "reprolab") == "reprolab" or d["kind"] == "Namespace"
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    secret_keys = set(by_kind["Secret"]["reprolab-secrets"]["stringData"])
    workloads = [d for k in ("Deployment", "StatefulSet") for d in by_kind[k].values()]
    for svc in by_kind["Service"].values():
        sel = svc["spec"]["selector"]
        assert any(sel.items() <= w["spec"]["template"]["metadata"]["labels"].items() for w in workloads), svc
    text = "\n".join(p.read_text() for p in K8S)
    for key in re.findall(r"secretKeyRef: \{name: reprolab-secrets, key: ([\w-]+)\}", text):
        assert key in secret_keys
    for name in re.findall(r"configMapRef: \{name: ([\w-]+)\}", text):
        assert name in by_kind["ConfigMap"]
    for host in set(re.findall(r"//([\w-]+)\.reprolab\.svc", text)):
        assert host in by_kind["Service"], f"URL names a Service {host!r} that is not defined"


def test_compose_references_resolve() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"postgres", "s3", "mlflow", "prefect-server", "prefect-worker", "dask-scheduler"} <= set(services)
    for name, svc in services.items():
        deps = svc.get("depends_on", [])
        for dep in deps:
            assert dep in services, f"{name} depends on unknown service {dep}"
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    text = COMPOSE.read_text()
    for host in set(re.findall(r"://(?:[^@/\s]*@)?([a-z][\w-]*):\d+", text)):
        assert host in services or host in ("localhost", "store"), f"URL names unknown service {host!r}"
    assert services["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "--serve-artifacts" in services["mlflow"]["command"]


@pytest.mark.parametrize("path", [COMPOSE, *K8S], ids=lambda p: p.name)
def test_telemetry_off_everywhere(path: Path) -> None:
    text = path.read_text()
    if "prefect" in text and ("image: reprolab" in text or "prefecthq" in text):
        assert "DO_NOT_TRACK" in text or "reprolab-client" in text
