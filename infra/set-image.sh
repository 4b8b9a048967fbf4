#!/usr/bin/env bash
# Change the project image everywhere it is named (infra/image.txt, the Kubernetes manifests and
# the AWS cluster config):   infra/set-image.sh registry.example.org/team/sound-captions:0.2.0
# tests/cluster/test_k8s_manifests.py fails when a container's image differs from infra/image.txt.
set -euo pipefail
new=${1:?usage: infra/set-image.sh IMAGE}
cd "$(dirname "$0")/.."
old=$(cat infra/image.txt)
files=(infra/image.txt infra/aws/ray-cluster.yaml infra/k8s/*.yaml infra/k8s/nightly/rayjob-nightly.yaml)
sed -i "s|$old|$new|g" "${files[@]}"
python3 infra/k8s/sync_configmaps.py
echo "image: $old -> $new"
