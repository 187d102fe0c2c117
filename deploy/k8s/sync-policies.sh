#!/usr/bin/env bash
# Copy the Cerbos policies (without their test suites) into deploy/k8s/base/policies/, where
# kustomize's configMapGenerator can read them: kustomize refuses files outside the folder of
# the kustomization (its load restrictor). Run it (or `make k8s-policies`) before every
# `kubectl apply -k` / `kustomize build`: the copy is git-ignored and must never drift.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
src=policies
dest=deploy/k8s/base/policies
rm -rf "$dest"
mkdir -p "$dest"
cp -R "$src/." "$dest/"
rm -rf "$dest/tests" "$dest/README.md"
echo "k8s-policies: copied $(find "$dest" -type f | wc -l | tr -d ' ') files from $src/ to $dest/"
