//! RFC 7386 JSON merge patch: the diff of two values ([`merge_patch`])
//! and its application ([`apply_merge_patch`]). The API applies clients'
//! merge patches with it; the controllers' committer plans its writes
//! with it.

use serde_json::{Map, Value};

/// The RFC 7386 merge patch that turns `old` into `new`; `None` when equal.
pub fn merge_patch(old: &Value, new: &Value) -> Option<Value> {
    if old == new {
        return None;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(p) = merge_patch(ov, nv) {
                            patch.insert(k.clone(), p);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            Some(Value::Object(patch))
        }
        // Arrays and scalars are replaced whole; an object becoming a
        // non-object too.
        _ => Some(new.clone()),
    }
}

/// Applies an RFC 7386 merge patch.
pub fn apply_merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        apply_merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_diff_applied_gives_the_target_and_nulls_delete() {
        let old = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}, "e": true});
        let new = json!({"a": 2, "b": {"c": [3], "f": null}, "g": {"h": 1}});
        let p = merge_patch(&old, &new).unwrap();
        assert_eq!(p["e"], Value::Null, "a removed key is a null");
        assert_eq!(p["b"]["c"], json!([3]), "lists are replaced whole");
        let mut t = old.clone();
        apply_merge_patch(&mut t, &p);
        // A null value in `new` cannot survive a merge patch (RFC 7386).
        assert_eq!(t, json!({"a": 2, "b": {"c": [3]}, "g": {"h": 1}}));
        assert_eq!(merge_patch(&new, &new), None);
        let mut scalar = json!(5);
        apply_merge_patch(&mut scalar, &json!({"x": 1}));
        assert_eq!(scalar, json!({"x": 1}), "a non-object becomes one");
    }
}
