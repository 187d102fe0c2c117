"""A strict subset of `kustomize build`, for validating deploy/k8s without the kustomize binary.

No kustomize is installable from PyPI or npm here, so this implements exactly the fields
deploy/k8s uses: resources (files and kustomization folders), namespace, images,
configMapGenerator and secretGenerator (files, literals, behavior, options). Any other field
raises, so a kustomization that grows a feature this does not model fails the tests instead of
being half-built. Generated names get no hash suffix (kustomize adds one unless
`disableNameSuffixHash`); references are checked by base name, which is what kustomize
rewrites them from.

Like kustomize's default load restrictor, a generator may only read files inside its
kustomization's folder; `resolve` maps such a path to where the file really is when the copy
is absent (the git-ignored policy copy and overlay secrets).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_FIELDS = frozenset({
    "apiVersion", "kind", "resources", "namespace", "images", "configMapGenerator",
    "secretGenerator",
})
GENERATOR_FIELDS = frozenset({"name", "files", "literals", "behavior", "options", "type"})
GENERATOR_OPTIONS = frozenset({"disableNameSuffixHash", "labels", "annotations"})
CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
})
POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})

Resolver = Callable[[Path], Path]


class KustomizeError(Exception):
    pass


@dataclass
class Built:
    objects: list[dict[str, Any]] = field(default_factory=list)
    unhashed: set[tuple[str, str]] = field(default_factory=set)
    """(kind, name) of generated objects whose name kustomize would keep as is."""
    files_read: list[Path] = field(default_factory=list)
    """Every file a generator read, as kustomize would (before `resolve`)."""

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"{kind}/{name} is not in the build")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]


def build(root: Path, resolve: Resolver = lambda p: p) -> Built:
    root = root.resolve()
    spec = yaml.safe_load((root / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(spec) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{root}: fields not modelled by tests/deploy/kustomize.py: "
                             f"{sorted(unknown)}")
    if spec.get("kind") != "Kustomization":
        raise KustomizeError(f"{root}: kind must be Kustomization")
    out = Built()
    for entry in spec.get("resources", []):
        path = (root / entry).resolve()
        if path.is_dir():
            sub = build(path, resolve)
            out.objects += sub.objects
            out.unhashed |= sub.unhashed
            out.files_read += sub.files_read
        else:
            _inside(root, path)
            docs = yaml.safe_load_all(path.read_text(encoding="utf-8"))
            out.objects += [d for d in docs if d]
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in spec.get(key, []):
            _generate(root, kind, generator, out, resolve)
    if "images" in spec:
        _set_images(out.objects, spec["images"])
    if "namespace" in spec:
        for obj in out.objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]
    return out


def _inside(root: Path, path: Path) -> None:
    if not path.resolve().is_relative_to(root):
        raise KustomizeError(f"{path} is outside {root}: kustomize's load restrictor refuses it")


def _generate(root: Path, kind: str, generator: dict[str, Any], out: Built,
              resolve: Resolver) -> None:
    unknown = set(generator) - GENERATOR_FIELDS
    unknown |= set(generator.get("options", {})) - GENERATOR_OPTIONS
    if unknown:
        raise KustomizeError(f"{root}: generator fields not modelled: {sorted(unknown)}")
    name = generator["name"]
    data: dict[str, str] = {}
    for entry in generator.get("files", []):
        key, _, rel = entry.rpartition("=")
        path = root / rel
        _inside(root, path)
        out.files_read.append(path)
        text = resolve(path).read_text(encoding="utf-8")
        data[key or Path(rel).name] = text
    for entry in generator.get("literals", []):
        key, _, value = entry.partition("=")
        data[key] = value
    options = generator.get("options", {})
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": name, **({"labels": options["labels"]} if "labels" in options
                                      else {})},
    }
    if kind == "Secret":
        obj["type"] = generator.get("type", "Opaque")
        obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        obj["data"] = data
    behavior = generator.get("behavior", "create")
    existing = [o for o in out.objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"{kind}/{name} is generated twice (use behavior: merge)")
        out.objects.append(obj)
    elif behavior in ("merge", "replace"):
        if not existing:
            raise KustomizeError(f"{kind}/{name}: behavior {behavior} but no base to change")
        if behavior == "merge":
            existing[0]["data"] = {**existing[0].get("data", {}), **obj["data"]}
        else:
            existing[0]["data"] = obj["data"]
    else:
        raise KustomizeError(f"{kind}/{name}: unknown behavior {behavior!r}")
    if options.get("disableNameSuffixHash"):
        out.unhashed.add((kind, name))


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`registry:5000/name:tag@digest` -> (`registry:5000/name`, tag, digest)."""
    image, _, digest = image.partition("@")
    head, _, tail = image.rpartition(":")
    if head and "/" not in tail:
        return head, tail, digest or None
    return image, None, digest or None


def image_name(image: str) -> str:
    return split_image(image)[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] in POD_TEMPLATE_KINDS:
        spec: dict[str, Any] = obj["spec"]["template"]["spec"]
        return spec
    return None


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _set_images(objects: list[dict[str, Any]], images: list[dict[str, Any]]) -> None:
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for container in containers(spec):
            for rule in images:
                if image_name(container["image"]) != rule["name"]:
                    continue
                name = rule.get("newName", rule["name"])
                if "digest" in rule:
                    container["image"] = f"{name}@{rule['digest']}"
                else:
                    tag = rule.get("newTag", split_image(container["image"])[1])
                    container["image"] = f"{name}:{tag}" if tag else name
