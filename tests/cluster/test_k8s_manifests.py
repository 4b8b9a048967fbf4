"""The Kubernetes manifests (infra/k8s) and the AWS cluster config (infra/aws), checked offline.

Schema: every object validates against tests/cluster/schemas/k8s.schema.json (KubeRay ray.io/v1
RayCluster/RayJob, batch/v1 CronJob, core and RBAC objects; unknown fields are errors). The AWS
config validates against the schema that Ray itself ships (ray/autoscaler/ray-schema.json).

Consistency, grouped by property: one image everywhere; resources on every container; GPU groups
whose nvidia.com/gpu limit, Ray's num-gpus, toleration and node selector agree; /dev/shm in
memory on every Ray pod; service accounts that exist and carry a cloud role; RayJob entrypoints
that name real jobs/*.py files with a config that is a ConfigMap key holding a valid job config;
ConfigMaps in sync with their sources; the nightly scheduler script run against a loopback API.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
SCHEMA = json.loads((Path(__file__).parent / "schemas" / "k8s.schema.json").read_text())
IMAGE = (ROOT / "infra" / "image.txt").read_text().strip()
RAY_VERSION = re.search(
    r"^ARG RAY_VERSION=(\S+)$", (ROOT / "infra" / "Containerfile").read_text(), re.M
).group(1)
GPU = "nvidia.com/gpu"
CLOUD_ROLE_ANNOTATIONS = ("eks.amazonaws.com/role-arn", "iam.gke.io/gcp-service-account")


def _load_manifests() -> list[tuple[str, dict[str, Any]]]:
    """(origin, object) for every object in infra/k8s, including the RayJob template that the
    nightly ConfigMap carries as text."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")) + sorted((K8S / "nightly").glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                docs.append((f"{path.relative_to(ROOT)}#{i}", doc))
    for origin, doc in list(docs):
        if doc["kind"] == "ConfigMap":
            for key, text in doc.get("data", {}).items():
                if key.startswith("rayjob"):
                    docs.append((f"{origin}:{key}", yaml.safe_load(text)))
    return docs


MANIFESTS = _load_manifests()


def _of_kind(*kinds: str) -> list[tuple[str, dict[str, Any]]]:
    return [(o, d) for o, d in MANIFESTS if d["kind"] in kinds]


def _cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    out = [(o, d["spec"]) for o, d in _of_kind("RayCluster")]
    out += [(o, d["spec"]["rayClusterSpec"]) for o, d in _of_kind("RayJob")]
    return out


def _ray_pods() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(origin, group, rayStartParams, pod template spec) for every Ray node group."""
    pods = []
    for origin, spec in _cluster_specs():
        head = spec["headGroupSpec"]
        pods.append((origin, "head", head.get("rayStartParams", {}), head["template"]["spec"]))
        for group in spec.get("workerGroupSpecs", []):
            pods.append(
                (
                    origin,
                    group["groupName"],
                    group.get("rayStartParams", {}),
                    group["template"]["spec"],
                )
            )
    return pods


def _all_pod_specs() -> list[tuple[str, dict[str, Any]]]:
    pods = [(f"{o} {g}", p) for o, g, _, p in _ray_pods()]
    pods += [
        (o, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]) for o, d in _of_kind("CronJob")
    ]
    return pods


def _quantity(value: Any) -> float:
    """A Kubernetes quantity as a number (cores, bytes or devices)."""
    units = {
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
    }
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert m, value
    return float(m.group(1)) * units.get(m.group(2), 1)


# ------------------------------------------------------------------------------------- schema


def test_there_is_something_to_check():
    kinds = {d["kind"] for _, d in MANIFESTS}
    assert {
        "RayCluster",
        "RayJob",
        "CronJob",
        "ConfigMap",
        "ServiceAccount",
        "Role",
        "RoleBinding",
    } <= kinds
    jobs = {d["spec"]["entrypoint"].split()[1] for _, d in _of_kind("RayJob")}
    assert {
        "/app/jobs/build_dataset.py",
        "/app/jobs/train.py",
        "/app/jobs/caption.py",
        "/app/jobs/nightly_caption.py",
    } <= jobs


@pytest.mark.parametrize("origin,doc", MANIFESTS, ids=[o for o, _ in MANIFESTS])
def test_manifest_matches_schema(origin, doc):
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)


def test_schema_rejects_what_the_api_server_would():
    """The schema is strict enough to catch real mistakes (a schema that accepts anything is no check)."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    _, cluster = _of_kind("RayCluster")[0]
    bad = []
    typo = json.loads(json.dumps(cluster))
    typo["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3  # typo of maxReplicas
    bad.append(typo)
    no_image = json.loads(json.dumps(cluster))
    del no_image["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    bad.append(no_image)
    bad_quantity = json.loads(json.dumps(cluster))
    bad_quantity["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"][
        "limits"
    ]["memory"] = "8 GB"
    bad.append(bad_quantity)
    _, job = _of_kind("RayJob")[0]
    scheduled = json.loads(json.dumps(job))
    scheduled["spec"]["schedule"] = (
        "0 2 * * *"  # reverted upstream (kuberay#3908): not a RayJob field
    )
    bad.append(scheduled)
    for doc in bad:
        assert not validator.is_valid(doc)


# ------------------------------------------------------------------------------- consistency


def test_one_image_everywhere():
    images = {
        c["image"]
        for _, pod in _all_pod_specs()
        for c in pod["containers"] + pod.get("initContainers", [])
    }
    assert images == {IMAGE}
    aws = yaml.safe_load((ROOT / "infra" / "aws" / "ray-cluster.yaml").read_text())
    assert aws["docker"]["image"] == IMAGE


def test_ray_version_matches_the_image():
    assert {spec["rayVersion"] for _, spec in _cluster_specs()} == {RAY_VERSION}


@pytest.mark.parametrize("origin,pod", _all_pod_specs(), ids=[o for o, _ in _all_pod_specs()])
def test_every_container_has_requests_and_limits(origin, pod):
    for c in pod["containers"]:
        requests, limits = c["resources"]["requests"], c["resources"]["limits"]
        for resource in ("cpu", "memory"):
            assert resource in requests and resource in limits, (c["name"], resource)
            assert _quantity(requests[resource]) <= _quantity(limits[resource])
        assert limits.get(GPU) == requests.get(GPU), (
            "extended resources: requests must equal limits"
        )


@pytest.mark.parametrize("origin,pod", _all_pod_specs(), ids=[o for o, _ in _all_pod_specs()])
def test_volume_mounts_name_volumes_of_the_pod(origin, pod):
    volumes = {v["name"] for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        assert {m["name"] for m in c.get("volumeMounts", [])} <= volumes


def test_gpu_groups_agree_with_ray_and_the_scheduler():
    groups = {}
    for origin, group, params, pod in _ray_pods():
        (container,) = pod["containers"]
        gpus = int(_quantity(container["resources"]["limits"].get(GPU, 0)))
        groups.setdefault(gpus > 0, []).append(group)
        assert int(params.get("num-gpus", "0")) == gpus, (origin, group)
        if group != "head":
            assert float(params["num-cpus"]) == _quantity(
                container["resources"]["limits"]["cpu"]
            ), (origin, group)
        tolerates_gpu = any(t.get("key") == GPU for t in pod.get("tolerations", []))
        assert tolerates_gpu == (gpus > 0), (origin, group)
        assert (pod.get("nodeSelector", {}).get("nvidia.com/gpu.present") == "true") == (
            gpus > 0
        ), (origin, group)
    assert groups.get(True), "no GPU worker group at all"


def test_ray_pods_have_shared_memory_and_scratch():
    for origin, group, _, pod in _ray_pods():
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "/dev/shm" in mounts, (origin, group)
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert "/scratch" in mounts, (origin, group)


def test_service_accounts_exist_and_carry_the_cloud_role():
    accounts = {d["metadata"]["name"]: d for _, d in _of_kind("ServiceAccount")}
    used = {pod.get("serviceAccountName") for _, pod in _all_pod_specs()}
    assert None not in used, "a pod without serviceAccountName runs as `default`"
    assert used <= set(accounts)
    for _, _, _, pod in _ray_pods():
        annotations = accounts[pod["serviceAccountName"]]["metadata"].get("annotations", {})
        assert any(a in annotations for a in CLOUD_ROLE_ANNOTATIONS)


def test_no_credentials_in_the_repository_files():
    secret_like = re.compile(
        r"AKIA[0-9A-Z]{16}|aws_secret_access_key|AWS_SECRET_ACCESS_KEY|BEGIN [A-Z ]*PRIVATE KEY"
    )
    files = [
        *K8S.rglob("*.yaml"),
        *K8S.rglob("*.py"),
        *(ROOT / "infra" / "aws").glob("*.yaml"),
        ROOT / "infra" / "Containerfile",
        *(ROOT / "jobs" / "configs").glob("cloud-*.yaml"),
    ]
    for path in files:
        assert not secret_like.search(path.read_text()), path
    for _, pod in _all_pod_specs():
        for c in pod["containers"]:
            assert not {e["name"] for e in c.get("env", [])} & {
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
            }


def test_the_nightly_cronjob_may_create_rayjobs():
    ((_, cron),) = _of_kind("CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    bindings = [
        d
        for _, d in _of_kind("RoleBinding")
        if any(
            s["kind"] == "ServiceAccount" and s["name"] == pod["serviceAccountName"]
            for s in d["subjects"]
        )
    ]
    roles = {d["metadata"]["name"]: d for _, d in _of_kind("Role")}
    verbs = {
        v
        for b in bindings
        for r in roles[b["roleRef"]["name"]]["rules"]
        if "ray.io" in r["apiGroups"] and "rayjobs" in r["resources"]
        for v in r["verbs"]
    }
    assert {"create", "list", "delete"} <= verbs
    configmaps = {d["metadata"]["name"]: d for _, d in _of_kind("ConfigMap")}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    mount = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/scheduler"]
    data = configmaps[volumes[mount]["configMap"]["name"]]["data"]
    for arg in container["command"]:
        if arg.startswith("/scheduler/"):
            assert arg.removeprefix("/scheduler/") in data, arg


def _job_options() -> dict[str, set[str]]:
    """The keys each job accepts in its YAML config: its CLI command's options, with underscores
    (the mapping of sound_captions.jobs), plus the top-level options and ``smoke_test``."""
    from sound_captions.cli import main as cli
    from sound_captions.jobs import GLOBAL_KEYS, JOBS

    options = {}
    for job, words in JOBS.items():
        cmd = cli
        for word in words:
            if word not in getattr(cmd, "commands", {}):
                break  # a job whose command the CLI does not have (yet): accepts nothing
            cmd = cmd.commands[word]
        else:
            names = {p.name for p in cmd.params if p.param_type_name == "argument"}
            names |= {
                o[2:].replace("-", "_") for p in cmd.params for o in p.opts if o.startswith("--")
            }
            options[job] = names | set(GLOBAL_KEYS) | {"smoke_test"}
            continue
        options[job] = set()
    return options


def test_rayjobs_run_real_jobs_with_configs_from_the_configmap():
    configmaps = {d["metadata"]["name"]: d for _, d in _of_kind("ConfigMap")}
    options = _job_options()
    for origin, job in _of_kind("RayJob"):
        m = re.fullmatch(
            r"python /app/jobs/(\w+)\.py --config /config/([\w.-]+)", job["spec"]["entrypoint"]
        )
        assert m, (origin, job["spec"]["entrypoint"])
        name, key = m.groups()
        assert (ROOT / "jobs" / f"{name}.py").is_file(), f"{origin}: no jobs/{name}.py"
        head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        volumes = {v["name"]: v for v in head["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in head["containers"][0]["volumeMounts"]}
        configmap = configmaps[volumes[mounts["/config"]]["configMap"]["name"]]
        config = yaml.safe_load(configmap["data"][key])
        assert isinstance(config, dict) and config, (origin, key)
        unknown = set(config) - options[name]
        assert not unknown, f"{origin}: {key} has options jobs/{name}.py does not take: {unknown}"


def test_configmaps_are_in_sync_with_their_sources():
    result = subprocess.run(
        [sys.executable, str(K8S / "sync_configmaps.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_aws_cluster_config_is_valid_for_ray():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "infra" / "aws" / "ray-cluster.yaml").read_text())
    schema = json.loads(
        (Path(sys.modules["ray"].__file__).parent / "autoscaler" / "ray-schema.json").read_text()
    )
    jsonschema.validate(config, schema)
    validate_config(prepare_config(config))
    types = config["available_node_types"]
    assert types["ray.worker.gpu"]["node_config"]["InstanceType"] == "g5.xlarge"
    for node_type in types.values():
        assert "Arn" in node_type["node_config"]["IamInstanceProfile"]


# ------------------------------------------------------------------ the nightly scheduler script


class _FakeKubeApi(BaseHTTPRequestHandler):
    """Just enough of the Kubernetes API for rayjobs.ray.io in one namespace."""

    store: dict[str, dict[str, Any]]
    calls: list[tuple[str, str]]
    serial = 0

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != "Bearer test-token":
            self._send(401, {"kind": "Status", "code": 401})
            return False
        return True

    def do_GET(self):  # noqa: N802
        self.calls.append(("GET", self.path))
        if self._authorized():
            selector = re.search(
                r"labelSelector=app.kubernetes.io%2Fcomponent%3D([\w-]+)", self.path
            ).group(1)
            items = [
                j
                for j in self.store.values()
                if j["metadata"]["labels"]["app.kubernetes.io/component"] == selector
            ]
            self._send(200, {"kind": "RayJobList", "items": items})

    def do_POST(self):  # noqa: N802
        self.calls.append(("POST", self.path))
        if self._authorized():
            body = self._body()
            jsonschema.Draft202012Validator(SCHEMA).validate(body)
            type(self).serial += 1
            body["metadata"]["name"] = body["metadata"].pop("generateName") + f"x{self.serial:04d}"
            body["metadata"]["creationTimestamp"] = "2030-01-01T02:00:00Z"
            self.store[body["metadata"]["name"]] = body
            self._send(201, body)

    def do_DELETE(self):  # noqa: N802
        self.calls.append(("DELETE", self.path))
        if self._authorized():
            self.store.pop(self.path.rsplit("/", 1)[1])
            self._send(200, {"kind": "Status", "status": "Success"})

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_kube(tmp_path):
    handler = type("Handler", (_FakeKubeApi,), {"store": {}, "calls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = tmp_path / "token"
    token.write_text("test-token\n")
    yield handler, f"http://127.0.0.1:{server.server_port}", token
    server.shutdown()
    server.server_close()


def _run_scheduler(
    url: str, token: Path, tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess:
    configmap = yaml.safe_load((K8S / "configmap-nightly.yaml").read_text())
    for key, text in configmap["data"].items():
        (tmp_path / key).write_text(text)
    cmd = [
        sys.executable,
        str(tmp_path / "create_rayjob.py"),
        "--template",
        str(tmp_path / "rayjob-nightly.yaml"),
        "--api-url",
        url,
        "--token-file",
        str(token),
        "--namespace",
        "captions",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _finished(name: str, day: int, state: str = "Complete") -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {
            "name": name,
            "creationTimestamp": f"2029-12-{day:02d}T02:00:00Z",
            "labels": {"app.kubernetes.io/component": "nightly-caption"},
        },
        "status": {"jobDeploymentStatus": state},
    }


def test_scheduler_creates_tonights_rayjob_and_prunes_old_ones(fake_kube, tmp_path):
    handler, url, token = fake_kube
    for day in range(1, 10):
        handler.store[f"old-{day}"] = _finished(
            f"old-{day}", day, "Failed" if day == 5 else "Complete"
        )
    result = _run_scheduler(url, token, tmp_path, "--keep", "7")
    assert result.returncode == 0, result.stderr
    created = [n for n in handler.store if not n.startswith("old-")]
    assert len(created) == 1 and created[0].startswith("sound-captions-nightly-")
    job = handler.store[created[0]]
    assert job["spec"]["entrypoint"].startswith("python /app/jobs/nightly_caption.py")
    # 9 old + 1 new, keep 7: the three oldest go.
    assert sorted(n for n in handler.store if n.startswith("old-")) == [
        f"old-{d}" for d in range(4, 10)
    ]
    assert all(
        path.startswith("/apis/ray.io/v1/namespaces/captions/rayjobs") for _, path in handler.calls
    )


def test_scheduler_skips_while_last_nights_run_is_going(fake_kube, tmp_path):
    handler, url, token = fake_kube
    handler.store["busy"] = _finished("busy", 1, "Running")
    result = _run_scheduler(url, token, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stdout and "busy" in result.stdout
    assert [m for m, _ in handler.calls] == ["GET"]


def test_scheduler_fails_visibly_on_api_errors(fake_kube, tmp_path):
    _, url, _ = fake_kube
    wrong = tmp_path / "wrong-token"
    wrong.write_text("nope")
    result = _run_scheduler(url, wrong, tmp_path)
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr


def test_rayjob_clusters_can_hold_what_their_job_asks_for():
    """A job asking for more GPUs than its cluster can ever have would wait forever."""
    configmaps = {d["metadata"]["name"]: d for _, d in _of_kind("ConfigMap")}
    for origin, job in _of_kind("RayJob"):
        name, key = re.fullmatch(
            r"python /app/jobs/(\w+)\.py --config /config/([\w.-]+)", job["spec"]["entrypoint"]
        ).groups()
        config = yaml.safe_load(configmaps["sound-captions-job-configs"]["data"][key])
        wanted = {
            "train": config.get("workers", 1) * config.get("gpus_per_worker", 0),
            "caption": config.get("inference_actors", 1) * config.get("gpus_per_actor", 0),
            "nightly_caption": config.get("inference_actors", 1) * config.get("gpus_per_actor", 0),
        }.get(name, 0)
        groups = job["spec"]["rayClusterSpec"].get("workerGroupSpecs", [])
        most = sum(g["maxReplicas"] * int(g["rayStartParams"].get("num-gpus", "0")) for g in groups)
        assert wanted <= most, f"{origin}: {name} wants {wanted} GPUs, the cluster can have {most}"
        for g in groups:
            assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], (origin, g["groupName"])
