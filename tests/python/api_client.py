#!/usr/bin/env python3
"""The official Kubernetes Python client against a tmc shard.

Run by tests/api_python.rs with two kubeconfigs, both written by
`tmc kubeconfig`:

    api_client.py ROOT_KUBECONFIG ACME_KUBECONFIG

ROOT_KUBECONFIG points at workspace `root` (on one node), ACME_KUBECONFIG
at `root:acme` (on another node). The script creates the Workspace `acme`
through the first, then drives a Deployment (AppsV1Api) and a
ClusterRegistration (CustomObjectsApi) through create, list, watch, patch
and delete, and checks that the two workspaces do not see each other's
objects. Every step asserts an exact outcome; the first failure ends the
script with a traceback and a non-zero exit status.
"""

import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

TMC_GROUP, TMC_VERSION = "tmc.kcp.io", "v1alpha1"
TENANCY_GROUP, TENANCY_VERSION = "tenancy.kcp.io", "v1alpha1"
WATCH_SECONDS = 30


def step(msg):
    print(f"== {msg}", flush=True)


def load(path):
    """An ApiClient for one kubeconfig (CA and bearer token from the file)."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=path, client_configuration=cfg)
    return client.ApiClient(cfg)


def expect_status(code, fn, *args, **kwargs):
    """Calls fn and asserts it fails with HTTP status `code`; returns the exception."""
    try:
        got = fn(*args, **kwargs)
    except ApiException as e:
        assert e.status == code, f"{fn.__name__}: want HTTP {code}, got {e.status}: {e.body}"
        return e
    raise AssertionError(f"{fn.__name__}: want HTTP {code}, got success: {got}")


class Recorder:
    """Runs watch.Watch().stream(...) in a thread and records events
    (type, name, a projection of the object) until `stop_after` returns
    true for an event or the watch times out."""

    def __init__(self, func, project, stop_after, **kwargs):
        self.events = []
        self.error = None
        self.done = threading.Event()
        self.w = watch.Watch()
        self.thread = threading.Thread(
            target=self._run, args=(func, project, stop_after, kwargs), daemon=True
        )
        self.thread.start()

    def _run(self, func, project, stop_after, kwargs):
        try:
            for ev in self.w.stream(func, timeout_seconds=WATCH_SECONDS, **kwargs):
                raw = ev["raw_object"]
                self.events.append((ev["type"], raw["metadata"]["name"], project(ev)))
                if stop_after(ev):
                    self.w.stop()
        except Exception as e:  # reported by wait()
            self.error = e
        finally:
            self.done.set()

    def wait(self):
        assert self.done.wait(WATCH_SECONDS + 10), "watch thread did not end"
        if self.error is not None:
            raise self.error
        return self.events


def main(root_kc, acme_kc):
    root = load(root_kc)
    # The workspace of the first kubeconfig: `root`, or any other parent.
    root_ws = root.configuration.host.rsplit("/clusters/", 1)[1]
    acme = load(acme_kc)
    root_custom = client.CustomObjectsApi(root)
    acme_custom = client.CustomObjectsApi(acme)
    root_apps = client.AppsV1Api(root)
    acme_apps = client.AppsV1Api(acme)

    # ------------------------------------------------------------------
    step("workspace root:acme: create, 409 on re-create, has namespace default")
    ws = root_custom.create_cluster_custom_object(
        TENANCY_GROUP, TENANCY_VERSION, "workspaces",
        {"apiVersion": f"{TENANCY_GROUP}/{TENANCY_VERSION}", "kind": "Workspace",
         "metadata": {"name": "acme"}},
    )
    assert ws["metadata"]["name"] == "acme", ws
    assert ws["kind"] == "Workspace", ws
    e = expect_status(409, root_custom.create_cluster_custom_object,
                      TENANCY_GROUP, TENANCY_VERSION, "workspaces",
                      {"apiVersion": f"{TENANCY_GROUP}/{TENANCY_VERSION}",
                       "kind": "Workspace", "metadata": {"name": "acme"}})
    assert e.reason == "Conflict", e.reason
    names = [w["metadata"]["name"] for w in root_custom.list_cluster_custom_object(
        TENANCY_GROUP, TENANCY_VERSION, "workspaces")["items"]]
    assert names == ["acme"], names
    ns = [n.metadata.name for n in client.CoreV1Api(acme).list_namespace().items]
    assert ns == ["default"], ns

    # ------------------------------------------------------------------
    step("Deployment: create in root:acme, watch from the list's resourceVersion")
    listed = acme_apps.list_namespaced_deployment("default")
    assert listed.items == [], listed.items
    rv0 = listed.metadata.resource_version
    assert rv0, "list has no resourceVersion"
    dep_watch = Recorder(
        acme_apps.list_namespaced_deployment,
        lambda ev: (ev["object"].spec.replicas, ev["object"].metadata.labels),
        lambda ev: ev["type"] == "DELETED" and ev["object"].metadata.name == "web",
        namespace="default", resource_version=rv0,
    )

    body = client.V1Deployment(
        api_version="apps/v1", kind="Deployment",
        metadata=client.V1ObjectMeta(name="web", labels={"app": "web"}),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[
                    client.V1Container(name="web", image="nginx:1.27")]),
            ),
        ),
    )
    created = acme_apps.create_namespaced_deployment("default", body)
    assert created.metadata.name == "web"
    assert created.metadata.namespace == "default"
    assert created.metadata.uid, "no uid"
    assert created.metadata.generation == 1, created.metadata.generation
    assert int(created.metadata.resource_version) > int(rv0)
    assert created.spec.replicas == 1
    assert created.spec.template.spec.containers[0].image == "nginx:1.27"

    step("Deployment: 409 on re-create, get, list (label selector)")
    e = expect_status(409, acme_apps.create_namespaced_deployment, "default", body)
    assert e.reason == "Conflict", e.reason
    got = acme_apps.read_namespaced_deployment("web", "default")
    assert got.metadata.uid == created.metadata.uid
    assert got.metadata.resource_version == created.metadata.resource_version
    names = [d.metadata.name for d in
             acme_apps.list_namespaced_deployment("default", label_selector="app=web").items]
    assert names == ["web"], names
    names = [d.metadata.name for d in
             acme_apps.list_namespaced_deployment("default", label_selector="app=db").items]
    assert names == [], names

    step("Deployment: not visible in workspace root; same name there is another object")
    assert root_apps.list_namespaced_deployment("default").items == []
    assert root_apps.list_deployment_for_all_namespaces().items == []
    expect_status(404, root_apps.read_namespaced_deployment, "web", "default")
    other = root_apps.create_namespaced_deployment("default", body)
    assert other.metadata.uid != created.metadata.uid
    assert [d.metadata.uid for d in acme_apps.list_namespaced_deployment("default").items] \
        == [created.metadata.uid]

    step("Deployment: patch (strategic merge: the client's default for a dict)")
    patched = acme_apps.patch_namespaced_deployment(
        "web", "default", {"metadata": {"labels": {"tier": "frontend"}}, "spec": {"replicas": 3}})
    assert patched.spec.replicas == 3, patched.spec.replicas
    assert patched.metadata.labels == {"app": "web", "tier": "frontend"}, patched.metadata.labels
    assert patched.metadata.generation == 2, patched.metadata.generation
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    assert patched.spec.template.spec.containers[0].image == "nginx:1.27"
    assert root_apps.read_namespaced_deployment("web", "default").spec.replicas == 1

    step("Deployment: a dry-run delete (DeleteOptions body, as client-go sends it) keeps it")
    dry = client.V1DeleteOptions(dry_run=["All"])
    acme_apps.delete_namespaced_deployment("web", "default", body=dry)
    kept = acme_apps.read_namespaced_deployment("web", "default")
    assert kept.metadata.resource_version == patched.metadata.resource_version, \
        "a dry-run delete changed the object"
    root_core = client.CoreV1Api(root)
    for name in ["dry-a", "dry-b"]:
        root_core.create_namespaced_config_map("default", {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"dry": "yes"}}})
    root_core.delete_collection_namespaced_config_map(
        "default", label_selector="dry=yes", body=dry)
    names = [c.metadata.name for c in
             root_core.list_namespaced_config_map("default", label_selector="dry=yes").items]
    assert names == ["dry-a", "dry-b"], f"a dry-run deletecollection deleted: left {names}"
    root_core.delete_collection_namespaced_config_map("default", label_selector="dry=yes")
    names = [c.metadata.name for c in
             root_core.list_namespaced_config_map("default", label_selector="dry=yes").items]
    assert names == [], names

    step("Deployment: delete, then 404 on get and on a second delete")
    acme_apps.delete_namespaced_deployment("web", "default")
    expect_status(404, acme_apps.read_namespaced_deployment, "web", "default")
    expect_status(404, acme_apps.delete_namespaced_deployment, "web", "default")
    assert acme_apps.list_namespaced_deployment("default").items == []
    assert root_apps.read_namespaced_deployment("web", "default").metadata.uid == other.metadata.uid

    step("Deployment: the watch saw ADDED, MODIFIED, DELETED in order")
    events = dep_watch.wait()
    want = [
        ("ADDED", "web", (1, {"app": "web"})),
        ("MODIFIED", "web", (3, {"app": "web", "tier": "frontend"})),
        ("DELETED", "web", (3, {"app": "web", "tier": "frontend"})),
    ]
    assert events == want, f"watch events:\n  got  {events}\n  want {want}"

    # ------------------------------------------------------------------
    step("ClusterRegistration: create in root:acme, watch from the list's resourceVersion")
    listed = acme_custom.list_cluster_custom_object(TMC_GROUP, TMC_VERSION, "clusterregistrations")
    assert listed["items"] == [], listed["items"]
    rv0 = listed["metadata"]["resourceVersion"]
    creg_watch = Recorder(
        acme_custom.list_cluster_custom_object,
        lambda ev: (ev["object"]["spec"].get("unschedulable"),
                    ev["object"]["metadata"].get("generation")),
        lambda ev: ev["type"] == "DELETED" and ev["object"]["metadata"]["name"] == "eu-west-1a",
        group=TMC_GROUP, version=TMC_VERSION, plural="clusterregistrations",
        resource_version=rv0,
    )
    # A watch in workspace root over the same span sees none of root:acme's
    # changes, only the marker created in root at the end.
    root_rv = root_custom.list_cluster_custom_object(
        TMC_GROUP, TMC_VERSION, "clusterregistrations")["metadata"]["resourceVersion"]
    root_watch = Recorder(
        root_custom.list_cluster_custom_object,
        lambda ev: ev["object"]["metadata"]["annotations"].get("kcp.io/cluster"),
        lambda ev: ev["object"]["metadata"]["name"] == "marker",
        group=TMC_GROUP, version=TMC_VERSION, plural="clusterregistrations",
        resource_version=root_rv,
    )
    creg = {
        "apiVersion": f"{TMC_GROUP}/{TMC_VERSION}", "kind": "ClusterRegistration",
        "metadata": {"name": "eu-west-1a", "labels": {"region": "eu-west"}},
        "spec": {"apiEndpoint": "https://10.0.0.1:6443",
                 "credentialsSecretRef": {"namespace": "tmc-system", "name": "eu-west-1a-kubeconfig"},
                 "location": "eu-west", "unschedulable": False},
    }
    c = acme_custom.create_cluster_custom_object(TMC_GROUP, TMC_VERSION, "clusterregistrations", creg)
    assert c["metadata"]["name"] == "eu-west-1a", c
    assert "namespace" not in c["metadata"], c["metadata"]
    assert c["metadata"]["generation"] == 1, c["metadata"]
    assert c["spec"]["apiEndpoint"] == "https://10.0.0.1:6443", c["spec"]
    e = expect_status(409, acme_custom.create_cluster_custom_object,
                      TMC_GROUP, TMC_VERSION, "clusterregistrations", creg)
    assert e.reason == "Conflict", e.reason

    step("ClusterRegistration: get, list with label selector; invisible in root")
    g = acme_custom.get_cluster_custom_object(TMC_GROUP, TMC_VERSION, "clusterregistrations", "eu-west-1a")
    assert g["metadata"]["uid"] == c["metadata"]["uid"], g
    names = [i["metadata"]["name"] for i in acme_custom.list_cluster_custom_object(
        TMC_GROUP, TMC_VERSION, "clusterregistrations", label_selector="region=eu-west")["items"]]
    assert names == ["eu-west-1a"], names
    names = [i["metadata"]["name"] for i in acme_custom.list_cluster_custom_object(
        TMC_GROUP, TMC_VERSION, "clusterregistrations", label_selector="region=us-east")["items"]]
    assert names == [], names
    assert root_custom.list_cluster_custom_object(
        TMC_GROUP, TMC_VERSION, "clusterregistrations")["items"] == []
    expect_status(404, root_custom.get_cluster_custom_object,
                  TMC_GROUP, TMC_VERSION, "clusterregistrations", "eu-west-1a")

    step("ClusterRegistration: merge patch of spec bumps generation; status subresource")
    p = acme_custom.patch_cluster_custom_object(
        TMC_GROUP, TMC_VERSION, "clusterregistrations", "eu-west-1a",
        {"spec": {"unschedulable": True}})
    assert p["spec"]["unschedulable"] is True, p["spec"]
    assert p["spec"]["location"] == "eu-west", p["spec"]
    assert p["metadata"]["generation"] == 2, p["metadata"]
    s = acme_custom.patch_cluster_custom_object_status(
        TMC_GROUP, TMC_VERSION, "clusterregistrations", "eu-west-1a",
        {"status": {"kubernetesVersion": "v1.34.2"}, "spec": {"unschedulable": False}})
    assert s["status"]["kubernetesVersion"] == "v1.34.2", s
    assert s["spec"]["unschedulable"] is True, "a status patch changed spec"
    assert s["metadata"]["generation"] == 2, s["metadata"]
    expect_status(404, root_custom.patch_cluster_custom_object,
                  TMC_GROUP, TMC_VERSION, "clusterregistrations", "eu-west-1a",
                  {"spec": {"unschedulable": True}})

    step("ClusterRegistration: delete, then 404")
    acme_custom.delete_cluster_custom_object(TMC_GROUP, TMC_VERSION, "clusterregistrations", "eu-west-1a")
    expect_status(404, acme_custom.get_cluster_custom_object,
                  TMC_GROUP, TMC_VERSION, "clusterregistrations", "eu-west-1a")
    expect_status(404, acme_custom.delete_cluster_custom_object,
                  TMC_GROUP, TMC_VERSION, "clusterregistrations", "eu-west-1a")

    step("ClusterRegistration: the watch saw ADDED, MODIFIED (spec), MODIFIED (status), DELETED")
    events = creg_watch.wait()
    want = [
        ("ADDED", "eu-west-1a", (False, 1)),
        ("MODIFIED", "eu-west-1a", (True, 2)),
        ("MODIFIED", "eu-west-1a", (True, 2)),
        ("DELETED", "eu-west-1a", (True, 2)),
    ]
    assert events == want, f"watch events:\n  got  {events}\n  want {want}"

    step("ClusterRegistration: the watch in root saw none of root:acme's changes")
    marker = dict(creg, metadata={"name": "marker"})
    root_custom.create_cluster_custom_object(TMC_GROUP, TMC_VERSION, "clusterregistrations", marker)
    events = root_watch.wait()
    want = [("ADDED", "marker", root_ws)]
    assert events == want, f"root watch events:\n  got  {events}\n  want {want}"
    root_custom.delete_cluster_custom_object(TMC_GROUP, TMC_VERSION, "clusterregistrations", "marker")

    # ------------------------------------------------------------------
    step("a watch with a timeout ends by itself")
    t = time.monotonic()
    evs = list(watch.Watch().stream(root_apps.list_namespaced_deployment, "default",
                                    resource_version=root_apps.list_namespaced_deployment(
                                        "default").metadata.resource_version,
                                    timeout_seconds=1))
    assert evs == [], evs
    assert time.monotonic() - t < 10, "timeoutSeconds=1 watch did not end"

    print("OK", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} ROOT_KUBECONFIG ACME_KUBECONFIG")
    main(sys.argv[1], sys.argv[2])
