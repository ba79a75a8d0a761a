"""Just enough of Kustomize to render deploy/ without the kustomize binary.

Supported kustomization keys: resources (files, or folders with their own kustomization.yaml),
patches (JSON 6902 operation lists with a kind/name target), images and namespace. Anything
else fails loudly, so the manifests cannot grow a feature this renderer would silently skip.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images", "namespace"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}

Resource = dict[str, Any]


def load_documents(path: Path) -> list[Resource]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def render(directory: Path) -> list[Resource]:
    """The resources a ``kustomize build <directory>`` would print (for the supported subset)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    assert not unsupported, f"{directory}: this renderer does not support {unsupported}"
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        resources += render(path) if path.is_dir() else load_documents(path)
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        matched = [
            r
            for r in resources
            if r["kind"] == target["kind"] and r["metadata"]["name"] == target["name"]
        ]
        assert matched, f"patch {patch['path']} matches nothing"
        for resource in matched:
            for operation in yaml.safe_load((directory / patch["path"]).read_text()):
                apply_operation(resource, operation)
    for image in kustomization.get("images", []):
        for resource in resources:
            _set_image(resource, image)
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = kustomization["namespace"]
    return resources


def apply_operation(document: Any, operation: dict[str, Any]) -> None:
    """One JSON Patch (RFC 6902) operation: add, replace or remove."""
    *parents, last = [
        token.replace("~1", "/").replace("~0", "~") for token in operation["path"].split("/")[1:]
    ]
    node = document
    for token in parents:
        node = node[int(token)] if isinstance(node, list) else node[token]
    op = operation["op"]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(node, list):
        if op == "add":
            node.insert(len(node) if last == "-" else int(last), value)
        elif op == "replace":
            node[int(last)] = value
        elif op == "remove":
            del node[int(last)]
        else:
            raise AssertionError(f"unsupported op {op}")
    else:
        if op in ("replace", "remove"):
            assert last in node, f"{operation['path']}: nothing to {op}"
        if op in ("add", "replace"):
            node[last] = value
        elif op == "remove":
            del node[last]
        else:
            raise AssertionError(f"unsupported op {op}")


def _set_image(resource: Resource, image: dict[str, str]) -> None:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
