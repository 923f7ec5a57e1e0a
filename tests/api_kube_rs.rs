//! kube-rs against a three-node shard: a typed `Api<Deployment>`, a
//! dynamic WorkloadPlacement with its status subresource, and a
//! `kube::runtime::watcher` on ConfigMaps, and deletions of namespaces
//! and workspaces finished by the lifecycle controller (the shard runs
//! with `--no-controllers`). Writes go to followers (the shard forwards
//! them to the leader); reads go through other nodes.
use tmc::testcluster::TestCluster;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// The HTTP status and reason of a failed call; panics on success.
fn api_err<T: std::fmt::Debug>(r: kube::Result<T>) -> (u16, String) {
    match r {
        Ok(v) => panic!("expected an API error, got {v:?}"),
        Err(kube::Error::Api(s)) => (s.code, s.reason),
        Err(e) => panic!("expected an API error, got {e}"),
    }
}

fn rv<K: kube::Resource>(o: &K) -> u64 {
    o.meta()
        .resource_version
        .as_deref()
        .expect("resourceVersion")
        .parse()
        .expect("numeric resourceVersion")
}

fn deployment(name: &str, app: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": app, "image": "nginx:1.27"}]}
            }
        }
    }))
    .unwrap()
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    let mut v: Vec<String> = items
        .iter()
        .map(|o| o.meta().name.clone().unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_deployments_through_followers() {
    let s = TestCluster::start();
    let (f1, f2) = s.followers();
    let leader = s.leader();
    // Writes on one follower, reads on the other follower and the leader.
    let w: Api<Deployment> = Api::namespaced(s.client(f1, "root").await, "default");
    let r: Api<Deployment> = Api::namespaced(s.client(f2, "root").await, "default");
    let rl: Api<Deployment> = Api::namespaced(s.client(leader, "root").await, "default");
    let pp = PostParams {
        field_manager: Some("tmc-test-create".into()),
        ..Default::default()
    };

    // create
    let web = w.create(&pp, &deployment("web", "web", 1)).await.unwrap();
    assert_eq!(web.metadata.name.as_deref(), Some("web"));
    assert_eq!(web.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(web.metadata.generation, Some(1));
    assert!(web.metadata.uid.is_some());
    assert!(web.metadata.creation_timestamp.is_some());
    let db = w.create(&pp, &deployment("db", "db", 1)).await.unwrap();
    assert!(rv(&db) > rv(&web));
    let (code, reason) = api_err(w.create(&pp, &deployment("web", "web", 1)).await);
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    // get through the other nodes: a write acknowledged by one replica is
    // visible on every replica at once.
    for api in [&r, &rl] {
        let got = api.get("web").await.unwrap();
        assert_eq!(got.metadata.uid, web.metadata.uid);
        assert_eq!(got.metadata.resource_version, web.metadata.resource_version);
        assert_eq!(got.spec.as_ref().unwrap().replicas, Some(1));
    }
    let (code, _) = api_err(r.get("nope").await);
    assert_eq!(code, 404);

    // list with label selectors
    let all = r.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&all.items), ["db", "web"]);
    assert!(all.metadata.resource_version.is_some());
    let l = r
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(names(&l.items), ["web"]);
    let l = r
        .list(&ListParams::default().labels("app in (web,db)"))
        .await
        .unwrap();
    assert_eq!(names(&l.items), ["db", "web"]);
    let l = r
        .list(&ListParams::default().labels("app!=web"))
        .await
        .unwrap();
    assert_eq!(names(&l.items), ["db"]);
    let l = r.list(&ListParams::default().labels("tier")).await.unwrap();
    assert_eq!(names(&l.items), Vec::<String>::new());

    // pages: a continue token from one node works on another, and the
    // pages are one snapshot (a write between them is not in the list)
    let p1 = w.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(names(&p1.items), ["db"]);
    let token = p1.metadata.continue_.clone().expect("a continue token");
    w.create(&pp, &deployment("zz", "zz", 1)).await.unwrap();
    let p2 = rl
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(&p2.items), ["web"]);
    assert_eq!(p2.metadata.resource_version, p1.metadata.resource_version);
    assert!(
        p2.metadata.continue_.as_deref().unwrap_or("").is_empty(),
        "a third page: {:?}",
        p2.metadata.continue_
    );
    w.delete("zz", &DeleteParams::default()).await.unwrap();

    // replace: fresh resourceVersion works, a stale one is a 409 Conflict
    let mut fresh = r.get("web").await.unwrap();
    fresh.spec.as_mut().unwrap().replicas = Some(2);
    let replaced = w.replace("web", &pp, &fresh).await.unwrap();
    assert_eq!(replaced.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(replaced.metadata.generation, Some(2));
    assert!(rv(&replaced) > rv(&web));
    let mut stale = web.clone();
    stale.spec.as_mut().unwrap().replicas = Some(7);
    let (code, reason) = api_err(w.replace("web", &pp, &stale).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        rl.get("web").await.unwrap().spec.unwrap().replicas,
        Some(2),
        "a rejected replace changed the object"
    );

    // merge patch
    let merge = PatchParams {
        field_manager: Some("tmc-test-merge".into()),
        ..Default::default()
    };
    let patched = w
        .patch(
            "web",
            &merge,
            &Patch::Merge(
                json!({"metadata": {"labels": {"tier": "frontend"}}, "spec": {"replicas": 3}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(patched.metadata.generation, Some(3));
    assert_eq!(
        patched.metadata.labels,
        Some(BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "frontend".to_string())
        ]))
    );
    let l = r.list(&ListParams::default().labels("tier")).await.unwrap();
    assert_eq!(names(&l.items), ["web"]);
    // A label-only patch does not bump the generation.
    let relabeled = w
        .patch(
            "web",
            &merge,
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "edge"}}})),
        )
        .await
        .unwrap();
    assert_eq!(relabeled.metadata.generation, Some(3));

    // server-side apply: replicas belong to tmc-test-merge now, so another
    // manager's apply conflicts unless forced.
    let applied = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"owner": "ssa"}},
        "spec": {"replicas": 5}
    });
    let (code, reason) = api_err(
        w.patch(
            "web",
            &PatchParams::apply("tmc-test-ssa"),
            &Patch::Apply(&applied),
        )
        .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let ssa = w
        .patch(
            "web",
            &PatchParams::apply("tmc-test-ssa").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(ssa.spec.as_ref().unwrap().replicas, Some(5));
    assert_eq!(
        ssa.metadata.annotations.as_ref().unwrap().get("owner"),
        Some(&"ssa".to_string())
    );
    // untouched by the apply
    assert_eq!(
        ssa.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image,
        Some("nginx:1.27".to_string())
    );
    let mf = ssa.metadata.managed_fields.clone().unwrap_or_default();
    let ssa_entry = mf
        .iter()
        .find(|m| m.manager.as_deref() == Some("tmc-test-ssa"))
        .unwrap_or_else(|| panic!("no managedFields entry for tmc-test-ssa: {mf:?}"));
    assert_eq!(ssa_entry.operation.as_deref(), Some("Apply"));
    let owned = ssa_entry.fields_v1.as_ref().unwrap().0.clone();
    assert_eq!(owned.pointer("/f:spec/f:replicas"), Some(&json!({})));
    // Same apply again: a no-op (resourceVersion unchanged).
    let again = w
        .patch(
            "web",
            &PatchParams::apply("tmc-test-ssa"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        ssa.metadata.resource_version
    );
    // Another node sees the applied state.
    let seen = r.get("web").await.unwrap();
    assert_eq!(seen.spec.unwrap().replicas, Some(5));
    assert_eq!(
        seen.metadata.resource_version,
        ssa.metadata.resource_version
    );

    // delete: then 404 everywhere, and on a second delete
    w.delete("web", &DeleteParams::default()).await.unwrap();
    for api in [&w, &r, &rl] {
        let (code, reason) = api_err(api.get("web").await);
        assert_eq!((code, reason.as_str()), (404, "NotFound"));
    }
    let (code, _) = api_err(w.delete("web", &DeleteParams::default()).await);
    assert_eq!(code, 404);
    let all = rl.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&all.items), ["db"]);
}

fn placement_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(tmc::types::GROUP, tmc::types::VERSION, "WorkloadPlacement"),
        "workloadplacements",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_placement_and_status_subresource() {
    let s = TestCluster::start();
    let (f1, f2) = s.followers();
    let ar = placement_resource();
    let w: Api<DynamicObject> = Api::all_with(s.client(f1, "root").await, &ar);
    let r: Api<DynamicObject> = Api::all_with(s.client(f2, "root").await, &ar);
    let spec = tmc::types::example_placement_spec();

    // create (a status sent with create is dropped: status subresource)
    let mut obj = DynamicObject::new("web-eu", &ar).data(json!({
        "spec": spec,
        "status": {"phase": "Bound"}
    }));
    obj.metadata.labels = Some(BTreeMap::from([("team".into(), "web".into())]));
    let created = w.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("web-eu"));
    assert_eq!(created.metadata.namespace, None);
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.data["spec"], spec);
    assert_eq!(created.data.get("status"), None, "create kept the status");
    let types = created.types.clone().unwrap();
    assert_eq!(
        (types.api_version.as_str(), types.kind.as_str()),
        ("tmc.kcp.io/v1alpha1", "WorkloadPlacement")
    );
    // It parses as tmc's own type.
    let typed: tmc::types::WorkloadPlacement =
        serde_json::from_value(serde_json::to_value(&created).unwrap()).unwrap();
    assert_eq!(typed.metadata.name.as_deref(), Some("web-eu"));
    let (code, reason) = api_err(w.create(&PostParams::default(), &obj).await);
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    // get and list through another node
    let got = r.get("web-eu").await.unwrap();
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert_eq!(got.data["spec"], spec);
    let l = r
        .list(&ListParams::default().labels("team=web"))
        .await
        .unwrap();
    assert_eq!(names(&l.items), ["web-eu"]);
    let l = r
        .list(&ListParams::default().labels("team=db"))
        .await
        .unwrap();
    assert!(l.items.is_empty());

    // patch_status: changes status, not spec; generation unchanged
    let status = json!({
        "phase": "Bound",
        "selectedClusters": [
            {"workspace": "root:compute", "name": "eu-west-1a"},
            {"workspace": "root:compute", "name": "eu-west-1b"}
        ]
    });
    let st = w
        .patch_status(
            "web-eu",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status, "spec": {"conflictPolicy": "Adopt"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"], status);
    assert_eq!(st.data["spec"], spec, "a status patch changed spec");
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "a status change bumped generation"
    );
    assert!(rv(&st) > rv(&created));
    let got = r.get_status("web-eu").await.unwrap();
    assert_eq!(got.data["status"], status);
    assert_eq!(got.metadata.resource_version, st.metadata.resource_version);

    // a spec change bumps generation and keeps status
    let sp = w
        .patch(
            "web-eu",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"strategy": {"type": "All", "clusters": null, "topologyKey": null}},
                                 "status": {"phase": "Pending"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(sp.data["spec"]["strategy"], json!({"type": "All"}));
    assert_eq!(
        sp.data["status"], status,
        "a main-resource patch changed status"
    );
    assert_eq!(sp.metadata.generation, Some(2));

    // replace (PUT) of the main resource: status from the body is ignored;
    // no spec change, no generation bump
    let mut put = r.get("web-eu").await.unwrap();
    put.data["status"] = json!({"phase": "Unschedulable"});
    put.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("env".into(), "prod".into());
    let replaced = w
        .replace("web-eu", &PostParams::default(), &put)
        .await
        .unwrap();
    assert_eq!(replaced.data["status"], status);
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(
        replaced.metadata.labels.as_ref().unwrap().get("env"),
        Some(&"prod".to_string())
    );

    // replace_status: spec from the body is ignored
    let mut put = r.get("web-eu").await.unwrap();
    put.data["status"]["phase"] = json!("Unschedulable");
    put.data["spec"]["conflictPolicy"] = json!("Adopt");
    let replaced = w
        .replace_status("web-eu", &PostParams::default(), &put)
        .await
        .unwrap();
    assert_eq!(replaced.data["status"]["phase"], "Unschedulable");
    assert_eq!(replaced.data["spec"]["conflictPolicy"], "Abort");
    assert_eq!(replaced.metadata.generation, Some(2));

    // a stale resourceVersion on the status subresource conflicts too
    let (code, reason) = api_err(
        w.replace_status("web-eu", &PostParams::default(), &put)
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));

    // delete
    w.delete("web-eu", &DeleteParams::default()).await.unwrap();
    let (code, _) = api_err(r.get("web-eu").await);
    assert_eq!(code, 404);
    let (code, _) = api_err(r.get_status("web-eu").await);
    assert_eq!(code, 404);
}

/// What a watcher event says, for comparison: ("apply"/"delete", name,
/// the `v` data value).
type Seen = (&'static str, String, Option<String>);

fn seen(kind: &'static str, cm: &ConfigMap) -> Seen {
    (
        kind,
        cm.metadata.name.clone().unwrap(),
        cm.data.as_ref().and_then(|d| d.get("v").cloned()),
    )
}

fn configmap(name: &str, v: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"watched": "yes"}},
        "data": {"v": v}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_every_configmap_change_in_order() {
    const N: usize = 12;
    let s = TestCluster::start();
    let (f1, f2) = s.followers();
    let leader = s.leader();
    let w: Api<ConfigMap> = Api::namespaced(s.client(f1, "root").await, "default");
    let pp = PostParams::default();
    // Two ConfigMaps exist before the watchers start.
    let mut pre = Vec::new();
    for name in ["pre-a", "pre-b"] {
        pre.push(seen(
            "apply",
            &w.create(&pp, &configmap(name, "p")).await.unwrap(),
        ));
    }
    // Three watchers: all ConfigMaps on the other follower (list, then
    // watch); a label-selected view on the leader; and a streaming list
    // (`sendInitialEvents`, ended by a bookmark) on the writer's node.
    let watched: Vec<(Api<ConfigMap>, watcher::Config)> = vec![
        (
            Api::namespaced(s.client(f2, "root").await, "default"),
            watcher::Config::default(),
        ),
        (
            Api::namespaced(s.client(leader, "root").await, "default"),
            watcher::Config::default().labels("watched=yes"),
        ),
        (
            Api::namespaced(s.client(f1, "root").await, "default"),
            watcher::Config::default().streaming_lists(),
        ),
    ];
    let mut rxs = Vec::new();
    let mut ready = Vec::new();
    let mut tasks = Vec::new();
    for (api, cfg) in watched {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
        let (init_tx, init_rx) = tokio::sync::oneshot::channel::<Vec<Seen>>();
        tasks.push(tokio::spawn(async move {
            let mut init_tx = Some(init_tx);
            let mut initial = Vec::new();
            let mut stream = watcher(api, cfg).boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Init) => {
                        assert!(init_tx.is_some(), "the watcher restarted")
                    }
                    Ok(watcher::Event::InitApply(o)) => initial.push(seen("apply", &o)),
                    Ok(watcher::Event::InitDone) => {
                        let _ = init_tx.take().unwrap().send(std::mem::take(&mut initial));
                    }
                    Ok(watcher::Event::Apply(o)) => {
                        let _ = tx.send(seen("apply", &o));
                    }
                    Ok(watcher::Event::Delete(o)) => {
                        let _ = tx.send(seen("delete", &o));
                    }
                    Err(e) => panic!("watcher error: {e}"),
                }
            }
        }));
        rxs.push(rx);
        ready.push(init_rx);
    }
    for r in ready {
        let initial = tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .expect("watcher initial list within 30 s")
            .expect("watcher task alive");
        assert_eq!(initial, pre, "the watcher's initial state");
    }

    // Changes, through a follower.
    let mp = PatchParams::default();
    let mut all: Vec<Seen> = Vec::new();
    let mut selected: Vec<Seen> = Vec::new();
    let both = |all: &mut Vec<Seen>, sel: &mut Vec<Seen>, s: Seen| {
        all.push(s.clone());
        sel.push(s);
    };
    for i in 0..N {
        let name = format!("cm-{i:02}");
        let cm = w.create(&pp, &configmap(&name, "0")).await.unwrap();
        both(&mut all, &mut selected, seen("apply", &cm));
    }
    for i in (0..N).step_by(3) {
        let name = format!("cm-{i:02}");
        let cm = w
            .patch(&name, &mp, &Patch::Merge(json!({"data": {"v": "1"}})))
            .await
            .unwrap();
        both(&mut all, &mut selected, seen("apply", &cm));
    }
    for i in (1..N).step_by(4) {
        let name = format!("cm-{i:02}");
        let last = w
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap()
            .left()
            .expect("delete returns the deleted object");
        both(&mut all, &mut selected, seen("delete", &last));
    }
    // Updated twice more: cm-00 sees three changes.
    for v in ["2", "3"] {
        let cm = w
            .patch("cm-00", &mp, &Patch::Merge(json!({"data": {"v": v}})))
            .await
            .unwrap();
        both(&mut all, &mut selected, seen("apply", &cm));
    }
    // Relabeling takes cm-02 out of the selected view (a delete there) and
    // back in (an apply).
    let cm = w
        .patch(
            "cm-02",
            &mp,
            &Patch::Merge(json!({"metadata": {"labels": {"watched": "no"}}})),
        )
        .await
        .unwrap();
    all.push(seen("apply", &cm));
    selected.push(seen("delete", &cm));
    let cm = w
        .patch(
            "cm-02",
            &mp,
            &Patch::Merge(json!({"metadata": {"labels": {"watched": "yes"}}, "data": {"v": "4"}})),
        )
        .await
        .unwrap();
    both(&mut all, &mut selected, seen("apply", &cm));
    let gone = w
        .delete("pre-a", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("delete returns the deleted object");
    both(&mut all, &mut selected, seen("delete", &gone));

    for (rx, want, what) in [
        (rxs.remove(0), &all, "unselected watcher"),
        (rxs.remove(0), &selected, "label-selected watcher"),
        (rxs.remove(0), &all, "streaming-list watcher"),
    ] {
        let mut rx = rx;
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while got.len() < want.len() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(ev)) => got.push(ev),
                Ok(None) => panic!("{what}: the watcher ended after {got:?}"),
                Err(_) => panic!(
                    "{what}: only {} of {} events within 30 s:\n got  {got:?}\n want {want:?}",
                    got.len(),
                    want.len()
                ),
            }
        }
        assert_eq!(&got, want, "{what}: events differ");
        // Nothing more arrives.
        if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            panic!("{what}: unexpected extra event {extra:?}");
        }
    }
    for t in tasks {
        t.abort();
    }
}

/// A Secret's `stringData` is write-only: kube-apiserver merges it into
/// `data` (base64) on every write, overwriting keys, and never returns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_string_data_is_merged_into_data() {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::ByteString;
    let s = TestCluster::start();
    let (f1, f2) = s.followers();
    let w: Api<Secret> = Api::namespaced(s.client(f1, "root").await, "default");
    let r: Api<Secret> = Api::namespaced(s.client(f2, "root").await, "default");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"},
        "data": {"token": "b2xk", "ca.crt": "Y2E="},
        "stringData": {"token": "new", "user": "admin"}
    }))
    .unwrap();
    let want = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    let created = w.create(&PostParams::default(), &secret).await.unwrap();
    for got in [created, r.get("creds").await.unwrap()] {
        assert_eq!(
            got.data,
            want(&[("ca.crt", "ca"), ("token", "new"), ("user", "admin")])
        );
        assert_eq!(got.string_data, None, "stringData was returned");
    }
    // On a patch too.
    let patched = w
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"user": "root"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.data,
        want(&[("ca.crt", "ca"), ("token", "new"), ("user", "root")])
    );
    assert_eq!(patched.string_data, None, "stringData was returned");
}

/// tmc's own kinds have Rust types (src/api/types.rs) and a published
/// OpenAPI schema (required `spec.apiEndpoint`, `spec.credentialsSecretRef`,
/// `spec.strategy`; `strategy.type` one of Single/Spread/All), as a CRD
/// with a structural schema would: kube-apiserver answers an object that
/// does not match with 422 Invalid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmc_kinds_are_validated() {
    let s = TestCluster::start();
    let client = s.client(1, "root").await;
    let creg = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("tmc.kcp.io", "v1alpha1", "ClusterRegistration"),
        "clusterregistrations",
    );
    let cregs: Api<DynamicObject> = Api::all_with(client.clone(), &creg);
    let places: Api<DynamicObject> = Api::all_with(client, &placement_resource());
    let pp = PostParams::default();
    let bad = [
        (&cregs, DynamicObject::new("no-spec", &creg)),
        (
            &cregs,
            DynamicObject::new("wrong-type", &creg).data(json!({"spec": {
                "apiEndpoint": 5,
                "credentialsSecretRef": {"namespace": "tmc-system", "name": "x"}}})),
        ),
        (
            &places,
            DynamicObject::new("bad-strategy", &placement_resource())
                .data(json!({"spec": {"strategy": {"type": "Nope"}}})),
        ),
    ];
    for (api, obj) in bad {
        let name = obj.metadata.name.clone().unwrap();
        let r = api.create(&pp, &obj).await;
        assert!(
            matches!(&r, Err(kube::Error::Api(st)) if st.code == 422 && st.reason == "Invalid"),
            "{name}: want 422 Invalid, got {r:?}"
        );
    }
}

/// kube-apiserver (NamespaceLifecycle admission) refuses to delete the
/// `default` namespace: 403 Forbidden, "this namespace may not be deleted";
/// so does tmc (it once deleted it, and workspace `root` then had no
/// `default` namespace until the next restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_namespace_cannot_be_deleted() {
    use k8s_openapi::api::core::v1::Namespace;
    let s = TestCluster::start();
    let ns: Api<Namespace> = Api::all(s.client(1, "root").await);
    let r = ns.delete("default", &DeleteParams::default()).await;
    assert!(
        matches!(&r, Err(kube::Error::Api(st)) if st.code == 403 && st.reason == "Forbidden"),
        "want 403 Forbidden, got {r:?}"
    );
    assert!(ns.get("default").await.is_ok(), "namespace default is gone");
}

/// Two writers on the two followers at once: watchers on all three nodes
/// see the same events in the same order, with increasing
/// resourceVersions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_one_order_on_every_node() {
    const PER_WRITER: usize = 15;
    let s = TestCluster::start();
    let (f1, f2) = s.followers();
    let mut rxs = Vec::new();
    let mut ready = Vec::new();
    let mut tasks = Vec::new();
    for id in 1..=3u64 {
        let api: Api<ConfigMap> = Api::namespaced(s.client(id, "root").await, "default");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Seen, u64)>();
        let (init_tx, init_rx) = tokio::sync::oneshot::channel::<()>();
        tasks.push(tokio::spawn(async move {
            let mut init_tx = Some(init_tx);
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Init) => assert!(init_tx.is_some(), "restarted"),
                    Ok(watcher::Event::InitApply(o)) => panic!("unexpected {o:?}"),
                    Ok(watcher::Event::InitDone) => {
                        let _ = init_tx.take().unwrap().send(());
                    }
                    Ok(watcher::Event::Apply(o)) => {
                        let _ = tx.send((seen("apply", &o), rv(&o)));
                    }
                    Ok(watcher::Event::Delete(o)) => {
                        let _ = tx.send((seen("delete", &o), rv(&o)));
                    }
                    Err(e) => panic!("watcher error: {e}"),
                }
            }
        }));
        rxs.push(rx);
        ready.push(init_rx);
    }
    for r in ready {
        tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .expect("watcher ready within 30 s")
            .unwrap();
    }
    let mut writers = Vec::new();
    for (w, id) in [("a", f1), ("b", f2)] {
        let api: Api<ConfigMap> = Api::namespaced(s.client(id, "root").await, "default");
        writers.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let name = format!("{w}-{i:02}");
                api.create(&PostParams::default(), &configmap(&name, "0"))
                    .await
                    .unwrap();
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"v": "1"}})),
                )
                .await
                .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let total = 2 * 2 * PER_WRITER;
    let mut sequences = Vec::new();
    for (i, rx) in rxs.iter_mut().enumerate() {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while got.len() < total {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(ev)) => got.push(ev),
                other => panic!(
                    "node {}: {} of {total} events ({other:?}): {got:?}",
                    i + 1,
                    got.len()
                ),
            }
        }
        assert!(
            got.windows(2).all(|p| p[0].1 < p[1].1),
            "node {}: resourceVersions not increasing: {got:?}",
            i + 1
        );
        // Per object: created with "0", then patched to "1".
        for w in ["a", "b"] {
            for i in 0..PER_WRITER {
                let name = format!("{w}-{i:02}");
                let mine: Vec<&Seen> = got.iter().map(|g| &g.0).filter(|g| g.1 == name).collect();
                assert_eq!(
                    mine,
                    [
                        &("apply", name.clone(), Some("0".to_string())),
                        &("apply", name.clone(), Some("1".to_string()))
                    ]
                );
            }
        }
        sequences.push(got);
    }
    assert_eq!(sequences[0], sequences[1], "nodes 1 and 2 differ");
    assert_eq!(sequences[0], sequences[2], "nodes 1 and 3 differ");
    for t in tasks {
        t.abort();
    }
}

/// The Workspace resource of kcp's tenancy API.
fn workspace_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("tenancy.kcp.io", "v1alpha1", "Workspace"),
        "workspaces",
    )
}

fn workspace(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
        "metadata": {"name": name}, "spec": {}
    }))
    .unwrap()
}

fn held_configmap(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "finalizers": ["example.com/hold"]},
        "data": {"k": "v"}
    }))
    .unwrap()
}

/// `status.phase` of an object.
fn phase<K: serde::Serialize>(o: &K) -> String {
    serde_json::to_value(o).unwrap()["status"]["phase"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// A namespace delete on a shard started with `--no-controllers` (the
/// lifecycle controller always runs): kubectl's path. The DELETE answers
/// at once with the namespace Terminating; no new content is taken; its
/// objects go, one with a finalizer is marked and holds the namespace
/// until the finalizer is removed; then the namespace is gone and the
/// name can be used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_delete_completes_without_other_controllers() {
    use k8s_openapi::api::core::v1::Namespace;
    use tmc::testcluster::members::eventually;
    let s = TestCluster::start();
    let (follower, other) = s.followers();
    let client = s.client(follower, "root").await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let pp = PostParams::default();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
    nss.create(&pp, &ns).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    for i in 0..3 {
        cms.create(&pp, &configmap(&format!("plain-{i}"), "v"))
            .await
            .unwrap();
    }
    cms.create(&pp, &held_configmap("held")).await.unwrap();

    let r = nss
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let marked = r.left().expect("the namespace, not a Status");
    assert_eq!(phase(&marked), "Terminating");
    let (code, reason) = api_err(cms.create(&pp, &configmap("late", "v")).await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));

    // Read through the other follower: the controller runs on the leader.
    let cms_other: Api<ConfigMap> = Api::namespaced(s.client(other, "root").await, "doomed");
    let nss_other: Api<Namespace> = Api::all(s.client(other, "root").await);
    let wait = Duration::from_secs(60);
    eventually(
        "the namespace's objects to go but the held one",
        wait,
        || async {
            let left = cms_other
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            match left.items.as_slice() {
                [held] if held.metadata.deletion_timestamp.is_some() => Ok(()),
                items => Err(format!("left: {:?}", names(items))),
            }
        },
    )
    .await;
    let still = nss_other.get("doomed").await.unwrap();
    assert_eq!(
        still.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating"),
        "a finalizer holds the namespace"
    );

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("the namespace to go", wait, || async {
        match nss_other.get_opt("doomed").await {
            Ok(None) => Ok(()),
            Ok(Some(n)) => Err(format!("still there: {:?}", n.status)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    nss.create(&pp, &ns).await.expect("the name is free again");
    assert!(
        cms.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "a new namespace of the same name starts empty"
    );
}

/// Deleting a workspace removes everything in it (objects with
/// finalizers too, as kcp does) and in the workspaces nested in it, and
/// nothing of its neighbours: seen by a `system:masters` list across all
/// workspaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_delete_removes_its_objects() {
    use k8s_openapi::api::core::v1::Namespace;
    use tmc::testcluster::members::eventually;
    let s = TestCluster::start();
    let pp = PostParams::default();
    let wss = |c: kube::Client| Api::<DynamicObject>::all_with(c, &workspace_resource());
    let root = s.client(1, "root").await;
    for name in ["gone", "gonezo"] {
        wss(root.clone())
            .create(&pp, &workspace(name))
            .await
            .unwrap();
    }
    let gone = s.client(2, "root:gone").await;
    wss(gone.clone())
        .create(&pp, &workspace("inner"))
        .await
        .unwrap();
    let nss: Api<Namespace> = Api::all(gone.clone());
    let team: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap();
    nss.create(&pp, &team).await.unwrap();
    Api::<ConfigMap>::namespaced(gone.clone(), "team")
        .create(&pp, &held_configmap("held"))
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(gone.clone(), "default")
        .create(&pp, &configmap("mine", "v"))
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(s.client(3, "root:gone:inner").await, "default")
        .create(&pp, &configmap("deep", "v"))
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(s.client(1, "root:gonezo").await, "default")
        .create(&pp, &configmap("neighbour", "v"))
        .await
        .unwrap();

    let r = wss(root.clone())
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    let marked = r.left().expect("the workspace, not a Status");
    assert_eq!(phase(&marked), "Terminating");

    let all = s.api_client(3);
    let in_gone = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| {
                let ws = o["metadata"]["annotations"]["kcp.io/cluster"]
                    .as_str()
                    .unwrap_or("");
                ws == "root:gone" || ws.starts_with("root:gone:")
            })
            .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
            .collect()
    };
    eventually(
        "the workspace and its contents to go",
        Duration::from_secs(60),
        || async {
            let (code, w) = all
                .call(
                    "GET",
                    "/clusters/root/apis/tenancy.kcp.io/v1alpha1/workspaces/gone",
                    serde_json::Value::Null,
                )
                .await;
            let mut left = Vec::new();
            for path in [
                "/clusters/*/api/v1/configmaps",
                "/clusters/*/api/v1/namespaces",
                "/clusters/*/apis/tenancy.kcp.io/v1alpha1/workspaces",
                "/clusters/*/apis/rbac.authorization.k8s.io/v1/clusterroles",
            ] {
                let (c, v) = all.call("GET", path, serde_json::Value::Null).await;
                if c != 200 {
                    return Err(format!("{path}: {c} {v}"));
                }
                left.extend(in_gone(&v));
            }
            if code == 404 && left.is_empty() {
                Ok(())
            } else {
                Err(format!("workspace: {code} {w}; left: {left:?}"))
            }
        },
    )
    .await;
    let (code, _) = all
        .call(
            "GET",
            "/clusters/root:gone/api/v1/namespaces/default/configmaps",
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(code, 404, "the workspace no longer exists");
    let neighbour = Api::<ConfigMap>::namespaced(s.client(2, "root:gonezo").await, "default")
        .get("neighbour")
        .await
        .expect("a neighbour with a longer name is not inside root:gone");
    assert_eq!(neighbour.data.unwrap()["v"], "v");
}
