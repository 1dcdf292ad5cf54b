"""The deployment files, validated without Docker or a cluster.

- deploy/compose.yaml: parsed by `compose-spec` (bindings to the Rust `compose_spec` crate, a
  strict Compose Specification parser: unknown keys, bad ports or durations fail), plus the
  cross-references it does not check (depends_on targets, the services the set-up needs).
- deploy/k8s: every manifest validated by `kubernetes-validate` (the Kubernetes 1.30 OpenAPI
  schemas, strict: unknown fields fail), plus kustomization, probes and resource requests.
- Dockerfile: structural (stages, COPY sources exist, non-root user).
- Every ERAS_* variable the files set is a setting the engine reads; every PREFECT_* one a
  Prefect setting.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import prefect.settings
import pytest
import yaml
from compose_spec import PyCompose

from flows.settings import settings_env_vars

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    return [(name, doc) for name in kustomization["resources"]
            for doc in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if doc]


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []))


def test_compose_file_is_valid_compose() -> None:
    compose = PyCompose.from_yaml((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert set(compose.service_names()) == {"postgres", "prefect-server", "fhir-sandbox", "migrate",
                                            "api-1", "api-2", "worker-1", "worker-2"}


def test_compose_validator_rejects_a_misspelt_key() -> None:
    with pytest.raises(ValueError, match="imagee"):
        PyCompose.from_yaml("services:\n  api:\n    imagee: eras-engine\n")


def test_compose_dependencies_exist_and_commands_are_ours() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    assert [services[f"worker-{i}"]["command"][:2] for i in (1, 2)] == [["eras", "worker"]] * 2
    assert all("api.main:create_app" in services[f"api-{i}"]["command"] for i in (1, 2))
    assert services["migrate"]["command"] == ["eras", "migrate"]


def test_k8s_manifests_validate_against_the_kubernetes_schemas() -> None:
    documents = _k8s_documents()
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for _, doc in documents)
    assert ("Deployment", "eras-api") in kinds and ("Service", "eras-api") in kinds
    assert ("Deployment", "eras-worker") in kinds and ("Job", "eras-migrate") in kinds
    assert ("Deployment", "prefect-server") in kinds and ("ConfigMap", "eras-config") in kinds
    for _file, doc in documents:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises naming the field
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_k8s_validator_rejects_an_unknown_field() -> None:
    api = next(doc for _, doc in _k8s_documents() if doc["metadata"]["name"] == "eras-api")
    api["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, K8S_VERSION, strict=True)


def test_k8s_probes_and_resource_requests() -> None:
    for _, doc in _k8s_documents():
        for container in _containers(doc):
            assert container["resources"]["requests"], doc["metadata"]["name"]
    api = next(doc for _, doc in _k8s_documents() if doc["metadata"]["name"] == "eras-api")
    (container,) = _containers(api)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def _set_env_vars() -> set[str]:
    """Every variable name the compose file and the manifests set."""
    compose = _compose()
    names = set(compose["x-eras-env"])
    for service in compose["services"].values():
        names |= set(service.get("environment") or {})
    for _, doc in _k8s_documents():
        if doc["kind"] in ("ConfigMap", "Secret"):
            names |= {k for k in {**doc.get("data", {}), **doc.get("stringData", {})}
                      if re.fullmatch(r"[A-Z_][A-Z0-9_]*", k)}  # env-style keys, not file names
        for container in _containers(doc):
            names |= {e["name"] for e in container.get("env", [])}
    return names


def test_every_env_var_the_files_set_is_a_setting() -> None:
    names = _set_env_vars()
    ours = {n for n in names if n.startswith("ERAS_")}
    assert ours >= {"ERAS_DATABASE_URL", "ERAS_FHIR_BASE_URL", "ERAS_TIMEZONE"}
    assert ours - settings_env_vars() == set()
    prefect_names = {n for n in names if n.startswith("PREFECT_")}
    assert {n for n in prefect_names if not hasattr(prefect.settings, n)} == set()
    others = names - ours - prefect_names
    assert others <= {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "HOST", "PORT"}


def test_dockerfile_stages_copy_existing_paths_and_run_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, flags=re.MULTILINE)
    assert stages == ["engine", "fhir-sandbox"]
    for sources in re.findall(r"^COPY (.+) \S+$", text, flags=re.MULTILINE):
        for source in sources.split():
            assert (ROOT / source).exists(), source
    assert text.count("\nUSER ") == 2 and "USER root" not in text
    services = _compose()["services"]
    assert {services[s]["build"]["target"] for s in ("prefect-server", "fhir-sandbox")} == set(stages)
