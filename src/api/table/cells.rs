//! How kube-apiserver's printers write a cell: ages
//! (`duration.HumanDuration`), label sets and selectors (apimachinery's
//! `labels` and `metav1.FormatLabelSelector`), container lists, and the
//! accessors the printers read a schemaless object with (a missing or
//! mistyped field reads as Go's zero value, as it would after decoding).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

static NULL: Value = Value::Null;

/// The value at `path` (`Null` when any step is missing).
pub fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().try_fold(v, |v, k| v.get(k)).unwrap_or(&NULL)
}

/// The string at `path`, `""` when missing or not a string.
pub fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).as_str().unwrap_or("")
}

/// The integer at `path`, if there is a number there (a fraction is
/// truncated, as Go's `int64(float64)`).
pub fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    let n = at(v, path);
    n.as_i64()
        .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
        .or_else(|| n.as_f64().map(|f| f as i64))
}

/// The integer at `path`, 0 when missing.
pub fn int(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

/// How many entries the map or list at `path` has.
pub fn count(v: &Value, path: &[&str]) -> i64 {
    let n = match at(v, path) {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The elements of the list at `path` (none when it is not a list).
pub fn items<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The object's name, as a cell.
pub fn name(obj: &Value) -> Value {
    Value::String(text(obj, &["metadata", "name"]).to_string())
}

/// A time as the API writes it (RFC 3339); `None` when missing, not a
/// time, or Go's zero time (which prints as `<unknown>`).
pub fn time(v: &Value) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(v.as_str()?).ok()?;
    let t = t.with_timezone(&Utc);
    (t != zero_time()).then_some(t)
}

fn zero_time() -> DateTime<Utc> {
    // 0001-01-01T00:00:00Z, Go's zero time.
    DateTime::from_timestamp(-62_135_596_800, 0).unwrap_or_default()
}

/// `translateTimestampSince`: how long ago `ts` was, or `<unknown>`.
pub fn since(ts: &Value, now: DateTime<Utc>) -> String {
    match time(ts) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

/// The AGE cell of an object.
pub fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    Value::String(since(at(obj, &["metadata", "creationTimestamp"]), now))
}

/// apimachinery's `duration.HumanDuration`: `45s`, `5m3s`, `12m`,
/// `3h20m`, `10h`, `3d4h`, `30d`, `2y45d`, `9y`; up to a second in the
/// future is `0s` (clock skew), more is `<invalid>`.
pub fn human_duration(d: TimeDelta) -> String {
    // Truncated toward zero, as Go's int(d.Seconds()).
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, `<none>` for none.
pub fn format_labels(map: &Value) -> String {
    let mut pairs: Vec<(&str, String)> = match map {
        Value::Object(m) => m.iter().map(|(k, v)| (k.as_str(), plain(v))).collect(),
        _ => Vec::new(),
    };
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A metav1.LabelSelector as `labels.Selector.String()` writes it:
/// requirements sorted by key, `k=v`, `k!=v`, `k in (a,b)`,
/// `k notin (a,b)`, `k`, `!k`. A missing selector selects nothing and an
/// empty one everything: both write as `""`. `None` where Go's
/// `LabelSelectorAsSelector` fails (an unknown operator, values where
/// none belong or none where some must be).
pub fn selector_string(sel: &Value) -> Option<String> {
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            let v = v.as_str()?;
            reqs.push((k.clone(), format!("{k}={v}")));
        }
    }
    for e in items(sel, &["matchExpressions"]) {
        let key = text(e, &["key"]);
        let mut values: Vec<&str> = items(e, &["values"])
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()?;
        values.sort_unstable();
        let req = match text(e, &["operator"]) {
            "In" | "NotIn" if values.is_empty() => return None,
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return None,
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        reqs.push((key.to_string(), req));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Some(
        reqs.into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// `metav1.FormatLabelSelector`: [`selector_string`], `<none>` when
/// empty, `<error>` when invalid.
pub fn format_label_selector(sel: &Value) -> String {
    match selector_string(sel) {
        Some(s) if s.is_empty() => "<none>".into(),
        Some(s) => s,
        None => "<error>".into(),
    }
}

/// `layoutContainerCells`: the containers' names and images, each
/// joined by commas.
pub fn containers(list: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = list.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = list.iter().map(|c| text(c, &["image"])).collect();
    (
        Value::String(names.join(",")),
        Value::String(images.join(",")),
    )
}

/// `listWithMoreString`: the first `max` of `list` (of `total`) joined by
/// commas, then ` + N more...`; `<unset>` when empty.
pub fn list_with_more(list: &[String], total: usize, max: usize) -> String {
    let shown = list.iter().take(max).cloned().collect::<Vec<_>>().join(",");
    if total > max {
        return format!("{shown} + {} more...", total - max);
    }
    if shown.is_empty() {
        return "<unset>".into();
    }
    shown
}

/// The status (`True`, `False`, `Unknown`) of the first condition of
/// `type_` in `status.conditions`.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a str> {
    items(obj, &["status", "conditions"])
        .iter()
        .find(|c| text(c, &["type"]) == type_)
        .map(|c| text(c, &["status"]))
}

/// `hasJobCondition`: whether the first condition of `type_` is True.
pub fn condition_true(obj: &Value, type_: &str) -> bool {
    condition(obj, type_) == Some("True")
}

/// Go's `fmt.Print` of a decoded JSON value (what a JSONPath printer
/// column of type string shows for a value that is not a string):
/// `map[a:1 b:x]`, `[1 2]`, floats as `%v` does (`1.5`, `1e+06`).
pub fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => go_float(f),
            _ => n.to_string(),
        },
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut kv: Vec<(&String, String)> = m.iter().map(|(k, v)| (k, go_print(v))).collect();
            kv.sort();
            let parts: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): the
/// shortest digits, in `%e` form when the exponent is below -4 or at
/// least 6.
fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    // Rust's `{:e}` gives the shortest digits: `1.5e0`, `-2.25e-7`.
    let e = format!("{f:e}");
    let Some((mantissa, exp)) = e.split_once('e') else {
        return e;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format!("{f}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        let s = TimeDelta::seconds;
        let cases = [
            (s(-3), "<invalid>"),
            (TimeDelta::milliseconds(-1500), "0s"),
            (s(0), "0s"),
            (s(119), "119s"),
            (s(120), "2m"),
            (s(303), "5m3s"),
            (s(600), "10m"),
            (s(179 * 60 + 59), "179m"),
            (s(3 * 3600), "3h"),
            (s(3 * 3600 + 20 * 60 + 5), "3h20m"),
            (s(10 * 3600), "10h"),
            (s(47 * 3600), "47h"),
            (s(48 * 3600), "2d"),
            (s(3 * 86400 + 4 * 3600), "3d4h"),
            (s(30 * 86400), "30d"),
            (s(729 * 86400), "729d"),
            (s(2 * 365 * 86400 + 45 * 86400), "2y45d"),
            (s(3 * 365 * 86400), "3y"),
            (s(9 * 365 * 86400), "9y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(since(&json!("2026-01-01T00:00:00Z"), now), "5m");
        for unknown in [
            json!(null),
            json!("yesterday"),
            json!("0001-01-01T00:00:00Z"),
        ] {
            assert_eq!(since(&unknown, now), "<unknown>");
        }
    }

    #[test]
    fn selectors_and_labels_as_apimachinery_writes_them() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]},
                                 {"key": "x", "operator": "Exists"},
                                 {"key": "c", "operator": "DoesNotExist"},
                                 {"key": "env", "operator": "NotIn", "values": ["dev"]}]});
        assert_eq!(
            selector_string(&sel).unwrap(),
            "a=1,b=2,!c,env notin (dev),tier in (api,web),x"
        );
        assert_eq!(selector_string(&json!(null)).unwrap(), "");
        assert_eq!(format_label_selector(&json!(null)), "<none>");
        assert_eq!(format_label_selector(&json!({})), "<none>");
        let bad = json!({"matchExpressions": [{"key": "k", "operator": "Near"}]});
        assert_eq!(format_label_selector(&bad), "<error>");
        let bad = json!({"matchExpressions": [{"key": "k", "operator": "In", "values": []}]});
        assert!(selector_string(&bad).is_none());
        assert_eq!(format_labels(&json!({"z": "1", "a": "2"})), "a=2,z=1");
        assert_eq!(format_labels(&json!({})), "<none>");
        assert_eq!(format_labels(&json!(null)), "<none>");
    }

    #[test]
    fn containers_lists_and_go_printing() {
        let (n, i) = containers(&[
            json!({"name": "a", "image": "x:1"}),
            json!({"name": "b", "image": "y"}),
        ]);
        assert_eq!((n, i), (json!("a,b"), json!("x:1,y")));
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(list_with_more(&l(&[]), 0, 3), "<unset>");
        assert_eq!(list_with_more(&l(&["a", "b"]), 2, 3), "a,b");
        assert_eq!(
            list_with_more(&l(&["a", "b", "c", "d", "e"]), 5, 3),
            "a,b,c + 2 more..."
        );
        assert_eq!(
            go_print(&json!({"b": [1, 2.5], "a": "x"})),
            "map[a:x b:[1 2.5]]"
        );
        assert_eq!(go_print(&json!(1234567.5)), "1.2345675e+06");
        assert_eq!(go_print(&json!(0.00001)), "1e-05");
        assert_eq!(go_print(&json!(100.25)), "100.25");
        assert_eq!(go_print(&json!(null)), "<nil>");
    }
}
