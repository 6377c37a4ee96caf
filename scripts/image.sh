#!/usr/bin/env bash
# make image: a FROM scratch image around the static hcx binary, tagged
# hcx:<git short revision> (with -dirty when the work tree has changes) and
# hcx:latest. The build context is a temporary directory holding only the
# Dockerfile, the binary and an empty data directory: nothing is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
command -v docker >/dev/null || { echo "make image: no docker command here; install Docker Engine" >&2; exit 1; }
rev=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then rev="$rev-dirty"; fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
echo "make image: building the static binary"
CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" -o "$ctx/hcx" ./cmd/hcx
cp Dockerfile "$ctx/Dockerfile"
mkdir "$ctx/data"
echo "make image: docker build ($(du -h "$ctx/hcx" | cut -f1) binary)"
DOCKER_BUILDKIT=0 docker build --pull=false -q -t "hcx:$rev" -t hcx:latest "$ctx" >/dev/null
echo "make image: hcx:$rev and hcx:latest ($(docker image inspect -f '{{.Size}}' "hcx:$rev") bytes)"
