"""Offline checks of deploy/: the Kubernetes manifests, the compose file and the
alert rules. Run by deploy/validate.sh, which adds the checks that need other
programs (promtool, switchyard check, hadolint) on the files this writes.

    python deploy/validate.py --out DIR    # check; write what validate.sh checks next
    python deploy/validate.py --write-rules # regenerate base/prometheusrule.yaml

Every problem is printed; the exit status is 1 when there is any.

What is checked:
- each kustomization (base, overlays/production) is rendered, with `kubectl
  kustomize` when kubectl is installed and always with the small renderer below,
  and the two renderings must be the same objects;
- every rendered object validates against the JSON schema of its kind, for the
  oldest and the newest Kubernetes version the manifests are meant for: the
  Kubernetes kinds with kubernetes-validate's strict schemas, the ServiceMonitor
  and the PrometheusRule with the CRD schemas vendored in kubernetes/schemas/;
- the objects refer to each other correctly (selectors, ports, names), the
  probes and the drain line up with the gateway's config, the production
  overlay's sizes and image pin;
- the PrometheusRule's rules are those of prometheus/alerts.yml;
- compose.yaml parses, validates against the Compose Specification's schema,
  and every file it refers to exists;
- the Dockerfile's version is the workspace's.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
KUBERNETES = DEPLOY / "kubernetes"
KUSTOMIZATIONS = {
    "base": KUBERNETES / "base",
    "production": KUBERNETES / "overlays" / "production",
}
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_RULE = KUBERNETES / "base" / "prometheusrule.yaml"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): KUBERNETES / "schemas/monitoring.coreos.com/servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): KUBERNETES / "schemas/monitoring.coreos.com/prometheusrule_v1.json",
}
# The oldest version: `lifecycle.preStop.sleep` is on by default from 1.30.
# The newest: the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CONFIG_MAP = "switchyard-config"
CONFIG_KEY = "switchyard.yaml"
CLUSTER_SCOPED = {"Namespace"}

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)
    print(f"FAIL {message}")


def ok(message: str) -> None:
    print(f"ok   {message}")


def load_all(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def ident(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{obj.get('kind')}/{ns + '/' if ns else ''}{meta.get('name')}"


# === The renderer ===
#
# A kustomize for the features these kustomizations use, and no more: resources
# (files and directories), namespace, images, patches (strategic merge patches
# from files), configMapGenerator (files) with generatorOptions.
# disableNameSuffixHash. Anything else is refused, so a new feature in a
# kustomization cannot be silently ignored.

SUPPORTED = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "images",
    "patches",
    "configMapGenerator",
    "generatorOptions",
}


class RenderError(Exception):
    pass


def render(directory: Path) -> list[dict[str, Any]]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise RenderError(f"{directory}: no kustomization.yaml")
    k = yaml.safe_load(path.read_text()) or {}
    unsupported = set(k) - SUPPORTED
    if unsupported:
        raise RenderError(f"{path}: not supported by this renderer: {sorted(unsupported)}")

    objects: list[dict[str, Any]] = []
    for entry in k.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            objects += render(target)
        elif target.is_file():
            objects += load_all(target)
        else:
            raise RenderError(f"{path}: resource {entry} not found")

    options = k.get("generatorOptions")
    if (options is not None or "configMapGenerator" in k) and options != {"disableNameSuffixHash": True}:
        raise RenderError(f"{path}: only generatorOptions.disableNameSuffixHash: true is supported")
    for gen in k.get("configMapGenerator", []):
        if set(gen) - {"name", "files"}:
            raise RenderError(f"{path}: configMapGenerator supports name and files only")
        data = {}
        for file in gen["files"]:
            data[Path(file).name] = (directory / file).read_text()
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})

    for patch in k.get("patches", []):
        if set(patch) != {"path"}:
            raise RenderError(f"{path}: only patches with a path alone are supported")
        for doc in load_all(directory / patch["path"]):
            matches = [
                o
                for o in objects
                if (o["apiVersion"], o["kind"], o["metadata"]["name"])
                == (doc["apiVersion"], doc["kind"], doc["metadata"]["name"])
            ]
            if len(matches) != 1:
                raise RenderError(f"{path}: patch {patch['path']} matches {len(matches)} objects")
            merged = strategic_merge(matches[0], doc)
            matches[0].clear()
            matches[0].update(merged)

    for image in k.get("images", []):
        if set(image) - {"name", "newName", "newTag", "digest"}:
            raise RenderError(f"{path}: images support name, newName, newTag and digest")
        for obj in objects:
            for container in containers(obj):
                container["image"] = set_image(container["image"], image)

    if "namespace" in k:
        for obj in objects:
            if obj["kind"] == "Namespace":
                obj["metadata"]["name"] = k["namespace"]
            elif obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = k["namespace"]
    return objects


def strategic_merge(base: Any, patch: Any) -> Any:
    """A strategic merge patch, for what these patches do: maps merge key by
    key; a list of maps that all have a `name` merges item by item on it
    (containers, env, volumes); any other list is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        if any(key.startswith("$") for key in patch):
            raise RenderError(f"patch directives are not supported: {sorted(patch)}")
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    ):
        merged = copy.deepcopy(base)
        for item in patch:
            same = [i for i, old in enumerate(merged) if old["name"] == item["name"]]
            if same:
                merged[same[0]] = strategic_merge(merged[same[0]], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return obj.get("spec", {}).get("template", {}).get("spec")
    return None


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj) or {}
    return spec.get("containers", []) + spec.get("initContainers", [])


def set_image(current: str, image: dict[str, str]) -> str:
    name, tag, digest = split_image(current)
    if name != image["name"]:
        return current
    name = image.get("newName", name)
    if "digest" in image:
        return f"{name}@{image['digest']}"
    if "newTag" in image:
        return f"{name}:{image['newTag']}"
    return name + (f"@{digest}" if digest else f":{tag}" if tag else "")


def split_image(image: str) -> tuple[str, str | None, str | None]:
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        return name, tag, digest or None
    return name, None, digest or None


def render_with_kubectl(directory: Path) -> list[dict[str, Any]] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory}: {out.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc is not None]


def render_checked(name: str, directory: Path) -> list[dict[str, Any]]:
    try:
        ours = render(directory)
        theirs = render_with_kubectl(directory)
    except (RenderError, OSError, yaml.YAMLError, subprocess.TimeoutExpired) as e:
        problem(f"{name}: cannot render: {e}")
        return []
    rel = directory.relative_to(REPO)
    if theirs is None:
        ok(f"{name}: rendered {rel} ({len(ours)} objects; kubectl is not installed, so not compared with kustomize)")
        return ours
    by_id = {ident(o): o for o in theirs}
    mine = {ident(o): o for o in ours}
    if by_id.keys() != mine.keys():
        problem(
            f"{name}: kubectl kustomize and the renderer disagree on the objects: {sorted(by_id.keys() ^ mine.keys())}"
        )
    for key in sorted(by_id.keys() & mine.keys()):
        if by_id[key] != mine[key]:
            problem(f"{name}: kubectl kustomize and the renderer render {key} differently")
    if len(theirs) != len(by_id):
        problem(f"{name}: two objects with the same kind, namespace and name")
    ok(f"{name}: rendered {rel} ({len(theirs)} objects; kubectl kustomize and the renderer agree)")
    return theirs


# === Schemas ===


def strict(schema: Any) -> Any:
    """Unknown fields refused: `additionalProperties: false` on every object
    schema that lists its properties and keeps no unknown fields."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = strict(json.loads(CRD_SCHEMAS[(api_version, kind)].read_text()))
    # The CRD leaves metadata to the API server: check it as every kind's, with
    # the ObjectMeta of the newest Kubernetes schemas.
    version = KUBERNETES_VERSIONS[-1]
    definitions = kv.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)
    schema["properties"]["metadata"] = {
        "$ref": f"{definitions['$id']}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    registry = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def k8s_validator(obj: dict[str, Any], version: str) -> jsonschema.protocols.Validator:
    api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
    directory = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = kv.schema_contents(f"{directory}/{obj['kind'].lower()}-{api_version}.json", version)
    except FileNotFoundError:
        raise LookupError(f"no schema for {obj['apiVersion']} {obj['kind']} in Kubernetes {version}") from None
    definitions = kv.schema_contents(f"{directory}/_definitions.json", version)
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_schemas(name: str, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in CRD_SCHEMAS:
            validators = {"CRD v0.93.0": crd_validator(*key)}
        else:
            validators = {}
            for version in KUBERNETES_VERSIONS:
                try:
                    validators[f"Kubernetes {version.rsplit('.', 1)[0]}"] = k8s_validator(obj, version)
                except LookupError as e:
                    problem(f"{name}: {ident(obj)}: {e}")
        for label, validator in validators.items():
            errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
            for error in errors:
                where = ".".join(str(p) for p in error.absolute_path) or "(top)"
                problem(f"{name}: {ident(obj)} ({label} schema): {where}: {error.message[:300]}")
    ok(f"{name}: {len(objects)} objects checked against their schemas")


# === What the schemas cannot see ===


def duration_seconds(text: Any) -> float:
    """A duration of the gateway's config (`250ms`, `5s`, `5m`, `1h`, or seconds)."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(text).strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * unit


def find(objects: list[dict[str, Any]], kind: str, name: str = "switchyard") -> dict[str, Any] | None:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found[0] if len(found) == 1 else None


def check_consistency(name: str, objects: list[dict[str, Any]], out: Path | None) -> None:
    def need(condition: bool, message: str) -> None:
        if not condition:
            problem(f"{name}: {message}")

    kinds = {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Ingress",
        "ServiceMonitor",
        "PrometheusRule",
    }
    missing = kinds - {o["kind"] for o in objects}
    need(not missing, f"missing kinds: {sorted(missing)}")
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    ns_objects = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    need(len(namespaces) == 1 and list(namespaces) == ns_objects, f"objects in {namespaces}, Namespace {ns_objects}")

    deployment = find(objects, "Deployment")
    service = find(objects, "Service")
    config_map = find(objects, "ConfigMap", CONFIG_MAP)
    if not (deployment and service and config_map):
        problem(f"{name}: the Deployment, Service or ConfigMap {CONFIG_MAP} is missing")
        return
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    (gateway,) = [c for c in pod["containers"] if c["name"] == "switchyard"]

    def selects(selector: dict[str, str] | None) -> bool:
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    need(selects(spec["selector"]["matchLabels"]), "the Deployment's selector misses its pods")
    need(selects(service["spec"]["selector"]), "the Service's selector misses the pods")
    need("replicas" not in spec, "the Deployment sets replicas, which the HPA owns")
    rolling = spec.get("strategy", {}).get("rollingUpdate", {})
    need(rolling.get("maxUnavailable") == 0, "rollingUpdate.maxUnavailable is not 0")

    ports = {p["name"]: p["containerPort"] for p in gateway.get("ports", [])}
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for p in service["spec"]["ports"]:
        need(
            p["targetPort"] in ports or p["targetPort"] in ports.values(),
            f"Service port {p['name']} targets no container port",
        )

    # The config the pods read: the ConfigMap, mounted as a directory.
    args = gateway.get("args", [])
    need(args[:1] == ["serve"] and "--config" in args, "the container does not run `serve --config FILE`")
    config_path = Path(args[args.index("--config") + 1]) if "--config" in args else Path()
    mounts = {m["mountPath"]: m for m in gateway.get("volumeMounts", [])}
    mount = mounts.get(str(config_path.parent))
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    need(
        mount is not None
        and "subPath" not in mount
        and volumes.get(mount["name"], {}).get("configMap", {}).get("name") == CONFIG_MAP,
        f"{config_path.parent} is not the ConfigMap {CONFIG_MAP} mounted as a directory (no subPath)",
    )
    need(config_path.name in config_map.get("data", {}), f"the ConfigMap has no {config_path.name}")
    text = config_map["data"].get(CONFIG_KEY, "")
    config = yaml.safe_load(text) or {}
    if out is not None:
        # For `switchyard check`: the file the ConfigMap was made from when it
        # holds just that (so problems point at its lines), else the rendering.
        source = KUBERNETES / "base" / CONFIG_KEY
        if source.read_text() != text:
            source = out / f"kubernetes-{name}.yaml"
            source.write_text(text)
        with (out / "kubernetes-configs.txt").open("a") as f:
            f.write(f"{name} {source}\n")

    server = config.get("server", {})
    listen = str(server.get("listen", ""))
    need(listen.startswith("0.0.0.0:"), f"server.listen is {listen!r}, not every address of the pod")
    need(
        listen.rsplit(":", 1)[-1] == str(ports.get("http")),
        f"server.listen {listen!r} is not the container port {ports.get('http')}",
    )
    need(
        "sqlite" not in str(config.get("store", {}).get("url", "sqlite")),
        "the store is SQLite (or unset): replicas would not share it",
    )
    need(bool(config.get("redis", {}).get("url")), "no redis.url: replicas would not share limits")

    # Probes: /health for start-up and liveness, /ready for readiness, on the gateway's port.
    for probe, path in (("startupProbe", "/health"), ("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        get = gateway.get(probe, {}).get("httpGet", {})
        need(
            get.get("path") == path and get.get("port") in ("http", ports.get("http")),
            f"{probe} is not GET {path} on the http port",
        )

    # The drain: preStop sleep + shutdown_delay + shutdown_grace within the grace period.
    try:
        pre_stop = gateway.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        delay = duration_seconds(server.get("shutdown_delay", "0s"))
        grace = duration_seconds(server.get("shutdown_grace", "30s"))
        period = pod.get("terminationGracePeriodSeconds", 30)
        need(
            delay > 0 or pre_stop > 0,
            "neither a preStop sleep nor server.shutdown_delay: the pod stops before the load balancers stop sending",
        )
        need(
            pre_stop + delay + grace < period,
            f"terminationGracePeriodSeconds {period} does not cover preStop {pre_stop}s"
            f" + shutdown_delay {delay:g}s + shutdown_grace {grace:g}s",
        )
    except ValueError as e:
        problem(f"{name}: {e}")

    security = gateway.get("securityContext", {})
    need(pod.get("securityContext", {}).get("runAsNonRoot") is True, "the pod may run as root")
    need(security.get("readOnlyRootFilesystem") is True, "the root filesystem is writable")
    need(security.get("capabilities", {}).get("drop") == ["ALL"], "capabilities are not all dropped")
    need(security.get("allowPrivilegeEscalation") is False, "privilege escalation is allowed")
    need(
        bool(gateway.get("resources", {}).get("requests")) and bool(gateway.get("resources", {}).get("limits")),
        "no resource requests or limits",
    )
    spill = str(config.get("usage", {}).get("spill_file", "switchyard-usage.spill.jsonl"))
    need(
        any(spill.startswith(m.rstrip("/") + "/") and not m_conf.get("readOnly") for m, m_conf in mounts.items()),
        f"usage.spill_file {spill} is not on a writable volume",
    )
    image = gateway["image"]
    _, tag, digest = split_image(image)
    need(bool(digest) or (tag not in (None, "latest")), f"the image {image} is not pinned to a tag or digest")

    hpa = find(objects, "HorizontalPodAutoscaler")
    if hpa:
        target = hpa["spec"]["scaleTargetRef"]
        need(
            target["kind"] == "Deployment" and target["name"] == deployment["metadata"]["name"],
            "the HPA scales another object",
        )
        metrics = {m["type"]: m for m in hpa["spec"].get("metrics", [])}
        need(metrics.get("Resource", {}).get("resource", {}).get("name") == "cpu", "the HPA does not scale on CPU")
        need(
            metrics.get("Pods", {}).get("pods", {}).get("metric", {}).get("name") == "switchyard_requests_per_second",
            "the HPA does not scale on switchyard_requests_per_second",
        )
        behavior = hpa["spec"].get("behavior", {})
        need(behavior.get("scaleUp", {}).get("stabilizationWindowSeconds") == 0, "scale-up waits")
        need(
            behavior.get("scaleDown", {}).get("stabilizationWindowSeconds", 0) >= 300,
            "scale-down does not wait 5 minutes",
        )
    pdb = find(objects, "PodDisruptionBudget")
    if pdb:
        need(selects(pdb["spec"]["selector"]["matchLabels"]), "the PodDisruptionBudget's selector misses the pods")
    monitor = find(objects, "ServiceMonitor")
    if monitor:
        need(
            all(
                service["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items()
            ),
            "the ServiceMonitor's selector misses the Service",
        )
        need(
            all(e.get("port") in service_ports and e.get("path") == "/metrics" for e in monitor["spec"]["endpoints"]),
            "the ServiceMonitor scrapes no /metrics on a Service port",
        )
    ingress = find(objects, "Ingress")
    if ingress:
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                need(
                    backend["name"] == service["metadata"]["name"] and backend["port"].get("name") in service_ports,
                    "an Ingress path sends to no Service port",
                )
                need(
                    path.get("pathType") in {"Exact", "Prefix", "ImplementationSpecific"},
                    f"Ingress pathType {path.get('pathType')!r}",
                )
        annotations = ingress["metadata"].get("annotations", {})
        need(
            annotations.get("nginx.ingress.kubernetes.io/proxy-buffering") == "off",
            "the Ingress buffers streamed answers",
        )

    if name == "production":
        need(
            hpa is not None and hpa["spec"]["minReplicas"] >= 3 and hpa["spec"]["maxReplicas"] == 30,
            "production HPA is not 3 to 30 replicas",
        )
        need("/" in split_image(image)[0], f"production image {image} names no registry")
    ok(f"{name}: selectors, ports, probes, drain, security, HPA and image checked")


# === Alert rules ===


def rules_text() -> str:
    """base/prometheusrule.yaml as generated from prometheus/alerts.yml: its
    `groups:` and everything after, comments included, under `spec:`."""
    lines = ALERTS.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "\n".join(("  " + line) if line.strip() else "" for line in lines[start:])
    return (
        "# Generated from deploy/prometheus/alerts.yml by `python deploy/validate.py\n"
        "# --write-rules`: edit that file, then run it (deploy/validate.sh fails while\n"
        "# the two differ). The Prometheus resource selects rules by label\n"
        "# (ruleSelector): add yours with a patch when it wants one.\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: switchyard\n"
        "  labels:\n"
        "    app.kubernetes.io/name: switchyard\n"
        "    app.kubernetes.io/part-of: switchyard\n"
        "spec:\n"
        f"{body}\n"
    )


def check_rules(out: Path | None) -> None:
    alerts = yaml.safe_load(ALERTS.read_text())
    try:
        (rule,) = load_all(PROMETHEUS_RULE)
        groups = rule["spec"]["groups"]
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        problem(f"{PROMETHEUS_RULE.relative_to(REPO)}: cannot read its groups: {e}")
        return
    if groups != alerts["groups"]:

        def by_name(groups: list[dict[str, Any]]) -> dict[str, Any]:
            return {str(r.get("alert") or r.get("record")): r for g in groups for r in g.get("rules", [])}

        theirs, mine = by_name(groups), by_name(alerts["groups"])
        differ = sorted(n for n in theirs.keys() | mine.keys() if theirs.get(n) != mine.get(n))
        problem(
            f"{PROMETHEUS_RULE.relative_to(REPO)}: its rules are not those of {ALERTS.relative_to(REPO)}"
            f" (differ: {differ or 'group names or order'}); run `python deploy/validate.py --write-rules`"
        )
    elif PROMETHEUS_RULE.read_text() != rules_text():
        problem(
            f"{PROMETHEUS_RULE.relative_to(REPO)}: same rules, but not as generated;"
            " run `python deploy/validate.py --write-rules`"
        )
    else:
        ok(f"{PROMETHEUS_RULE.relative_to(REPO)}: the rules of {ALERTS.relative_to(REPO)}")
    if out is not None:
        (out / "prometheusrule-groups.yml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))


# === Compose ===


def check_compose(out: Path | None) -> None:
    path = DEPLOY / "compose.yaml"
    try:
        compose = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        problem(f"deploy/compose.yaml: does not parse: {e}")
        return
    # The Compose Specification's own schema (compose/compose-spec.json).
    schema = json.loads((DEPLOY / "compose" / "compose-spec.json").read_text())
    for error in jsonschema.Draft7Validator(schema).iter_errors(compose):
        where = ".".join(str(p) for p in error.absolute_path) or "(top)"
        problem(f"deploy/compose.yaml: {where}: {error.message[:300]}")
    services = compose.get("services", {})
    missing = {"gateway", "postgres", "redis", "prometheus", "grafana"} - set(services)
    if missing:
        problem(f"deploy/compose.yaml: missing services {sorted(missing)}")
    named_volumes = set(compose.get("volumes") or {})
    mounts: dict[str, str] = {}
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problem(f"deploy/compose.yaml: {name}: no Dockerfile at {dockerfile}")
        for dep in service.get("depends_on", []):
            if dep not in services:
                problem(f"deploy/compose.yaml: {name} depends on an unknown service {dep}")
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                file = (DEPLOY / source).resolve()
                if not file.exists():
                    problem(f"deploy/compose.yaml: {name}: {source} does not exist")
                mounts[target] = str(file)
            elif source not in named_volumes:
                problem(f"deploy/compose.yaml: {name}: volume {source} is not declared")
        if "image" not in service and not build:
            problem(f"deploy/compose.yaml: {name} has neither an image nor a build")
    # What the mounted files say must match where they are mounted.
    gateway = services.get("gateway", {})
    command = gateway.get("command", [])
    if "--config" in command and command[command.index("--config") + 1] not in mounts:
        problem("deploy/compose.yaml: the gateway's --config file is not mounted")
    try:
        prometheus = yaml.safe_load(Path(mounts["/etc/prometheus/prometheus.yml"]).read_text())
        for rule_file in prometheus.get("rule_files", []):
            if str(Path("/etc/prometheus") / rule_file) not in mounts:
                problem(f"deploy/compose/prometheus.yml: rule file {rule_file} is not mounted beside it")
        targets = [t for s in prometheus["scrape_configs"] for c in s.get("static_configs", []) for t in c["targets"]]
        if not any(t.split(":")[0] in services for t in targets):
            problem("deploy/compose/prometheus.yml: scrapes no compose service")
        dashboards = yaml.safe_load(Path(mounts["/etc/grafana/provisioning/dashboards/switchyard.yaml"]).read_text())
        for provider in dashboards["providers"]:
            folder = provider["options"]["path"].rstrip("/") + "/"
            if not any(m.startswith(folder) for m in mounts):
                problem(f"deploy/compose/grafana/dashboards.yaml: nothing is mounted in {folder}")
        for file in mounts.values():
            if file.endswith(".json"):
                json.loads(Path(file).read_text())
    except (KeyError, OSError, ValueError, yaml.YAMLError) as e:
        problem(f"deploy/compose.yaml: its mounted configs do not fit together: {e!r}")
    if out is not None:
        prom = out / "prometheus"
        prom.mkdir(exist_ok=True)
        for target, file in mounts.items():
            if target.startswith("/etc/prometheus/"):
                shutil.copy(file, prom / Path(target).name)
    ok("deploy/compose.yaml: parses and fits the Compose schema; its services, files and volumes are there")


# === Dockerfile ===


def check_dockerfile() -> None:
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())
    version = cargo["workspace"]["package"]["version"]
    text = (DEPLOY / "Dockerfile").read_text()
    declared = set(re.findall(r"^ARG VERSION=(\S+)$", text, re.M))
    if declared != {version}:
        problem(f"deploy/Dockerfile: ARG VERSION {sorted(declared)} is not the workspace's {version}")
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    build_version = compose["services"]["gateway"]["build"].get("args", {}).get("VERSION")
    if build_version != version:
        problem(f"deploy/compose.yaml: builds VERSION {build_version}, the workspace is {version}")
    if not re.search(r"^USER (?!0|root)\S+", text, re.M):
        problem("deploy/Dockerfile: the image does not run as a non-root USER")
    ok(f"deploy/Dockerfile: version {version}, non-root")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="where to write the files validate.sh checks next")
    parser.add_argument("--write-rules", action="store_true", help="regenerate base/prometheusrule.yaml")
    args = parser.parse_args()
    if args.write_rules:
        PROMETHEUS_RULE.write_text(rules_text())
        print(f"wrote {PROMETHEUS_RULE.relative_to(REPO)}")
        return 0
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)

    for name, directory in KUSTOMIZATIONS.items():
        objects = render_checked(name, directory)
        if objects:
            validate_schemas(name, objects)
            try:
                check_consistency(name, objects, args.out)
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
                problem(f"{name}: an object lacks what the checks read: {e!r}")
    check_rules(args.out)
    check_compose(args.out)
    check_dockerfile()
    if problems:
        print(f"{len(problems)} problem(s) in deploy/")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
