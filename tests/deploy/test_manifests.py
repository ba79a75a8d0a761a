"""deploy/: every manifest renders, validates against the Kubernetes schema, and agrees with the
gateway (its settings, its health service names, its image) and with the other manifests."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import environment_variables as otel_api_variables
from opentelemetry.sdk import environment_variables as otel_sdk_variables

from gateway.cpu_quota import cgroup_cpu_limit
from gateway.settings import Settings
from gateway.telemetry import _exporters
from tests.deploy.dockerfile import read_dockerfile
from tests.deploy.kustomize import Resource, apply_operation, load_documents, render
from tests.deploy.wheel_build import ROOT

DEPLOY = ROOT / "deploy"
# The oldest Kubernetes the manifests target: native gRPC probes are GA from 1.27, the preStop
# sleep action is on by default from 1.30.
KUBERNETES_VERSION = "1.30"
KUSTOMIZATIONS = {"base": DEPLOY / "base", "production": DEPLOY / "overlays" / "production"}
SECRETS = [r for path in sorted((DEPLOY / "secrets").glob("*.yaml")) for r in load_documents(path)]


def _one(resources: list[Resource], kind: str) -> Resource:
    (found,) = [r for r in resources if r["kind"] == kind]
    return found


@pytest.fixture(params=sorted(KUSTOMIZATIONS), scope="module")
def rendered(request: pytest.FixtureRequest) -> list[Resource]:
    return render(KUSTOMIZATIONS[request.param])


def _container(resources: list[Resource]) -> dict[str, Any]:
    (container,) = _one(resources, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _config(resources: list[Resource]) -> dict[str, str]:
    return _one(resources, "ConfigMap")["data"]


def _setting(resources: list[Resource], name: str) -> Any:
    """A setting as the pods see it: the ConfigMap's value, else the gateway's default."""
    value = _config(resources).get(f"LEADGW_{name.upper()}")
    return Settings.model_fields[name].default if value is None else value


def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


# ---- schema ----


def test_every_rendered_manifest_is_valid_kubernetes(rendered: list[Resource]) -> None:
    assert {r["kind"] for r in rendered} >= {
        "Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount",
    }  # fmt: skip
    for resource in [*rendered, *SECRETS]:
        # strict: a misspelt or misplaced field is an error, not silently ignored.
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    deployment = _one(render(KUSTOMIZATIONS["base"]), "Deployment")
    apply_operation(deployment, {"op": "add", "path": "/spec/template/spec/bogus", "value": 1})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_overlay_is_applied() -> None:
    base, production = render(KUSTOMIZATIONS["base"]), render(KUSTOMIZATIONS["production"])
    assert _one(production, "Deployment")["spec"]["replicas"] == 3
    assert _one(production, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3
    assert all(
        r["metadata"]["namespace"] == "leadgw" for r in production if r["kind"] != "Namespace"
    )
    assert _container(production)["image"].startswith("registry.example.com/")
    assert _container(base)["image"] != _container(production)["image"]


def test_the_image_tag_is_the_package_version(rendered: list[Resource]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert _container(rendered)["image"].rpartition(":")[2] == version


# ---- the gateway's settings ----


def test_the_config_map_names_only_real_settings(rendered: list[Resource]) -> None:
    config = _config(rendered)
    settings = {key: value for key, value in config.items() if key.startswith("LEADGW_")}
    others = set(config) - set(settings)
    assert all(key.startswith("OTEL_") for key in others), others
    fields = {f"LEADGW_{name.upper()}" for name in Settings.model_fields}
    assert set(settings) <= fields, set(settings) - fields
    # And the values parse as those settings do.
    Settings(**{key.removeprefix("LEADGW_").lower(): value for key, value in settings.items()})


def test_the_config_maps_otel_variables_are_real_and_accepted(rendered: list[Resource]) -> None:
    # A misspelt OTEL_* variable is ignored by the SDK without a word: check every name against
    # the variables the API and SDK declare, and the values the gateway parses itself.
    declared = {
        value
        for module in (otel_api_variables, otel_sdk_variables)
        for name, value in vars(module).items()
        if name.startswith("OTEL_") and isinstance(value, str)
    }
    otel = {key: value for key, value in _config(rendered).items() if key.startswith("OTEL_")}
    assert set(otel) <= declared, set(otel) - declared
    for signal in ("TRACES", "METRICS"):  # these raise on a value the gateway does not take
        assert _exporters.selected(f"OTEL_{signal}_EXPORTER", otel), "the pods export both"
        _exporters.otlp_protocol(signal, otel)


def test_container_ports_are_the_gateways(rendered: list[Resource]) -> None:
    ports = _ports(_container(rendered))
    assert ports["grpc"] == Settings.model_fields["port"].default == int(_setting(rendered, "port"))
    assert ports["metrics"] == int(_config(rendered)["LEADGW_METRICS_PORT"])
    (dockerfile_runtime,) = read_dockerfile(ROOT / "Dockerfile")[-1:]
    exposed = {int(p) for e in dockerfile_runtime.all("EXPOSE") for p in e.arguments.split()}
    assert set(ports.values()) == exposed
    container = _container(rendered)
    # Probes call the plaintext health port: kubelet's gRPC probes cannot speak TLS.
    assert ports["health"] == int(_config(rendered)["LEADGW_HEALTH_PORT"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["health"]


def test_the_service_and_network_policy_use_those_ports(rendered: list[Resource]) -> None:
    ports = _ports(_container(rendered))
    service = _one(rendered, "Service")
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports
        assert port["port"] == ports[port["targetPort"]]
    policy = _one(rendered, "NetworkPolicy")
    allowed_in = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert allowed_in == set(ports.values())


def test_no_service_port_claims_cleartext_http2_for_a_tls_port(rendered: list[Resource]) -> None:
    # kubernetes.io/h2c is HTTP/2 without TLS: a mesh or a Gateway that honours it would speak
    # cleartext to the gRPC port, which with tls_cert_file set speaks TLS only.
    tls = "LEADGW_TLS_CERT_FILE" in _config(rendered)
    for port in _one(rendered, "Service")["spec"]["ports"]:
        if port.get("appProtocol") == "kubernetes.io/h2c":
            assert port["targetPort"] == "grpc" and not tls, port


def test_the_runtime_user_is_the_images(rendered: list[Resource]) -> None:
    (user,) = read_dockerfile(ROOT / "Dockerfile")[-1].all("USER")
    pod = _one(rendered, "Deployment")["spec"]["template"]["spec"]
    assert str(pod["securityContext"]["runAsUser"]) == user.arguments.split(":")[0]


async def test_probe_service_names_are_served_by_the_health_service(inproc_gateway: Any) -> None:
    names = set()
    for resources in map(render, KUSTOMIZATIONS.values()):
        container = _container(resources)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            names.add(container[probe]["grpc"].get("service", ""))
    assert "leadgw.v1.LeadService" in names  # readiness asks for the API, not just the process
    async with grpc.aio.insecure_channel(inproc_gateway.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in names:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


# ---- shutdown and disruption ----


def test_termination_outlasts_prestop_drain_and_grace(rendered: list[Resource]) -> None:
    pod = _one(rendered, "Deployment")["spec"]["template"]["spec"]
    pre_stop = _container(rendered)["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(_setting(rendered, "drain_s"))
    grace = float(_setting(rendered, "grace_period_s"))
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain + grace


def test_rollouts_and_evictions_keep_a_pod_serving(rendered: list[Resource]) -> None:
    deployment = _one(rendered, "Deployment")
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    pdb = _one(rendered, "PodDisruptionBudget")["spec"]
    hpa = _one(rendered, "HorizontalPodAutoscaler")["spec"]
    # The rollout never takes more pods than the budget allows for a disruption...
    assert rolling["maxUnavailable"] <= pdb["maxUnavailable"]
    assert rolling["maxSurge"] >= 1, "with maxUnavailable 0 a rollout needs a surge pod"
    # ...and at the fewest replicas the autoscaler allows, one disruption leaves one serving.
    assert hpa["minReplicas"] - pdb["maxUnavailable"] >= 1
    assert hpa["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["maxReplicas"]


# ---- labels, selectors and references ----


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are checked here"
    return selector["matchLabels"].items() <= labels.items()


def test_selectors_pick_the_gateway_pods(rendered: list[Resource]) -> None:
    deployment = _one(rendered, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _matches(deployment["spec"]["selector"], labels)
    assert _one(rendered, "Service")["spec"]["selector"].items() <= labels.items()
    assert _matches(_one(rendered, "PodDisruptionBudget")["spec"]["selector"], labels)
    assert _matches(_one(rendered, "NetworkPolicy")["spec"]["podSelector"], labels)
    target = _one(rendered, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == _one(rendered, "ServiceAccount")["metadata"]["name"]


def test_the_service_is_headless(rendered: list[Resource]) -> None:
    assert _one(rendered, "Service")["spec"]["clusterIP"] == "None"


def _keys(resource: Resource) -> set[str]:
    return {*resource.get("data", {}), *resource.get("stringData", {})}


def test_every_secret_and_config_map_key_referenced_is_defined(rendered: list[Resource]) -> None:
    secrets = {s["metadata"]["name"]: _keys(s) for s in SECRETS}
    config_maps = {c["metadata"]["name"]: _keys(c) for c in rendered if c["kind"] == "ConfigMap"}
    container = _container(rendered)
    pod = _one(rendered, "Deployment")["spec"]["template"]["spec"]
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] in config_maps
    for variable in container.get("env", []):
        ref = variable["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets[ref["name"]], ref
        assert variable["name"].removeprefix("LEADGW_").lower() in Settings.model_fields
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    assert {v["secret"]["secretName"] for v in secret_volumes} >= {"leadgw-keys", "leadgw-tls"}
    for volume in secret_volumes:
        for item in volume["secret"]["items"]:
            assert item["key"] in secrets[volume["secret"]["secretName"]], item


def test_mounts_give_the_settings_their_files(rendered: list[Resource]) -> None:
    container = _container(rendered)
    pod = _one(rendered, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    keys_file = Path(_setting(rendered, "keys_file"))
    keys_volume = volumes[mounts[str(keys_file.parent)]["name"]]
    assert keys_file.name in {item["path"] for item in keys_volume["secret"]["items"]}
    # The only writable places with a read-only root filesystem: data_dir and /tmp.
    for writable in (str(_setting(rendered, "data_dir")), "/tmp"):
        assert "emptyDir" in volumes[mounts[writable]["name"]] and not mounts[writable].get(
            "readOnly"
        )
    assert (
        _setting(rendered, "model_repository")
        == read_dockerfile(ROOT / "Dockerfile")[-1].env()["LEADGW_MODEL_REPOSITORY"]
    )


def test_files_from_secrets_are_the_files_settings_name(rendered: list[Resource]) -> None:
    # Each file a Secret mounts is one a *_FILE setting reads, and each such setting's file is
    # mounted: a file nobody reads still has to exist in the Secret, or the pod cannot start.
    container = _container(rendered)
    volumes = {
        v["name"]: v for v in _one(rendered, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    mounted = set()
    for mount in container["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is not None:
            assert "items" in secret, f"{mount['name']}: list the files, each a setting's"
            mounted |= {f"{mount['mountPath']}/{item['path']}" for item in secret["items"]}
    named = {
        value
        for key, value in _config(rendered).items()
        if key.startswith("LEADGW_") and key.endswith("_FILE")
    }
    assert mounted == named


def test_the_security_context_is_restrictive(rendered: list[Resource]) -> None:
    pod = _one(rendered, "Deployment")["spec"]["template"]["spec"]
    context = _container(rendered)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] and context["runAsNonRoot"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"] and "add" not in context["capabilities"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    resources = _container(rendered)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(
        resources["limits"]
    )


def test_resources_make_a_guaranteed_pod_of_whole_cpus(
    rendered: list[Resource], tmp_path: Path
) -> None:
    # Only a Guaranteed pod (requests equal to limits, memory too) with whole CPUs gets CPUs of
    # its own from the static CPU manager, which is what pin_workers "auto" waits for.
    resources = _container(rendered)["resources"]
    assert resources["requests"] == resources["limits"]
    cpus = resources["limits"]["cpu"]
    assert str(cpus).isdigit(), f"whole CPUs, not {cpus!r}"
    # One worker per CPU of the limit: the kernel's cpu.max for that limit.
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(f"{int(cpus) * 100000} 100000\n")
    assert cgroup_cpu_limit(cpu_max) == int(cpus)


# ---- Qdrant and the collector ----

QDRANT = yaml.safe_load((DEPLOY / "qdrant" / "values.yaml").read_text())
COLLECTOR = yaml.safe_load((DEPLOY / "otel-collector" / "config.yaml").read_text())


def test_qdrant_is_a_replicated_cluster_the_gateway_points_at(rendered: list[Resource]) -> None:
    assert QDRANT["replicaCount"] == 3
    assert QDRANT["config"]["cluster"]["enabled"] is True
    assert QDRANT["persistence"]["size"]
    assert QDRANT["apiKey"] is True
    url = urlsplit(_setting(rendered, "qdrant_url"))
    release = url.hostname
    # The chart's Service serves REST on 6333; its generated key Secret is <release>-apikey.
    assert url.port == 6333
    (api_key,) = [v for v in _container(rendered)["env"] if v["name"] == "LEADGW_QDRANT_API_KEY"]
    assert api_key["valueFrom"]["secretKeyRef"]["name"] == f"{release}-apikey"
    egress = _one(rendered, "NetworkPolicy")["spec"]["egress"]
    assert any(p["port"] == url.port for rule in egress for p in rule.get("ports", []))


def test_the_collector_takes_otlp_where_the_gateway_sends_it(rendered: list[Resource]) -> None:
    pipelines = COLLECTOR["service"]["pipelines"]
    assert {"traces", "metrics"} <= set(pipelines)
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            for name in pipeline[kind]:
                assert name in COLLECTOR[kind], f"{name} is not defined under {kind}"
        assert "otlp" in pipeline["receivers"] and "batch" in pipeline["processors"]
    endpoint = urlsplit(_config(rendered)["OTEL_EXPORTER_OTLP_ENDPOINT"])
    protocol = _config(rendered)["OTEL_EXPORTER_OTLP_PROTOCOL"]
    receiver = COLLECTOR["receivers"]["otlp"]["protocols"][protocol]["endpoint"]
    assert int(receiver.rpartition(":")[2]) == endpoint.port
    egress = _one(rendered, "NetworkPolicy")["spec"]["egress"]
    assert any(p["port"] == endpoint.port for rule in egress for p in rule.get("ports", []))


def test_replicas_refuse_an_embedded_store(rendered: list[Resource]) -> None:
    # More than one replica: every one must use the shared Qdrant server.
    assert _setting(rendered, "require_external_store") == "true"
    assert _setting(rendered, "qdrant_url")
