use super::*;
use crate::api::schema::MergeSchema;
use crate::object::merge::merge_patch;
use proptest::prelude::*;
use serde_json::json;

fn deployment() -> GroupKind {
    GroupKind::new("apps", "Deployment")
}

fn json_patch(live: Value, ops: Value) -> Result<Value, PatchError> {
    apply_patch(
        &deployment(),
        &live,
        PatchType::Json,
        ops.to_string().as_bytes(),
    )
}

fn smp(kind: &GroupKind, live: &Value, patch: Value) -> Result<Value, PatchError> {
    apply_patch(
        kind,
        live,
        PatchType::Strategic,
        patch.to_string().as_bytes(),
    )
}

/// A Deployment whose pod spec is `pod_spec`.
fn deploy_with(pod_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "template": {"spec": pod_spec}}
    })
}

/// A patch of the pod spec of a Deployment.
fn pod_patch(pod_spec: Value) -> Value {
    json!({"spec": {"template": {"spec": pod_spec}}})
}

fn pod_spec_of(v: &Value) -> &Value {
    &v["spec"]["template"]["spec"]
}

fn two_containers() -> Value {
    deploy_with(json!({"containers": [
        {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
        {"name": "sidecar", "image": "envoy:1"}
    ]}))
}

#[test]
fn content_types() {
    assert_eq!(
        PatchType::from_content_type("application/json-patch+json"),
        Some(PatchType::Json)
    );
    assert_eq!(
        PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
        Some(PatchType::Merge)
    );
    assert_eq!(
        PatchType::from_content_type("Application/Strategic-Merge-Patch+JSON"),
        Some(PatchType::Strategic)
    );
    assert_eq!(
        PatchType::from_content_type("application/apply-patch+yaml"),
        Some(PatchType::Apply)
    );
    assert_eq!(PatchType::from_content_type("application/json"), None);
    for t in [
        PatchType::Json,
        PatchType::Merge,
        PatchType::Strategic,
        PatchType::Apply,
    ] {
        assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
    }
}

// RFC 6902, appendix A.

#[test]
fn rfc6902_a1_add_object_member() {
    let r = json_patch(
        json!({"foo": "bar"}),
        json!([{"op": "add", "path": "/baz", "value": "qux"}]),
    );
    assert_eq!(r.unwrap(), json!({"baz": "qux", "foo": "bar"}));
}

#[test]
fn rfc6902_a2_add_array_element() {
    let r = json_patch(
        json!({"foo": ["bar", "baz"]}),
        json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
    );
    assert_eq!(r.unwrap(), json!({"foo": ["bar", "qux", "baz"]}));
}

#[test]
fn rfc6902_a3_a4_remove() {
    let r = json_patch(
        json!({"baz": "qux", "foo": "bar"}),
        json!([{"op": "remove", "path": "/baz"}]),
    );
    assert_eq!(r.unwrap(), json!({"foo": "bar"}));
    let r = json_patch(
        json!({"foo": ["bar", "qux", "baz"]}),
        json!([{"op": "remove", "path": "/foo/1"}]),
    );
    assert_eq!(r.unwrap(), json!({"foo": ["bar", "baz"]}));
}

#[test]
fn rfc6902_a5_replace() {
    let r = json_patch(
        json!({"baz": "qux", "foo": "bar"}),
        json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
    );
    assert_eq!(r.unwrap(), json!({"baz": "boo", "foo": "bar"}));
}

#[test]
fn rfc6902_a6_a7_move() {
    let r = json_patch(
        json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
        json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
    );
    assert_eq!(
        r.unwrap(),
        json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})
    );
    let r = json_patch(
        json!({"foo": ["all", "grass", "cows", "eat"]}),
        json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
    );
    assert_eq!(r.unwrap(), json!({"foo": ["all", "cows", "eat", "grass"]}));
}

#[test]
fn copy_op() {
    let r = json_patch(
        json!({"a": {"b": 1}}),
        json!([{"op": "copy", "from": "/a", "path": "/c"}]),
    );
    assert_eq!(r.unwrap(), json!({"a": {"b": 1}, "c": {"b": 1}}));
}

#[test]
fn rfc6902_a8_test_succeeds() {
    let doc = json!({"baz": "qux", "foo": ["a", 2, "c"]});
    let r = json_patch(
        doc.clone(),
        json!([
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2}
        ]),
    );
    assert_eq!(r.unwrap(), doc);
}

#[test]
fn rfc6902_a9_test_fails_is_invalid() {
    let err = json_patch(
        json!({"baz": "qux"}),
        json!([{"op": "test", "path": "/baz", "value": "bar"}]),
    )
    .unwrap_err();
    assert_eq!((err.code(), err.reason()), (422, "Invalid"));
    assert_eq!(
        err.to_string(),
        "the server rejected our request due to an error in our request: \
         JSON patch operation 0 (test) failed at path \"/baz\": value did not match (expected \"bar\")"
    );
}

#[test]
fn rfc6902_a10_add_nested_member() {
    let r = json_patch(
        json!({"foo": "bar"}),
        json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
    );
    assert_eq!(
        r.unwrap(),
        json!({"foo": "bar", "child": {"grandchild": {}}})
    );
}

#[test]
fn rfc6902_a11_ignores_unrecognized_members() {
    let r = json_patch(
        json!({"foo": "bar"}),
        json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}]),
    );
    assert_eq!(r.unwrap(), json!({"foo": "bar", "baz": "qux"}));
}

#[test]
fn rfc6902_a12_add_to_missing_parent_is_invalid() {
    let err = json_patch(
        json!({"foo": "bar"}),
        json!([{"op": "add", "path": "/baz/bat", "value": "qux"}]),
    )
    .unwrap_err();
    assert_eq!(err.code(), 422);
    assert!(
        err.to_string()
            .contains("(add) failed at path \"/baz/bat\""),
        "{err}"
    );
}

#[test]
fn rfc6902_a14_a15_escapes() {
    let doc = json!({"/": 9, "~1": 10});
    assert_eq!(
        json_patch(
            doc.clone(),
            json!([{"op": "test", "path": "/~01", "value": 10}])
        )
        .unwrap(),
        doc
    );
    let err = json_patch(
        doc.clone(),
        json!([{"op": "test", "path": "/~01", "value": "10"}]),
    )
    .unwrap_err();
    assert_eq!(err.code(), 422);
    let r = json_patch(doc, json!([{"op": "replace", "path": "/~1", "value": 1}]));
    assert_eq!(r.unwrap(), json!({"/": 1, "~1": 10}));
}

#[test]
fn rfc6902_a16_add_array_value() {
    let r = json_patch(
        json!({"foo": ["bar"]}),
        json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
    );
    assert_eq!(r.unwrap(), json!({"foo": ["bar", ["abc", "def"]]}));
}

#[test]
fn json_patch_is_all_or_nothing_and_remove_missing_is_invalid() {
    let err = json_patch(
        json!({"a": 1}),
        json!([{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/nope"}]),
    )
    .unwrap_err();
    assert_eq!(err.code(), 422);
    assert!(err.to_string().contains("operation 1 (remove)"), "{err}");
}

#[test]
fn json_patch_operation_limit() {
    let op = json!({"op": "test", "path": "/a", "value": 1});
    let ops = |n: usize| Value::Array(vec![op.clone(); n]);
    assert!(json_patch(json!({"a": 1}), ops(MAX_JSON_PATCH_OPERATIONS)).is_ok());
    let err = json_patch(json!({"a": 1}), ops(MAX_JSON_PATCH_OPERATIONS + 1)).unwrap_err();
    assert_eq!((err.code(), err.reason()), (413, "RequestEntityTooLarge"));
    assert_eq!(
        err.to_string(),
        "The allowed maximum operations in a JSON patch is 10000, got 10001"
    );
}

#[test]
fn malformed_patches_are_bad_requests() {
    let live = json!({"a": 1});
    for (ty, body) in [
        (PatchType::Json, "not json"),
        (PatchType::Json, r#"[{"op": "frobnicate", "path": "/a"}]"#),
        (PatchType::Json, r#"{"op": "add"}"#),
        (PatchType::Merge, "{"),
        (PatchType::Merge, "[1]"),
        (PatchType::Strategic, "[]"),
        (PatchType::Strategic, "nope"),
        (PatchType::Apply, "{}"),
    ] {
        let err = apply_patch(&deployment(), &live, ty, body.as_bytes()).unwrap_err();
        assert_eq!(
            (err.code(), err.reason()),
            (400, "BadRequest"),
            "{ty:?} {body}: {err}"
        );
    }
}

// RFC 7386, appendix A: every example.

#[test]
fn rfc7386_appendix_a() {
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ];
    for (target, patch, want) in cases {
        let mut t = target.clone();
        apply_merge_patch(&mut t, &patch);
        assert_eq!(t, want, "{target} + {patch}");
    }
}

#[test]
fn merge_patch_body_nulls_delete_and_lists_replace() {
    let live = two_containers();
    let r = apply_patch(
        &GroupKind::new("tmc.kcp.io", "ClusterRegistration"),
        &live,
        PatchType::Merge,
        br#"{"metadata":{"namespace":null},"spec":{"template":{"spec":{"containers":[{"name":"x"}]}}}}"#,
    )
    .unwrap();
    assert_eq!(r["metadata"], json!({"name": "web"}));
    assert_eq!(pod_spec_of(&r)["containers"], json!([{"name": "x"}]));
}

mod smp;
