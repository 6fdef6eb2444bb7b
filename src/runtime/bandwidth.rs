//! Pod traffic shaping from kubelet's annotations
//! (`kubernetes.io/ingress-bandwidth`, `kubernetes.io/egress-bandwidth`),
//! turned into the CNI `bandwidth` capability argument.

use std::collections::BTreeMap;

pub const INGRESS: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS: &str = "kubernetes.io/egress-bandwidth";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "annotation {key}: {value:?} is not a bandwidth quantity such as 10M or 1Gi (bits per second)"
)]
pub struct BandwidthError {
    pub key: String,
    pub value: String,
}

/// The `bandwidth` runtimeConfig for CNI, or None when neither annotation
/// is set. Burst is not expressible in the annotations; like containerd we
/// allow the largest burst the plugin takes.
pub fn from_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<serde_json::Value>, BandwidthError> {
    let parse = |key: &str| -> Result<Option<u64>, BandwidthError> {
        match annotations.get(key) {
            None => Ok(None),
            Some(v) => quantity(v).map(Some).ok_or_else(|| BandwidthError {
                key: key.to_owned(),
                value: v.clone(),
            }),
        }
    };
    let (ingress, egress) = (parse(INGRESS)?, parse(EGRESS)?);
    if ingress.is_none() && egress.is_none() {
        return Ok(None);
    }
    let mut m = serde_json::Map::new();
    if let Some(r) = ingress {
        m.insert("ingressRate".into(), r.into());
        m.insert("ingressBurst".into(), u64::from(u32::MAX).into());
    }
    if let Some(r) = egress {
        m.insert("egressRate".into(), r.into());
        m.insert("egressBurst".into(), u64::from(u32::MAX).into());
    }
    Ok(Some(serde_json::Value::Object(m)))
}

/// A Kubernetes quantity (integer part only, decimal or binary suffix).
fn quantity(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity("10M"), Some(10_000_000));
        assert_eq!(quantity("1Gi"), Some(1 << 30));
        assert_eq!(quantity("500k"), Some(500_000));
        assert_eq!(quantity("123"), Some(123));
        for bad in ["", "M", "10X", "-1M", "1.5M", "0", "99999999999P"] {
            assert_eq!(quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn annotations_to_cni() {
        let none = BTreeMap::new();
        assert_eq!(from_annotations(&none).unwrap(), None);
        let a = BTreeMap::from([(INGRESS.to_owned(), "10M".to_owned())]);
        let v = from_annotations(&a).unwrap().unwrap();
        assert_eq!(v["ingressRate"], 10_000_000);
        assert!(v.get("egressRate").is_none());
        let bad = BTreeMap::from([(EGRESS.to_owned(), "fast".to_owned())]);
        let err = from_annotations(&bad).unwrap_err().to_string();
        assert!(err.contains(EGRESS), "{err}");
    }
}
