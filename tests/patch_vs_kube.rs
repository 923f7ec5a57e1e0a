//! tmc's strategic merge patch and server-side apply (`tmc::api::patch`,
//! `tmc::api::apply`) against a real kube-apiserver: the same requests are
//! sent to a member cluster and computed locally from the object the
//! cluster returned before the request, and the parts kube-apiserver does
//! not default are compared.
//!
//! Needs `scripts/testenv.sh build` to have run; see docs/testing.md.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tmc::api::apply::{server_side_apply, track_update, ApplyError};
use tmc::api::patch::{apply_patch, PatchType};
use tmc::api::schema::GroupKind;
use tmc::testcluster::members::TestEnv;

const NOW: &str = "2026-01-01T00:00:00Z";

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("a k8s-openapi object serializes")
}

/// `(name, image)` of each container, in order.
fn containers(deploy: &Value) -> Vec<(Value, Value)> {
    deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| (c["name"].clone(), c["image"].clone()))
        .collect()
}

/// The fieldsV1 of `manager`'s `operation` entry.
fn fields_of(obj: &Value, manager: &str, operation: &str) -> Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or(Value::Null)
}

/// `fields` without `.` members: tmc's `Update` entries own leaves only,
/// where kube-apiserver also owns the maps a write created.
fn leaves(fields: &Value) -> Value {
    match fields {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != ".")
                .map(|(k, v)| (k.clone(), leaves(v)))
                .collect(),
        ),
        v => v.clone(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn strategic_merge_patch_and_apply_agree_with_kube_apiserver() {
    let env = TestEnv::start(1);
    let client = env.client(0).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let configmaps: Api<ConfigMap> = Api::namespaced(client, "default");
    let deploy_kind = GroupKind::new("apps", "Deployment");
    let cm_kind = GroupKind::new("", "ConfigMap");

    // Strategic merge patch of a Deployment.
    let web: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "nginx", "image": "registry.invalid/nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "registry.invalid/envoy:1"}
                ]}
            }
        }
    }))
    .expect("a Deployment");
    let mut live = to_json(
        &deployments
            .create(&PostParams::default(), &web)
            .await
            .expect("create web"),
    );
    let patches = [
        // A new container without ordering: Go puts it first.
        json!({"spec": {"template": {"spec": {"containers": [{"name": "logger", "image": "registry.invalid/busybox:1"}]}}}}),
        // kubectl apply's ordering directive.
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}, {"name": "logger"}],
            "containers": [{"name": "nginx", "image": "registry.invalid/nginx:2"}]
        }}}}),
        // Env merged by name, order from the patch.
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "env": [{"name": "C", "value": "3"}, {"name": "A", "value": "0"}]}
        ]}}}}),
        // Delete a container.
        json!({"spec": {"template": {"spec": {"containers": [{"name": "logger", "$patch": "delete"}]}}}}),
        // Switch to Recreate with $retainKeys, as kubectl apply does.
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}}),
        // A volume, then its source switched with $retainKeys.
        json!({"spec": {"template": {"spec": {"volumes": [{"name": "data", "emptyDir": {}}]}}}}),
        json!({"spec": {"template": {"spec": {"volumes": [
            {"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cm"}}
        ]}}}}),
    ];
    for patch in patches {
        let ours = apply_patch(
            &deploy_kind,
            &live,
            PatchType::Strategic,
            patch.to_string().as_bytes(),
        )
        .expect("our strategic merge");
        let theirs = to_json(
            &deployments
                .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .expect("kube-apiserver's strategic merge"),
        );
        assert_eq!(containers(&ours), containers(&theirs), "{patch}");
        let env_of = |v: &Value| v["spec"]["template"]["spec"]["containers"].clone();
        let names_values = |v: &Value| -> Vec<Value> {
            env_of(v)
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c["env"].clone())
                .collect()
        };
        assert_eq!(names_values(&ours), names_values(&theirs), "{patch}");
        assert_eq!(
            ours["spec"]["strategy"], theirs["spec"]["strategy"],
            "{patch}"
        );
        live = theirs;
    }

    // Finalizers merge as a set, in Go's order.
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "fin", "finalizers": ["example.com/a", "example.com/b"]}
    }))
    .expect("a ConfigMap");
    let live = to_json(
        &configmaps
            .create(&PostParams::default(), &cm)
            .await
            .expect("create fin"),
    );
    let patch = json!({"metadata": {"finalizers": ["example.com/c", "example.com/a"]}});
    let ours = apply_patch(
        &cm_kind,
        &live,
        PatchType::Strategic,
        patch.to_string().as_bytes(),
    )
    .expect("ours");
    let theirs = to_json(
        &configmaps
            .patch("fin", &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .expect("theirs"),
    );
    assert_eq!(
        ours["metadata"]["finalizers"],
        theirs["metadata"]["finalizers"]
    );
    let clear = json!({"metadata": {"finalizers": null}});
    configmaps
        .patch("fin", &PatchParams::default(), &Patch::Merge(&clear))
        .await
        .expect("clear finalizers");

    // Server-side apply: managedFields of a Deployment configuration.
    let config = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "applied", "namespace": "default", "labels": {"app": "applied"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "applied"}},
            "template": {
                "metadata": {"labels": {"app": "applied"}},
                "spec": {"containers": [{"name": "nginx", "image": "registry.invalid/nginx:1", "ports": [{"containerPort": 80}]}]}
            }
        }
    });
    let ours =
        server_side_apply(&deploy_kind, None, &config, "tmc-test", false, NOW).expect("ours");
    let theirs = to_json(
        &deployments
            .patch(
                "applied",
                &PatchParams::apply("tmc-test"),
                &Patch::Apply(&config),
            )
            .await
            .expect("theirs"),
    );
    assert_eq!(
        fields_of(&ours, "tmc-test", "Apply"),
        fields_of(&theirs, "tmc-test", "Apply")
    );

    // Two appliers of one Deployment: containers merged by name across
    // managers, in SMD's order.
    let sidecar = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "applied", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "logger", "image": "registry.invalid/busybox:1"},
            {"name": "nginx", "image": "registry.invalid/nginx:1"}
        ]}}}
    });
    let ours = server_side_apply(
        &deploy_kind,
        Some(&theirs),
        &sidecar,
        "sidecar-injector",
        false,
        NOW,
    )
    .expect("ours");
    let theirs = to_json(
        &deployments
            .patch(
                "applied",
                &PatchParams::apply("sidecar-injector"),
                &Patch::Apply(&sidecar),
            )
            .await
            .expect("theirs"),
    );
    assert_eq!(containers(&ours), containers(&theirs));
    for m in ["tmc-test", "sidecar-injector"] {
        assert_eq!(
            fields_of(&ours, m, "Apply"),
            fields_of(&theirs, m, "Apply"),
            "{m}"
        );
    }

    // An ordinary write, then an apply that conflicts with it.
    let created: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "updated", "labels": {"app": "web"}},
        "data": {"k1": "v1", "k2": "v2"}
    }))
    .expect("a ConfigMap");
    let post = PostParams {
        field_manager: Some("creator".into()),
        ..PostParams::default()
    };
    let theirs = to_json(
        &configmaps
            .create(&post, &created)
            .await
            .expect("create updated"),
    );
    let mut bare = theirs.clone();
    if let Some(meta) = bare["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    let ours = track_update(&cm_kind, None, &bare, "creator", NOW);
    assert_eq!(
        leaves(&fields_of(&ours, "creator", "Update")),
        leaves(&fields_of(&theirs, "creator", "Update"))
    );
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "updated", "namespace": "default"}, "data": {"k1": "mine"}});
    let ours = server_side_apply(&cm_kind, Some(&theirs), &config, "alice", false, NOW);
    let kube_err = configmaps
        .patch(
            "updated",
            &PatchParams::apply("alice"),
            &Patch::Apply(&config),
        )
        .await
        .expect_err("kube-apiserver reports the conflict")
        .to_string();
    assert_eq!(
        ours,
        Err(ApplyError::Conflict {
            conflicts: vec![("creator".into(), ".data.k1".into())]
        })
    );
    assert!(
        kube_err.contains("conflict with \"creator\"") && kube_err.contains(".data.k1"),
        "{kube_err}"
    );
    let ours =
        server_side_apply(&cm_kind, Some(&theirs), &config, "alice", true, NOW).expect("ours");
    let theirs = to_json(
        &configmaps
            .patch(
                "updated",
                &PatchParams::apply("alice").force(),
                &Patch::Apply(&config),
            )
            .await
            .expect("theirs"),
    );
    assert_eq!(ours["data"], theirs["data"]);
    assert_eq!(
        fields_of(&ours, "alice", "Apply"),
        fields_of(&theirs, "alice", "Apply")
    );
    assert_eq!(
        leaves(&fields_of(&ours, "creator", "Update")),
        leaves(&fields_of(&theirs, "creator", "Update"))
    );

    // Server-side apply of a ConfigMap by two managers: shared fields,
    // conflicts, force, removal of omitted fields.
    let cm = |data: Value, labels: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "shared", "namespace": "default", "labels": labels}, "data": data})
    };
    let steps: [(&str, Value, bool); 5] = [
        (
            "alice",
            cm(json!({"k1": "v1", "k2": "v2"}), json!({"app": "web"})),
            false,
        ),
        ("bob", cm(json!({"k1": "v1", "k3": "v3"}), json!({})), false),
        ("bob", cm(json!({"k1": "other"}), json!({})), false),
        ("bob", cm(json!({"k1": "other"}), json!({})), true),
        ("alice", cm(json!({"k2": "v2"}), json!({})), false),
    ];
    let mut live: Option<Value> = None;
    for (manager, config, force) in steps {
        let ours = server_side_apply(&cm_kind, live.as_ref(), &config, manager, force, NOW);
        let mut params = PatchParams::apply(manager);
        if force {
            params = params.force();
        }
        let theirs = configmaps
            .patch("shared", &params, &Patch::Apply(&config))
            .await;
        match (ours, theirs) {
            (Ok(ours), Ok(theirs)) => {
                let theirs = to_json(&theirs);
                assert_eq!(ours["data"], theirs["data"], "{manager} {config}");
                // Go drops empty maps (omitempty); tmc keeps `{}`.
                let labels = |v: &Value| v["metadata"].get("labels").cloned().unwrap_or(json!({}));
                assert_eq!(labels(&ours), labels(&theirs), "{manager} {config}");
                for m in ["alice", "bob"] {
                    assert_eq!(
                        fields_of(&ours, m, "Apply"),
                        fields_of(&theirs, m, "Apply"),
                        "{m} after {manager} applied {config}"
                    );
                }
                live = Some(theirs);
            }
            (Err(ApplyError::Conflict { conflicts }), Err(theirs)) => {
                let theirs = theirs.to_string();
                assert!(
                    theirs.contains("409") || theirs.contains("onflict"),
                    "{theirs}"
                );
                for (m, field) in &conflicts {
                    assert!(
                        theirs.contains(&format!("\"{m}\"")),
                        "{theirs} vs {conflicts:?}"
                    );
                    assert!(theirs.contains(field.as_str()), "{theirs} vs {conflicts:?}");
                }
            }
            (ours, theirs) => panic!("{manager} {config}: ours {ours:?}, theirs {theirs:?}"),
        }
    }
}
