#!/usr/bin/env bash
# Build semrouter's container image from the Dockerfile with docker, podman or buildah (the first
# that works here; IMAGE_TOOL=... picks one) and tag it as the Helm chart's default image
# (image.repository:image.tag in deploy/helm/semrouter/values.yaml, i.e. semrouter:0.1.0).
#
#   scripts/image.sh [EXTRA BUILD ARGS...]     e.g. --network host, -v /etc/pip.conf:/etc/pip.conf:ro
#   BASE_IMAGE=debian-python:bookworm scripts/image.sh    another Debian-based Python base
#
# Prints the tag on its last line. docs/deployment.md: size, build time, pushing, installing.
set -euo pipefail
cd "$(dirname "$0")/.."

values=deploy/helm/semrouter/values.yaml
image=$(awk '/^image:/ {inside = 1; next} /^[^ #]/ {inside = 0}
  inside && $1 == "repository:" {repository = $2}
  inside && $1 == "tag:" {gsub(/"/, "", $2); tag = $2}
  END {if (repository && tag) print repository ":" tag}' "$values")
[ -n "$image" ] || { echo "image.sh: no image.repository/image.tag in $values" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)

tool=${IMAGE_TOOL:-}
if [ -z "$tool" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then tool=docker
  elif command -v podman >/dev/null; then tool=podman
  elif command -v buildah >/dev/null; then tool=buildah
  else
    echo "image.sh: none of docker (with a running daemon), podman or buildah is installed" >&2
    exit 1
  fi
fi
case "$tool" in
  docker | podman) build=("$tool" build) ;;
  buildah) build=(buildah bud --layers) ;;
  *) echo "image.sh: IMAGE_TOOL must be docker, podman or buildah, not '$tool'" >&2; exit 1 ;;
esac

args=(--tag "$image" --file Dockerfile --build-arg "VERSION=$version")
[ -z "${BASE_IMAGE:-}" ] || args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
if revision=$(git rev-parse HEAD 2>/dev/null); then
  args+=(--build-arg "REVISION=$revision")
  # The label names the repository only when it has a public https remote (credentials dropped).
  source=$(git remote get-url origin 2>/dev/null || true)
  if [[ $source == https://* ]]; then
    host_path=${source#https://}
    args+=(--build-arg "SOURCE=https://${host_path#*@}")
  fi
fi

echo "image.sh: building $image with $tool" >&2
started=$SECONDS
"${build[@]}" "${args[@]}" "$@" .
echo "image.sh: built $image in $((SECONDS - started)) s" >&2
echo "$image"
