#!/usr/bin/env python3
"""Structural checks of Courier's rendered Kubernetes manifests (helm template on stdin).

A stand-in for schema validation (kubeconform fetches its schemas from the internet, which CI
cannot reach) plus what a schema cannot know: the fleet's promises. Every object has
apiVersion, kind and a DNS-1123 name; a known kind has its required fields; every Deployment's
containers run non-root with a read-only root, no privilege escalation and no capabilities,
with resource requests and limits, and liveness and readiness probes (the proxy's on /healthz
and /readyz, as httpGet or, for podman, an exec of wget); the proxy's grace period exceeds its
shutdown drain, computed from the courier.toml in its ConfigMap; every Secret, ConfigMap and
PersistentVolumeClaim a pod names is rendered (or is the existing Secret named by
--existing-secret); the Service, the PodDisruptionBudget and the HorizontalPodAutoscaler
select or target the proxies.

Usage: helm template ... | check_manifests.py [--podman] [--existing-secret NAME]
Exits 1 with one line per problem; prints a summary of the objects otherwise.
"""

import argparse
import re
import sys
import tomllib

import yaml

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
REQUIRED = {
    "Deployment": ["spec.selector.matchLabels", "spec.template.spec.containers"],
    "Service": ["spec.selector", "spec.ports"],
    "PodDisruptionBudget": ["spec.selector.matchLabels"],
    "HorizontalPodAutoscaler": ["spec.scaleTargetRef.name", "spec.maxReplicas"],
    "ConfigMap": ["data"],
    "Secret": ["data"],
    "PersistentVolumeClaim": ["spec.accessModes", "spec.resources.requests.storage"],
}
API_VERSIONS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "ConfigMap": "v1",
    "Secret": "v1",
    "PersistentVolumeClaim": "v1",
}


def dig(obj, path):
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def probe_path(probe):
    """The path an HTTP probe asks: httpGet's, or the URL's of an exec of wget (podman)."""
    if "httpGet" in probe:
        return probe["httpGet"].get("path")
    command = dig(probe, "exec.command") or []
    if command and command[0] == "wget":
        return "/" + command[-1].split("/", 3)[-1]
    return None


def proxy_drain_ms(toml_text, pre_stop_s):
    """The proxy's worst-case drain, as proxy/src/server.rs spends it (defaults as config.rs)."""
    c = tomllib.loads(toml_text)
    d, q = c.get("delivery", {}), c.get("dlq", {})
    return (
        pre_stop_s * 1000
        + d.get("ack_timeout_ms", 5000) + d.get("enqueue_wait_ms", 100) + 5000
        + q.get("ack_timeout_ms", 30000) + 5000
        + d.get("shutdown_flush_ms", 15000)
    )


def check(docs, podman, existing_secret):
    problems = []
    by_kind = {}
    for doc in docs:
        kind, name = doc.get("kind"), dig(doc, "metadata.name")
        where = f"{kind}/{name}"
        if doc.get("apiVersion") != API_VERSIONS.get(kind):
            problems.append(f"{where}: apiVersion {doc.get('apiVersion')} (want {API_VERSIONS.get(kind)})")
        if not name or not DNS1123.match(name) or len(name) > 63:
            problems.append(f"{where}: name is not a DNS-1123 label")
        for path in REQUIRED.get(kind, []):
            if dig(doc, path) in (None, [], {}):
                problems.append(f"{where}: {path} missing")
        by_kind.setdefault(kind, {})[name] = doc

    secrets = dict(by_kind.get("Secret", {}))
    configmaps = by_kind.get("ConfigMap", {})
    claims = by_kind.get("PersistentVolumeClaim", {})
    deployments = by_kind.get("Deployment", {})
    proxies = {n: d for n, d in deployments.items()
               if dig(d, "spec.template.metadata.labels").get("app.kubernetes.io/component") == "proxy"}
    if not proxies:
        problems.append("no proxy Deployment")
    if podman and len(proxies) < 2:
        problems.append("podman mode: fewer than two proxy Deployments")

    for name, dep in deployments.items():
        where = f"Deployment/{name}"
        pod = dig(dep, "spec.template.spec")
        labels = dig(dep, "spec.template.metadata.labels") or {}
        if any(labels.get(k) != v for k, v in (dig(dep, "spec.selector.matchLabels") or {}).items()):
            problems.append(f"{where}: the selector does not match the pod's labels")
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
            problems.append(f"{where}: pod not runAsNonRoot with a non-zero runAsUser")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                problems.append(f"{where}: volume {v['name']} names a ConfigMap not rendered")
            if "persistentVolumeClaim" in v and v["persistentVolumeClaim"]["claimName"] not in claims:
                problems.append(f"{where}: volume {v['name']} names a claim not rendered")
        for c in pod["containers"]:
            cw = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True \
                    or "ALL" not in (dig(sc, "capabilities.drop") or []):
                problems.append(f"{cw}: securityContext not locked down")
            for r in ("requests", "limits"):
                if not all(dig(c, f"resources.{r}.{k}") for k in ("cpu", "memory")):
                    problems.append(f"{cw}: resources.{r} cpu and memory missing")
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    problems.append(f"{cw}: no {probe}")
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    problems.append(f"{cw}: mounts {m['name']}, which is no volume")
            for e in c.get("env", []):
                ref = dig(e, "valueFrom.secretKeyRef")
                if ref is None:
                    continue
                if ref["name"] == existing_secret:
                    continue
                secret = secrets.get(ref["name"])
                if secret is None or ref["key"] not in (secret.get("data") or {}):
                    problems.append(f"{cw}: env {e['name']} names {ref['name']}/{ref['key']}, not rendered")
            if podman:
                for p in c.get("ports", []):
                    if not p.get("hostPort") or p.get("hostIP") != "127.0.0.1":
                        problems.append(f"{cw}: podman mode: port {p.get('containerPort')} would be "
                                        "published on every address")

    for name, dep in proxies.items():
        where = f"Deployment/{name}"
        pod = dig(dep, "spec.template.spec")
        c = pod["containers"][0]
        if probe_path(c.get("livenessProbe", {})) != "/healthz":
            problems.append(f"{where}: liveness probe is not /healthz")
        if probe_path(c.get("readinessProbe", {})) != "/readyz":
            problems.append(f"{where}: readiness probe is not /readyz")
        cm_name = next((v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v), None)
        toml_text = dig(configmaps.get(cm_name, {}), "data") or {}
        toml_text = toml_text.get("courier.toml")
        if toml_text is None:
            problems.append(f"{where}: no courier.toml in its ConfigMap")
            continue
        pre_stop = dig(c, "lifecycle.preStop.exec.command") or []
        pre_stop_s = int(pre_stop[-1]) if pre_stop and pre_stop[0].endswith("sleep") else 0
        drain = proxy_drain_ms(toml_text, pre_stop_s)
        grace = pod.get("terminationGracePeriodSeconds", 30) * 1000
        if grace <= drain:
            problems.append(f"{where}: terminationGracePeriodSeconds {grace // 1000} s "
                            f"does not exceed the drain ({drain} ms)")

    def selects_proxies(selector):
        return any(all(dig(d, "spec.template.metadata.labels").get(k) == v for k, v in selector.items())
                   for d in proxies.values())

    for kind in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        objects = by_kind.get(kind, {})
        if podman:
            if objects and kind != "Service":
                problems.append(f"podman mode renders a {kind}, which kube play ignores")
            continue
        if not objects:
            problems.append(f"no {kind}")
    if not podman:
        for name, svc in by_kind.get("Service", {}).items():
            if "proxy" in name and not selects_proxies(svc["spec"]["selector"]):
                problems.append(f"Service/{name}: selects no proxy pod")
        for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
            if not selects_proxies(pdb["spec"]["selector"]["matchLabels"]):
                problems.append(f"PodDisruptionBudget/{name}: selects no proxy pod")
        for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
            if hpa["spec"]["scaleTargetRef"]["name"] not in proxies:
                problems.append(f"HorizontalPodAutoscaler/{name}: targets no proxy Deployment")
            if hpa["spec"].get("minReplicas", 1) < 2:
                problems.append(f"HorizontalPodAutoscaler/{name}: minReplicas below 2")
    return problems, by_kind


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--podman", action="store_true")
    parser.add_argument("--existing-secret", default="")
    args = parser.parse_args()
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    problems, by_kind = check(docs, args.podman, args.existing_secret)
    for p in problems:
        print(f"manifest check: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items())))


if __name__ == "__main__":
    main()
