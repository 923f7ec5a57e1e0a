use super::*;
use proptest::prelude::*;
use serde_json::json;

const T1: &str = "2026-01-01T00:00:00Z";
const T2: &str = "2026-01-01T00:01:00Z";
const T3: &str = "2026-01-01T00:02:00Z";

fn deployment() -> GroupKind {
    GroupKind::new("apps", "Deployment")
}

/// The configuration `kubectl apply --server-side` sends for a small
/// nginx Deployment.
fn nginx(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

/// Just the name, plus `extra` merged in.
fn partial(extra: Value) -> Value {
    let mut v = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}});
    crate::object::merge::apply_merge_patch(&mut v, &extra);
    v
}

fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    server_side_apply(&deployment(), live, applied, manager, force, now)
}

fn managed(obj: &Value) -> &Value {
    &obj["metadata"]["managedFields"]
}

/// The fieldsV1 of `manager`'s entry with `operation`.
fn fields_of<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    managed(obj)
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .map(|e| &e["fieldsV1"])
}

fn without_mf(v: &Value) -> Value {
    without_managed_fields(v)
}

fn nginx_fields() -> Value {
    json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                    ".": {},
                    "f:image": {},
                    "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }}}
            }
        }
    })
}

#[test]
fn create_by_apply() {
    let got = apply(None, &nginx(3, "nginx:1.25"), "kubectl", false, T1).unwrap();
    let mut want = nginx(3, "nginx:1.25");
    want["metadata"]["managedFields"] = json!([{
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": T1,
        "fieldsType": "FieldsV1",
        "fieldsV1": nginx_fields()
    }]);
    assert_eq!(got, want);
}

#[test]
fn reapplying_the_same_configuration_changes_nothing() {
    let live = apply(None, &nginx(3, "nginx:1.25"), "kubectl", false, T1).unwrap();
    let again = apply(Some(&live), &nginx(3, "nginx:1.25"), "kubectl", false, T2).unwrap();
    assert_eq!(again, live);
}

#[test]
fn second_apply_removes_what_the_manager_omits() {
    let mut first = nginx(3, "nginx:1.25");
    first["metadata"]["labels"]["tier"] = json!("frontend");
    let live = apply(None, &first, "kubectl", false, T1).unwrap();
    assert_eq!(
        live["metadata"]["labels"],
        json!({"app": "web", "tier": "frontend"})
    );

    let mut second = nginx(3, "nginx:1.26");
    second["spec"].as_object_mut().unwrap().remove("replicas");
    let got = apply(Some(&live), &second, "kubectl", false, T2).unwrap();
    assert_eq!(got["metadata"]["labels"], json!({"app": "web"}));
    assert!(got["spec"].get("replicas").is_none(), "{}", got["spec"]);
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("nginx:1.26")
    );
    let mut want_fields = nginx_fields();
    want_fields["f:spec"]
        .as_object_mut()
        .unwrap()
        .remove("f:replicas");
    assert_eq!(fields_of(&got, "kubectl", "Apply"), Some(&want_fields));
    assert_eq!(managed(&got)[0]["time"], json!(T2));
}

#[test]
fn dropping_a_container_removes_it() {
    let mut two = nginx(3, "nginx:1.25");
    two["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "envoy:1"}));
    let live = apply(None, &two, "kubectl", false, T1).unwrap();
    let got = apply(Some(&live), &nginx(3, "nginx:1.25"), "kubectl", false, T2).unwrap();
    assert_eq!(without_mf(&got), nginx(3, "nginx:1.25"));
}

#[test]
fn two_managers_keep_their_own_fields() {
    let live = apply(None, &nginx(3, "nginx:1.25"), "kubectl", false, T1).unwrap();
    let team = partial(json!({"metadata": {"labels": {"team": "payments"}}}));
    let got = apply(Some(&live), &team, "labeller", false, T2).unwrap();
    assert_eq!(
        got["metadata"]["labels"],
        json!({"app": "web", "team": "payments"})
    );
    assert_eq!(fields_of(&got, "kubectl", "Apply"), Some(&nginx_fields()));
    assert_eq!(
        fields_of(&got, "labeller", "Apply"),
        Some(&json!({"f:metadata": {"f:labels": {"f:team": {}}}}))
    );
    // kubectl re-applies: the labeller's label stays.
    let got = apply(Some(&got), &nginx(3, "nginx:1.25"), "kubectl", false, T3).unwrap();
    assert_eq!(
        got["metadata"]["labels"],
        json!({"app": "web", "team": "payments"})
    );
    // The labeller applies nothing: only its label goes.
    let got = apply(Some(&got), &partial(json!({})), "labeller", false, T3).unwrap();
    assert_eq!(without_mf(&got), nginx(3, "nginx:1.25"));
    assert_eq!(managed(&got).as_array().unwrap().len(), 1);
}

#[test]
fn conflict_on_a_field_another_manager_set_differently() {
    let live = apply(None, &nginx(3, "nginx:1.25"), "kubectl", false, T1).unwrap();
    let err = apply(
        Some(&live),
        &partial(json!({"spec": {"replicas": 5}})),
        "hpa",
        false,
        T2,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflict {
            conflicts: vec![("kubectl".to_string(), ".spec.replicas".to_string())]
        }
    );
    assert_eq!((err.code(), err.reason()), (409, "Conflict"));
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
    );

    let err = apply(
        Some(&live),
        &partial(json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:2"}]}}}})),
        "ci",
        false,
        T2,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflict {
            conflicts: vec![
                ("kubectl".to_string(), ".spec.replicas".to_string()),
                (
                    "kubectl".to_string(),
                    ".spec.template.spec.containers[name=\"nginx\"].image".to_string()
                ),
            ]
        }
    );
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n- .spec.replicas\n\
         - .spec.template.spec.containers[name=\"nginx\"].image"
    );
}

#[test]
fn same_value_is_shared_not_a_conflict() {
    let live = apply(None, &nginx(3, "nginx:1.25"), "kubectl", false, T1).unwrap();
    let got = apply(
        Some(&live),
        &partial(json!({"spec": {"replicas": 3}})),
        "hpa",
        false,
        T2,
    )
    .unwrap();
    assert_eq!(without_mf(&got), without_mf(&live));
    assert_eq!(fields_of(&got, "kubectl", "Apply"), Some(&nginx_fields()));
    assert_eq!(
        fields_of(&got, "hpa", "Apply"),
        Some(&json!({"f:spec": {"f:replicas": {}}}))
    );
}

#[test]
fn force_takes_ownership() {
    let live = apply(None, &nginx(3, "nginx:1.25"), "kubectl", false, T1).unwrap();
    let got = apply(
        Some(&live),
        &partial(json!({"spec": {"replicas": 5}})),
        "hpa",
        true,
        T2,
    )
    .unwrap();
    assert_eq!(got["spec"]["replicas"], json!(5));
    let mut kubectl_fields = nginx_fields();
    kubectl_fields["f:spec"]
        .as_object_mut()
        .unwrap()
        .remove("f:replicas");
    assert_eq!(fields_of(&got, "kubectl", "Apply"), Some(&kubectl_fields));
    assert_eq!(
        fields_of(&got, "hpa", "Apply"),
        Some(&json!({"f:spec": {"f:replicas": {}}}))
    );

    // kubectl now conflicts with hpa; omitting replicas does not remove
    // hpa's value.
    let err = apply(Some(&got), &nginx(3, "nginx:1.25"), "kubectl", false, T3).unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflict {
            conflicts: vec![("hpa".to_string(), ".spec.replicas".to_string())]
        }
    );
    let mut no_replicas = nginx(3, "nginx:1.25");
    no_replicas["spec"]
        .as_object_mut()
        .unwrap()
        .remove("replicas");
    let got = apply(Some(&got), &no_replicas, "kubectl", false, T3).unwrap();
    assert_eq!(got["spec"]["replicas"], json!(5));
}

#[test]
fn apply_after_an_update_conflicts_on_what_the_update_changed() {
    let live = apply(None, &nginx(3, "nginx:1.25"), "kubectl", false, T1).unwrap();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    let scaled = track_update(&deployment(), Some(&live), &scaled, "kubectl-scale", T2);
    assert_eq!(
        managed(&scaled),
        &json!([
            {
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": "apps/v1",
                "time": T1,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {
                        "f:selector": {},
                        "f:template": nginx_fields()["f:spec"]["f:template"]
                    }
                }
            },
            {
                "manager": "kubectl-scale",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": T2,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}}
            }
        ])
    );
    let err = apply(Some(&scaled), &nginx(3, "nginx:1.26"), "kubectl", false, T3).unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflict {
            conflicts: vec![("kubectl-scale".to_string(), ".spec.replicas".to_string())]
        }
    );
}

#[test]
fn track_update_on_create_owns_everything_but_server_metadata() {
    let mut obj = nginx(1, "nginx:1.25");
    obj["metadata"]["uid"] = json!("u-1");
    obj["metadata"]["resourceVersion"] = json!("7");
    obj["metadata"]["finalizers"] = json!(["tmc.kcp.io/sync"]);
    let got = track_update(&deployment(), None, &obj, "kubectl-create", T1);
    let mut want = nginx_fields();
    want["f:metadata"]["f:finalizers"] = json!({"v:\"tmc.kcp.io/sync\"": {}});
    assert_eq!(fields_of(&got, "kubectl-create", "Update"), Some(&want));
    assert_eq!(without_mf(&got), obj);
}

#[test]
fn track_update_removals_and_takeovers() {
    let created = track_update(&deployment(), None, &nginx(1, "nginx:1.25"), "creator", T1);
    let mut edited = created.clone();
    edited["metadata"]["labels"] = json!({});
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    let got = track_update(&deployment(), Some(&created), &edited, "editor", T2);
    assert_eq!(
        fields_of(&got, "editor", "Update"),
        // Emptying the labels removes the creator's label and gives the
        // editor nothing: a map that becomes empty is not a change itself.
        Some(&json!({
            "f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {"f:image": {}}}}}}
        }))
    );
    let creator = fields_of(&got, "creator", "Update").unwrap();
    assert!(creator["f:metadata"].get("f:labels").is_none(), "{creator}");
    assert_eq!(
        creator["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"],
        json!({".": {}, "f:name": {}, "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}})
    );
    // A write that changes nothing leaves managedFields alone.
    assert_eq!(
        track_update(&deployment(), Some(&got), &got, "editor", T3),
        got
    );
    assert_eq!(
        track_update(&deployment(), Some(&got), &got, "idle", T3),
        got
    );
}

#[test]
fn unmanaged_live_objects_belong_to_before_first_apply() {
    let live = nginx(1, "nginx:1.25");
    let err = apply(
        Some(&live),
        &partial(json!({"spec": {"replicas": 3}})),
        "kubectl",
        false,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflict {
            conflicts: vec![(
                "before-first-apply".to_string(),
                ".spec.replicas".to_string()
            )]
        }
    );
}

#[test]
fn set_lists_merge_across_managers() {
    let cm = GroupKind::new("", "ConfigMap");
    let conf = |f: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": f}});
    let live = server_side_apply(&cm, None, &conf(json!(["a"])), "one", false, T1).unwrap();
    let live = server_side_apply(&cm, Some(&live), &conf(json!(["b"])), "two", false, T2).unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["a", "b"]));
    assert_eq!(
        managed(&live)[1]["fieldsV1"],
        json!({"f:metadata": {"f:finalizers": {"v:\"b\"": {}}}})
    );
    let live = server_side_apply(&cm, Some(&live), &conf(json!([])), "one", false, T3).unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["b"]));
}

#[test]
fn applying_an_empty_set_list_removes_the_items_and_the_field() {
    let cm = GroupKind::new("", "ConfigMap");
    let conf = |f: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": f}});
    let live = server_side_apply(&cm, None, &conf(json!(["a"])), "one", false, T1).unwrap();
    let live = server_side_apply(&cm, Some(&live), &conf(json!([])), "one", false, T2).unwrap();
    assert_eq!(
        live,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    );
}

#[test]
fn custom_resources_have_atomic_lists() {
    let kind = GroupKind::new("tmc.kcp.io", "ClusterRegistration");
    let conf = |taints: Value| {
        json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "ClusterRegistration",
               "metadata": {"name": "east"}, "spec": {"location": "eu", "taints": taints}})
    };
    let live = server_side_apply(
        &kind,
        None,
        &conf(json!([{"key": "a", "effect": "NoSchedule"}])),
        "admin",
        false,
        T1,
    )
    .unwrap();
    assert_eq!(
        managed(&live)[0]["fieldsV1"],
        json!({"f:spec": {"f:location": {}, "f:taints": {}}})
    );
    let err =
        server_side_apply(&kind, Some(&live), &conf(json!([])), "other", false, T2).unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflict {
            conflicts: vec![("admin".to_string(), ".spec.taints".to_string())]
        }
    );
}

#[test]
fn bad_configurations() {
    let cases = [
        (json!([1]), 400),
        (
            json!({"kind": "Deployment", "metadata": {"name": "web"}}),
            400,
        ),
        (
            json!({"apiVersion": "apps/v1", "metadata": {"name": "web"}}),
            400,
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}}),
            400,
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}}),
            422,
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other"}}),
            400,
        ),
        (
            partial(json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})),
            400,
        ),
        (
            partial(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}}),
            ),
            400,
        ),
    ];
    let live = nginx(1, "nginx:1.25");
    for (conf, code) in cases {
        let err = apply(Some(&live), &conf, "kubectl", false, T1).unwrap_err();
        assert_eq!(err.code(), code, "{conf}: {err}");
    }
    let err = apply(None, &nginx(1, "x"), "", false, T1).unwrap_err();
    assert_eq!(err.code(), 400);
    let err = apply(
        None,
        &partial(json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})),
        "m",
        false,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        ".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\""
    );
}

#[test]
fn list_merge_keeps_live_order_and_appends_new_items() {
    let schema = MergeSchema::for_kind(&deployment()).unwrap();
    let rule = schema.rule("spec.template.spec.containers").unwrap();
    let c = |n: &str| json!({"name": n});
    let got = merge_list(
        &[c("a"), c("b"), c("c")],
        &[c("c"), c("d"), c("a")],
        rule,
        "spec.template.spec.containers[]",
        schema,
    );
    // SMD: shared items in the configuration's order, live-only items
    // where they were, new items after the shared item they follow.
    assert_eq!(got, vec![c("b"), c("c"), c("d"), c("a")]);
}

fn arb_path() -> impl Strategy<Value = Path> {
    prop::collection::vec(
        prop_oneof![
            "[a-c]".prop_map(|f| format!("f:{f}")),
            "[a-c]".prop_map(|k| format!("k:{{\"name\":\"{k}\"}}")),
            "[a-c]".prop_map(|v| format!("v:\"{v}\"")),
        ],
        1..4,
    )
}

proptest! {
    #[test]
    fn fields_v1_round_trips(set in prop::collection::btree_set(arb_path(), 0..12)) {
        prop_assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }
}

/// Nested objects without nulls: keys `a`–`c`, scalar leaves, scalar lists.
fn arb_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (0i64..3).prop_map(|n| json!(n)),
        "[xy]{1,2}".prop_map(Value::String),
        prop::collection::vec((0i64..3).prop_map(|n| json!(n)), 0..3).prop_map(Value::Array),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop::collection::btree_map("[a-c]", inner, 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    })
}

/// A Deployment configuration with free-form spec fields, keyed containers
/// (with keyed env) and set finalizers.
fn arb_config() -> impl Strategy<Value = Value> {
    // Keyed and set lists are never empty here: applying `[]` owns nothing
    // and removes the field, as in structured-merge-diff (tested below).
    let env = prop::collection::btree_map("[A-C]", "[0-9]", 1..3).prop_map(|m| {
        Value::Array(
            m.into_iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect(),
        )
    });
    let container = (
        arb_tree(),
        prop::option::of("[a-z]{1,3}"),
        prop::option::of(env),
    );
    (
        arb_tree(),
        prop::collection::btree_map("[a-d]", container, 1..4),
        prop::collection::btree_set("[f-h]", 1..3),
    )
        .prop_map(|(extra, containers, finalizers)| {
            let containers: Vec<Value> = containers
                .into_iter()
                .map(|(name, (extra, image, env))| {
                    let mut c = json!({"name": name, "extra": extra});
                    if let Some(image) = image {
                        c["image"] = json!(image);
                    }
                    if let Some(env) = env {
                        c["env"] = env;
                    }
                    c
                })
                .collect();
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "finalizers": finalizers.into_iter().collect::<Vec<_>>()},
                "spec": {"extra": extra, "template": {"spec": {"containers": containers}}}
            })
        })
}

proptest! {
    #[test]
    fn a_sole_manager_gets_exactly_its_last_configuration(x in arb_config(), y in arb_config()) {
        let live = apply(None, &x, "kubectl", false, T1).unwrap();
        prop_assert_eq!(without_mf(&live), x.clone());
        let live = apply(Some(&live), &y, "kubectl", false, T2).unwrap();
        prop_assert_eq!(without_mf(&live), y.clone());
        prop_assert_eq!(managed(&live).as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn another_managers_fields_survive(x in arb_config(), y in arb_config(), z in arb_tree()) {
        // A second manager owns spec.other; the first manager's applies
        // never touch it.
        let live = apply(None, &x, "kubectl", false, T1).unwrap();
        let other = partial(json!({"spec": {"other": z.clone()}}));
        let live = apply(Some(&live), &other, "other", false, T2).unwrap();
        let live = apply(Some(&live), &y, "kubectl", false, T3).unwrap();
        let mut want = y.clone();
        want["spec"]["other"] = z;
        want["metadata"]["namespace"] = json!("default");
        prop_assert_eq!(without_mf(&live), want);
    }
}
