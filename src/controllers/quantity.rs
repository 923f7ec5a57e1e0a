//! Kubernetes resource quantities (`4`, `500m`, `8Gi`), as the
//! ClusterRegistration controller sums them over a member cluster's nodes
//! for `status.capacity` and `status.allocatable`.
//!
//! Left out: exponent forms (`1e3`), the `P`, `E` and `Ei` suffixes, and
//! precision beyond thousandths.

use std::collections::BTreeMap;

/// Sums of resource quantities, in base units (milli for fractions).
#[derive(Default)]
pub struct Sums(BTreeMap<String, Option<i128>>);

impl Sums {
    /// Adds quantity `q` of `resource`; an unparsable one spoils the sum.
    pub fn add(&mut self, resource: &str, q: &str) {
        let e = self.0.entry(resource.to_string()).or_insert(Some(0));
        *e = match (*e, parse_milli(q)) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }

    /// The sums as Kubernetes writes quantities; a spoiled one is left out.
    pub fn render(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), format_milli((*v)?))))
            .collect()
    }
}

/// A Kubernetes quantity in thousandths of its unit.
pub fn parse_milli(q: &str) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mult: i128 = match suffix {
        "" => 1000,
        "m" => 1,
        "k" => 1000 * 1000,
        "M" => 1000 * 1_000_000,
        "G" => 1000 * 1_000_000_000,
        "T" => 1000 * 1_000_000_000_000,
        "Ki" => 1000 << 10,
        "Mi" => 1000 << 20,
        "Gi" => 1000 << 30,
        "Ti" => 1000 << 40,
        "Pi" => 1000 << 50,
        _ => return None,
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut v = int * mult;
    if !frac.is_empty() {
        let digits = frac.len().min(12) as u32;
        let f: i128 = frac[..digits as usize].parse().ok()?;
        v += f * mult / 10i128.pow(digits);
    }
    Some(v)
}

/// Formats thousandths as a quantity: whole units, with a binary suffix
/// when exact, else milli.
pub fn format_milli(v: i128) -> String {
    if v % 1000 != 0 {
        return format!("{v}m");
    }
    let n = v / 1000;
    for (shift, suffix) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if n != 0 && n % (1i128 << shift) == 0 {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_sum_as_kubernetes_writes_them() {
        let mut s = Sums::default();
        for (r, q) in [
            ("cpu", "4"),
            ("cpu", "500m"),
            ("memory", "8Gi"),
            ("memory", "8192Mi"),
            ("pods", "110"),
            ("pods", "110"),
            ("odd", "1x"),
        ] {
            s.add(r, q);
        }
        let out = s.render();
        assert_eq!(out["cpu"], "4500m");
        assert_eq!(out["memory"], "16Gi");
        assert_eq!(out["pods"], "220");
        assert!(!out.contains_key("odd"), "an unparsable sum is left out");
        assert_eq!(parse_milli("1.5"), Some(1500));
        assert_eq!(parse_milli("2k"), Some(2_000_000));
    }
}
