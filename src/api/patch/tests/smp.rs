//! Strategic merge patch, against kube-apiserver's behaviour.

use super::*;

#[test]
fn smp_merges_containers_by_name() {
    let r = smp(
        &deployment(),
        &two_containers(),
        pod_patch(json!({"containers": [{"name": "nginx", "image": "nginx:1.26"}]})),
    )
    .unwrap();
    assert_eq!(
        pod_spec_of(&r)["containers"],
        json!([
            {"name": "nginx", "image": "nginx:1.26", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "envoy:1"}
        ])
    );
    // Everything else is untouched.
    assert_eq!(r["spec"]["replicas"], json!(2));
    assert_eq!(r["metadata"], two_containers()["metadata"]);
}

#[test]
fn smp_new_item_without_order_goes_first_as_in_go() {
    let r = smp(
        &deployment(),
        &two_containers(),
        pod_patch(json!({"containers": [{"name": "logger", "image": "busybox"}]})),
    )
    .unwrap();
    let names: Vec<&Value> = pod_spec_of(&r)["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(
        names,
        [&json!("logger"), &json!("nginx"), &json!("sidecar")]
    );
}

#[test]
fn smp_delete_directive_removes_a_container() {
    let r = smp(
        &deployment(),
        &two_containers(),
        pod_patch(json!({"containers": [{"name": "sidecar", "$patch": "delete"}]})),
    )
    .unwrap();
    assert_eq!(
        pod_spec_of(&r)["containers"],
        json!([{"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}])
    );
}

#[test]
fn smp_set_element_order() {
    let r = smp(
        &deployment(),
        &two_containers(),
        pod_patch(json!({
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}, {"name": "logger"}],
            "containers": [{"name": "logger", "image": "busybox"}]
        })),
    )
    .unwrap();
    assert_eq!(
        pod_spec_of(&r)["containers"],
        json!([
            {"name": "sidecar", "image": "envoy:1"},
            {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
            {"name": "logger", "image": "busybox"}
        ])
    );
    assert!(pod_spec_of(&r).get("$setElementOrder/containers").is_none());
}

#[test]
fn smp_kubectl_apply_removing_a_container() {
    // What `kubectl apply` (client side) sends when a container leaves the
    // manifest: the order of what remains and a delete directive.
    let r = smp(
        &deployment(),
        &two_containers(),
        pod_patch(json!({
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"$patch": "delete", "name": "sidecar"}]
        })),
    )
    .unwrap();
    assert_eq!(
        pod_spec_of(&r)["containers"],
        json!([{"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}])
    );
}

#[test]
fn smp_set_element_order_must_match_the_patch_list() {
    let err = smp(
        &deployment(),
        &two_containers(),
        pod_patch(json!({
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"name": "logger", "image": "busybox"}]
        })),
    )
    .unwrap_err();
    assert_eq!(err.code(), 400);
    assert!(
        err.to_string()
            .contains("doesn't match $setElementOrder list"),
        "{err}"
    );
}

fn rolling_update() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}
    })
}

#[test]
fn smp_retain_keys_switches_rolling_update_to_recreate() {
    // kubectl apply's patch when the manifest switches the strategy.
    let r = smp(
        &deployment(),
        &rolling_update(),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}}),
    )
    .unwrap();
    assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
    // The directive alone clears what it does not name.
    let r = smp(
        &deployment(),
        &rolling_update(),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
    )
    .unwrap();
    assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
    // Without it, a merge keeps rollingUpdate.
    let r = smp(
        &deployment(),
        &rolling_update(),
        json!({"spec": {"strategy": {"type": "Recreate"}}}),
    )
    .unwrap();
    assert_eq!(
        r["spec"]["strategy"],
        json!({"type": "Recreate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
}

#[test]
fn smp_retain_keys_must_name_every_patched_field() {
    let err = smp(
        &deployment(),
        &rolling_update(),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
    )
    .unwrap_err();
    assert_eq!(err.code(), 400);
    assert!(err.to_string().contains("retainKeys"), "{err}");
}

#[test]
fn smp_retain_keys_on_a_volume() {
    let live = deploy_with(json!({"volumes": [{"name": "data", "emptyDir": {}}]}));
    let r = smp(
        &deployment(),
        &live,
        pod_patch(json!({"volumes": [{"$retainKeys": ["name", "configMap"], "name": "data", "configMap": {"name": "cm"}}]})),
    )
    .unwrap();
    assert_eq!(
        pod_spec_of(&r)["volumes"],
        json!([{"name": "data", "configMap": {"name": "cm"}}])
    );
}

#[test]
fn smp_env_merges_by_name() {
    let live = deploy_with(json!({"containers": [{"name": "app", "env": [
        {"name": "A", "value": "1"}, {"name": "B", "value": "2"}
    ]}]}));
    let r = smp(
        &deployment(),
        &live,
        pod_patch(json!({"containers": [{"name": "app", "env": [
            {"name": "B", "value": "3"}, {"name": "C", "value": "4"}
        ]}]})),
    )
    .unwrap();
    assert_eq!(
        pod_spec_of(&r)["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
    );
}

#[test]
fn smp_ports_merge_by_container_port_and_nulls_delete() {
    let r = smp(
        &deployment(),
        &two_containers(),
        pod_patch(
            json!({"containers": [{"name": "nginx", "image": null, "ports": [
                {"containerPort": 80, "name": "http"}, {"containerPort": 443}
            ]}]}),
        ),
    )
    .unwrap();
    assert_eq!(
        pod_spec_of(&r)["containers"][0],
        json!({"name": "nginx", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]})
    );
}

#[test]
fn smp_lists_without_merge_strategy_replace() {
    let live = deploy_with(json!({
        "tolerations": [{"key": "a", "operator": "Exists"}],
        "containers": [{"name": "app", "args": ["x", "y"], "envFrom": [{"configMapRef": {"name": "a"}}]}]
    }));
    let r = smp(
        &deployment(),
        &live,
        pod_patch(json!({
            "tolerations": [{"key": "b", "operator": "Exists"}],
            "containers": [{"name": "app", "args": ["z"], "envFrom": [{"secretRef": {"name": "s"}}]}]
        })),
    )
    .unwrap();
    assert_eq!(
        pod_spec_of(&r)["tolerations"],
        json!([{"key": "b", "operator": "Exists"}])
    );
    assert_eq!(
        pod_spec_of(&r)["containers"],
        json!([{"name": "app", "args": ["z"], "envFrom": [{"secretRef": {"name": "s"}}]}])
    );
}

fn with_finalizers(f: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": f}})
}

#[test]
fn smp_finalizers_merge_as_a_set() {
    let cm = GroupKind::new("", "ConfigMap");
    let r = smp(
        &cm,
        &with_finalizers(json!(["a", "b"])),
        json!({"metadata": {"finalizers": ["c", "a"]}}),
    )
    .unwrap();
    // Order as Go's normalizeElementOrder gives it.
    assert_eq!(r["metadata"]["finalizers"], json!(["c", "a", "b"]));
}

#[test]
fn smp_delete_from_primitive_list() {
    let cm = GroupKind::new("", "ConfigMap");
    let r = smp(
        &cm,
        &with_finalizers(json!(["a", "b"])),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    )
    .unwrap();
    assert_eq!(r["metadata"]["finalizers"], json!(["b"]));
    // kubectl's form: order, additions and deletions together.
    let r = smp(
        &cm,
        &with_finalizers(json!(["a", "b"])),
        json!({"metadata": {
            "$setElementOrder/finalizers": ["b", "c"],
            "$deleteFromPrimitiveList/finalizers": ["a"],
            "finalizers": ["c"]
        }}),
    )
    .unwrap();
    assert_eq!(
        r["metadata"],
        json!({"name": "c", "finalizers": ["b", "c"]})
    );
}

#[test]
fn smp_replace_directives() {
    let live = deploy_with(json!({
        "securityContext": {"runAsUser": 1, "fsGroup": 2},
        "containers": [{"name": "a"}, {"name": "b"}]
    }));
    let r = smp(
        &deployment(),
        &live,
        pod_patch(json!({
            "securityContext": {"$patch": "replace", "runAsNonRoot": true},
            "containers": [{"name": "c", "image": "x"}, {"$patch": "replace"}]
        })),
    )
    .unwrap();
    assert_eq!(
        pod_spec_of(&r),
        &json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c", "image": "x"}]})
    );
}

#[test]
fn smp_delete_directive_in_a_map_empties_it() {
    let live = deploy_with(json!({"securityContext": {"runAsUser": 1}}));
    let r = smp(
        &deployment(),
        &live,
        pod_patch(json!({"securityContext": {"$patch": "delete"}})),
    )
    .unwrap();
    assert_eq!(pod_spec_of(&r), &json!({"securityContext": {}}));
}

#[test]
fn smp_bad_directives_are_bad_requests() {
    for patch in [
        pod_patch(json!({"securityContext": {"$patch": "explode"}})),
        pod_patch(json!({"containers": [{"name": "a", "$patch": "merge"}]})),
        pod_patch(json!({"containers": [{"image": "no-name"}]})),
        pod_patch(json!({"containers": [[1]]})),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
        json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
    ] {
        let err = smp(&deployment(), &two_containers(), patch.clone()).unwrap_err();
        assert_eq!(err.code(), 400, "{patch}: {err}");
    }
}

#[test]
fn smp_service_ports_merge_by_port() {
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}], "selector": {"app": "a"}}});
    let r = smp(
        &GroupKind::new("", "Service"),
        &svc,
        json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}], "selector": {"tier": "web"}}}),
    )
    .unwrap();
    assert_eq!(
        r["spec"],
        json!({"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}], "selector": {"app": "a", "tier": "web"}})
    );
}

#[test]
fn smp_on_a_custom_resource_is_unsupported_media_type() {
    let err = smp(
        &GroupKind::new("tmc.kcp.io", "ClusterRegistration"),
        &json!({"spec": {}}),
        json!({"spec": {"location": "eu"}}),
    )
    .unwrap_err();
    assert_eq!((err.code(), err.reason()), (415, "UnsupportedMediaType"));
    assert_eq!(
        err.to_string(),
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
}

/// JSON values shaped like Kubernetes objects: maps of small keys, lists,
/// scalars.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(|n| json!(n)),
        "[a-c]{0,2}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Removes nulls inside objects: merge patches cannot express them.
fn without_null_members(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_null_members(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_null_members).collect()),
        v => v,
    }
}

proptest! {
    #[test]
    fn merge_patch_of_a_diff_reproduces_the_target(old in arb_json(), new in arb_json()) {
        let new = without_null_members(new);
        let mut t = old.clone();
        if let Some(p) = merge_patch(&old, &new) {
            apply_merge_patch(&mut t, &p);
        }
        prop_assert_eq!(t, new);
    }

    #[test]
    fn smp_without_directives_or_merge_lists_is_a_merge_patch(
        old in prop::collection::btree_map("[a-d]", arb_json(), 0..4),
        patch in prop::collection::btree_map("[a-d]", arb_json(), 0..4),
    ) {
        // On a kind whose top-level fields have no list rules, a strategic
        // merge patch whose nested values are not lists of maps is RFC 7386.
        let old = Value::Object(old.into_iter().collect());
        let patch = Value::Object(patch.into_iter().collect());
        let cm = GroupKind::new("", "ConfigMap");
        let mut want = old.clone();
        apply_merge_patch(&mut want, &patch);
        let got = smp(&cm, &old, patch.clone()).unwrap();
        prop_assert_eq!(got, want);
    }
}

/// The merge rules of `MergeItem` in strategicpatch's own tests.
fn merge_item_schema() -> MergeSchema {
    let name = || Rule::MapList {
        patch_key: "name",
        keys: &[],
    };
    MergeSchema::from_rules(vec![
        ("mergingList".into(), name()),
        ("mergingIntList".into(), Rule::SetList),
        ("retainKeysMap".into(), Rule::RetainKeys),
        ("retainKeysMergingList".into(), name()),
    ])
}

/// Cases of `customStrategicMergePatchTestCaseData` and
/// `customStrategicMergePatchRawTestCases` in k8s.io/apimachinery's
/// strategicpatch tests: (description, original, patch, result).
#[test]
fn strategicpatch_custom_cases() {
    let cases = [
        ("unique scalars when merging lists",
         json!({"mergingIntList": [1, 2]}), json!({"mergingIntList": [2, 3]}), json!({"mergingIntList": [1, 2, 3]})),
        ("delete map from nested map",
         json!({"simpleMap": {"key1": 1, "key2": 1}}), json!({"simpleMap": {"$patch": "delete"}}), json!({"simpleMap": {}})),
        ("delete all items from merging list",
         json!({"mergingList": [{"name": 1}, {"name": 2}]}), json!({"mergingList": [{"$patch": "replace"}]}), json!({"mergingList": []})),
        ("merge empty merging lists",
         json!({"mergingList": []}), json!({"mergingList": []}), json!({"mergingList": []})),
        ("delete all keys from map",
         json!({"name": 1, "value": 1}), json!({"$patch": "replace"}), json!({})),
        ("add key and delete all keys from map",
         json!({"name": 1, "value": 1}), json!({"other": "a", "$patch": "replace"}), json!({"other": "a"})),
        ("delete all duplicate entries in a merging list",
         json!({"mergingList": [{"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}]}),
         json!({"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}]}),
         json!({"mergingList": [{"name": 2, "value": "a"}]})),
        ("retainKeys map can add a field when no retainKeys directive present",
         json!({"retainKeysMap": {"name": "foo"}}), json!({"retainKeysMap": {"value": "bar"}}),
         json!({"retainKeysMap": {"name": "foo", "value": "bar"}})),
        ("retainKeys map can delete a field when no retainKeys directive present",
         json!({"retainKeysMap": {"name": "foo", "value": "a"}}), json!({"retainKeysMap": {"value": null}}),
         json!({"retainKeysMap": {"name": "foo"}})),
        ("retainKeys map merge an empty map",
         json!({"retainKeysMap": {"name": "foo", "value": "a"}}), json!({"retainKeysMap": {}}),
         json!({"retainKeysMap": {"name": "foo", "value": "a"}})),
        ("retainKeys list can change a field when no retainKeys directive present",
         json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
         json!({"retainKeysMergingList": [{"name": "foo", "value": "b"}]}),
         json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "b"}]})),
        ("preserve the order from the patch in a merging list",
         json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
         json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}]}),
         json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "value": "b", "other": "x"}]})),
        ("preserve the order from the patch in a merging list 2",
         json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
         json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
         json!({"mergingList": [{"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}]})),
        ("preserve the order from the patch in a merging int list",
         json!({"mergingIntList": [1, 2, 3]}), json!({"mergingIntList": [3, 1, 2]}), json!({"mergingIntList": [3, 1, 2]})),
        ("preserve the order from the patch in a merging int list (subset)",
         json!({"mergingIntList": [1, 2, 3]}), json!({"mergingIntList": [3, 1]}), json!({"mergingIntList": [2, 3, 1]})),
        ("$setElementOrder contains item that is not present in the list to be merged",
         json!({"mergingList": [{"name": 1}, {"name": 3}]}),
         json!({"$setElementOrder/mergingList": [{"name": 3}, {"name": 2}, {"name": 1}],
                "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
         json!({"mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]})),
        ("$setElementOrder contains item that is not present in the int list to be merged",
         json!({"mergingIntList": [1, 3]}), json!({"$setElementOrder/mergingIntList": [3, 2, 1]}),
         json!({"mergingIntList": [3, 1]})),
        ("$deleteFromPrimitiveList of nonexistent item in primitive list should not add the item to the list",
         json!({"mergingIntList": [1, 2]}), json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
         json!({"mergingIntList": [1, 2]})),
        ("$deleteFromPrimitiveList on empty primitive list should not add the item to the list",
         json!({"mergingIntList": null}), json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
         json!({"mergingIntList": null})),
        ("$deleteFromPrimitiveList on nonexistent primitive list should not add the primitive list",
         json!({"foo": ["bar"]}), json!({"$deleteFromPrimitiveList/mergingIntList": [3]}), json!({"foo": ["bar"]})),
        ("$deleteFromPrimitiveList should delete item from a list without merge patch strategy",
         json!({"nonMergingIntList": [1, 2, 3]}), json!({"$deleteFromPrimitiveList/nonMergingIntList": [2]}),
         json!({"nonMergingIntList": [1, 3]})),
        // From strategicMergePatchRawTestCases: the three-way patch applied
        // to the current object, or the two-way patch to the original.
        ("nested patch merge with empty list (three-way)",
         json!({"name": "hi", "mergingList": [{"name": "hello2"}]}),
         json!({"$setElementOrder/mergingList": [{"name": "hello"}, {"name": "doesntexist"}],
                "mergingList": [{"name": "hello"}, {"$patch": "delete", "name": "doesntexist"}]}),
         json!({"name": "hi", "mergingList": [{"name": "hello"}, {"name": "hello2"}]})),
        ("nested patch merge with empty list (two-way)",
         json!({"name": "hi"}),
         json!({"mergingList": [{"name": "hello"}, {"$patch": "delete", "name": "doesntexist"}]}),
         json!({"name": "hi", "mergingList": [{"name": "hello"}]})),
        ("delete items in lists of scalars",
         json!({"mergingIntList": [1, 2, 3, 4]}),
         json!({"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]}),
         json!({"mergingIntList": [1, 2, 4]})),
        ("delete all duplicate items in lists of scalars",
         json!({"mergingIntList": [1, 2, 3, 3, 4]}),
         json!({"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]}),
         json!({"mergingIntList": [1, 2, 4]})),
        ("add and delete items in lists of scalars (two-way)",
         json!({"mergingIntList": [1, 2, 3]}),
         json!({"$setElementOrder/mergingIntList": [1, 2, 4], "$deleteFromPrimitiveList/mergingIntList": [3],
                "mergingIntList": [4]}),
         json!({"mergingIntList": [1, 2, 4]})),
        ("merge lists of maps (three-way)",
         json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
         json!({"$setElementOrder/mergingList": [{"name": 4}, {"name": 1}, {"name": 2}, {"name": 3}],
                "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}]}),
         json!({"mergingList": [{"name": 4, "value": 4}, {"name": 1, "other": "a"},
                                {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": 3}]})),
    ];
    let schema = merge_item_schema();
    for (description, original, patch, want) in cases {
        let (Value::Object(o), Value::Object(p)) = (original, patch) else {
            panic!("{description}: not objects");
        };
        let got = strategic_merge(&schema, o, p).map(Value::Object);
        assert_eq!(got, Ok(want), "{description}");
    }
    // "should check if order in $setElementOrder and patch list match"
    let err = strategic_merge(
        &schema,
        json!({"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]})
            .as_object()
            .unwrap()
            .clone(),
        json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
               "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]})
        .as_object()
        .unwrap()
        .clone(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("doesn't match"), "{err}");
    // "missing merge key should error out"
    let err = strategic_merge(
        &schema,
        json!({"mergingList": [{"name": 1, "value": "a"}]})
            .as_object()
            .unwrap()
            .clone(),
        json!({"mergingList": [{"value": "b"}]})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not contain declared merge key"),
        "{err}"
    );
}

/// Forty copies of an object into itself would ask for 2^40 times its
/// size: the copies are weighed before they are made and stop at 3 MiB in
/// all, with 413; copies within the budget still work, and a failing
/// patch leaves nothing behind (the caller's object is untouched).
#[test]
fn json_patch_copies_are_bounded() {
    let live = json!({"metadata": {"name": "x"}, "data": {"k": "v".repeat(1000)}});
    let bomb: Vec<Value> = (0..40)
        .map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/c{i}")}))
        .collect();
    let e = json_patch(live.clone(), Value::Array(bomb)).unwrap_err();
    assert_eq!(e.code(), 413, "{e}");
    assert!(e.to_string().contains("copy"), "{e}");
    // Eleven doublings of 1 KB stay under 3 MiB.
    let fine: Vec<Value> = (0..11)
        .map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/c{i}")}))
        .collect();
    let out = json_patch(live.clone(), Value::Array(fine)).unwrap();
    assert!(out["data"]["c10"]["c9"]["k"].is_string());
    // The operation index of a failure is the patch's own.
    let e = json_patch(
        live,
        json!([{"op": "copy", "from": "/data", "path": "/data/a"},
               {"op": "test", "path": "/metadata/name", "value": "y"}]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("operation 1 (test)"), "{e}");
}

/// Go's strategic merge searches lists item by item (quadratic); here
/// lists are matched by hash, so a patch of 100,000 finalizers with an
/// element order and deletions is answered at once, in the right order.
#[test]
fn strategic_merge_of_huge_lists_is_correct() {
    let n = 100_000;
    let name = |i: usize| format!("x.io/f{i}");
    let live = json!({"metadata": {"name": "x",
        "finalizers": (0..n).step_by(2).map(name).collect::<Vec<_>>()}});
    let patch = json!({"metadata": {
        "finalizers": (0..n).rev().map(name).collect::<Vec<_>>(),
        "$setElementOrder/finalizers": (0..n).rev().map(name).collect::<Vec<_>>(),
        "$deleteFromPrimitiveList/finalizers": (0..n).step_by(4).map(name).collect::<Vec<_>>(),
    }});
    let cm = GroupKind::new("", "ConfigMap");
    let out = smp(&cm, &live, patch).unwrap();
    let fins = out["metadata"]["finalizers"].as_array().unwrap();
    // Merged, ordered as asked, then every fourth deleted.
    assert_eq!(fins.len(), n - n / 4);
    assert_eq!(fins[0], name(n - 1));
    assert_eq!(fins[1], name(n - 2));
    assert_eq!(fins[fins.len() - 1], name(1));
    // Lists of maps by merge key, with deletions, at size.
    let containers = |r: std::ops::Range<usize>| -> Vec<Value> {
        r.map(|i| json!({"name": format!("c{i}"), "image": "a"}))
            .collect()
    };
    let live = deploy_with(json!({"containers": containers(0..20_000)}));
    let mut items: Vec<Value> = (0..20_000)
        .step_by(2)
        .map(|i| json!({"name": format!("c{i}"), "$patch": "delete"}))
        .collect();
    items.extend((20_000..40_000).map(|i| json!({"name": format!("c{i}"), "image": "b"})));
    let out = smp(
        &deployment(),
        &live,
        pod_patch(json!({"containers": items})),
    )
    .unwrap();
    let got = pod_spec_of(&out)["containers"].as_array().unwrap();
    // New items first (Go's `mergeSortedSlice`), then the kept live ones.
    assert_eq!(got.len(), 30_000);
    assert_eq!(got[0]["name"], "c20000");
    assert_eq!(got[19_999]["name"], "c39999");
    assert_eq!(got[20_000]["name"], "c1");
    assert_eq!(got[29_999]["name"], "c19999");
}

/// Items are the same exactly when Go's comparison says so: numbers by
/// value (80 is 80.0), everything else by JSON equality, whatever the
/// order of an object's keys.
#[test]
fn list_identity_follows_go_equality() {
    let id = |v: Value| super::identity(&v, None);
    assert_eq!(id(json!(80)), id(json!(80.0)));
    assert_eq!(id(json!(0.0)), id(json!(-0.0)));
    assert_ne!(id(json!(80)), id(json!("80")));
    assert_eq!(id(json!({"a": 1, "b": [1]})), id(json!({"b": [1], "a": 1})));
    assert_ne!(id(json!({"a": 1})), id(json!({"a": 1.0})));
    assert_eq!(
        super::identity(&json!({"x": 1}), Some("name")),
        super::identity(&json!({"y": 2}), Some("name"))
    );
}
