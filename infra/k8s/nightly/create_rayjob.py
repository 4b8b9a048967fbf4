"""Create tonight's nightly-caption RayJob from a template: run by the CronJob in
infra/k8s/cronjob-nightly.yaml, inside the project image, with the ServiceAccount
`sound-captions-scheduler` (RBAC: get/list/create/delete on rayjobs.ray.io in its namespace).

template RayJob (YAML, metadata.generateName) ─► skip if last night's run is still going
                                             ─► POST a new RayJob ─► delete finished runs beyond --keep

Talks to the Kubernetes API directly (standard library + PyYAML, both in the image), with the pod's
service-account token; no kubectl image and no credentials beyond that token. Exit status 0 when
the run was created or deliberately skipped, 1 on an API error (the CronJob's Job retries).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TERMINAL_DEPLOYMENT_STATES = frozenset({"Complete", "Failed"})


class ApiError(RuntimeError):
    """The Kubernetes API answered with an error status."""


class KubeApi:
    """Minimal JSON client for one namespace of the Kubernetes API."""

    def __init__(self, base_url: str, token: str, namespace: str, ca_file: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.namespace = namespace
        self.context = (
            ssl.create_default_context(cafile=ca_file) if base_url.startswith("https") else None
        )

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.context) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise ApiError(
                f"{method} {path}: HTTP {e.code}: {e.read().decode(errors='replace')[:500]}"
            ) from e

    def rayjobs_path(self, name: str = "") -> str:
        path = f"/apis/ray.io/v1/namespaces/{self.namespace}/rayjobs"
        return f"{path}/{name}" if name else path


def in_cluster_api(args: argparse.Namespace) -> KubeApi:
    """API client from the pod's service account, or from the command-line overrides."""
    base_url = args.api_url
    if base_url is None:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        base_url = f"https://{host}:{port}"
    token = (
        Path(args.token_file or f"{SERVICE_ACCOUNT_DIR}/token").read_text(encoding="utf-8").strip()
    )
    namespace = (
        args.namespace
        or Path(f"{SERVICE_ACCOUNT_DIR}/namespace").read_text(encoding="utf-8").strip()
    )
    ca_file = args.ca_file or (f"{SERVICE_ACCOUNT_DIR}/ca.crt" if args.api_url is None else None)
    return KubeApi(base_url, token, namespace, ca_file)


def run(api: KubeApi, template: dict[str, Any], keep: int, allow_concurrent: bool) -> str:
    """Create tonight's RayJob; returns a one-line account of what was done."""
    if template.get("kind") != "RayJob" or not template.get("apiVersion", "").startswith("ray.io/"):
        raise ValueError("the template is not a ray.io RayJob")
    component = template["metadata"]["labels"]["app.kubernetes.io/component"]
    selector = urllib.parse.urlencode({"labelSelector": f"app.kubernetes.io/component={component}"})
    previous = api.request("GET", f"{api.rayjobs_path()}?{selector}").get("items", [])

    running = [
        j["metadata"]["name"]
        for j in previous
        if j.get("status", {}).get("jobDeploymentStatus") not in TERMINAL_DEPLOYMENT_STATES
    ]
    if running and not allow_concurrent:
        return f"skipped: previous run(s) still going: {', '.join(sorted(running))}"

    body = json.loads(json.dumps(template))
    body["metadata"].pop("name", None)
    body["metadata"].setdefault("generateName", f"{component}-")
    created = api.request("POST", api.rayjobs_path(), body)["metadata"]["name"]

    finished = sorted(
        (j for j in previous if j["metadata"]["name"] not in running),
        key=lambda j: j["metadata"].get("creationTimestamp", ""),
        reverse=True,
    )
    deleted = []
    # The new run counts towards --keep.
    for j in finished[max(keep - 1, 0) :]:
        name = j["metadata"]["name"]
        api.request("DELETE", api.rayjobs_path(name), {"propagationPolicy": "Background"})
        deleted.append(name)
    return f"created {created}" + (f"; deleted old runs {', '.join(deleted)}" if deleted else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--template",
        required=True,
        help="RayJob YAML with metadata.labels app.kubernetes.io/component",
    )
    parser.add_argument(
        "--keep", type=int, default=7, help="finished nightly RayJobs to keep (incl. tonight's)"
    )
    parser.add_argument(
        "--allow-concurrent",
        action="store_true",
        help="start even if last night's run is still going",
    )
    parser.add_argument("--api-url", help="API server URL (default: the in-cluster service)")
    parser.add_argument(
        "--token-file", help="bearer token file (default: the pod's service account)"
    )
    parser.add_argument("--namespace", help="namespace (default: the pod's)")
    parser.add_argument("--ca-file", help="CA bundle for https (default: the service account's)")
    args = parser.parse_args(argv)
    with open(args.template, encoding="utf-8") as f:
        template = yaml.safe_load(f)
    try:
        print(run(in_cluster_api(args), template, args.keep, args.allow_concurrent), flush=True)
    except (ApiError, OSError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
