//! Pod and container sysctls: only namespaced ones, one strictly shaped
//! value per key.
//!
//! CRI-O's CVE-2022-0811 passed `key=value` pairs joined with `+` to its
//! helper, so a value `1+kernel.core_pattern=|/evil` set a host-wide sysctl.
//! Here keys and values travel as separate JSON strings, and still every
//! separator-like character is refused in values, so no later change to the
//! transport can reopen that hole.

/// Why a sysctl was refused; each names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SysctlError {
    #[error("sysctl {key:?}: not a valid sysctl name")]
    BadKey { key: String },
    #[error(
        "sysctl {key:?} is not namespaced: only kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* and (without host network) net.* may be set for a pod"
    )]
    NotNamespaced { key: String },
    #[error("sysctl {key:?} is a net.* sysctl, which a pod on the host network cannot set")]
    HostNetwork { key: String },
    #[error("sysctl {key:?} has value {value:?}, which contains {what}")]
    BadValue {
        key: String,
        value: String,
        what: &'static str,
    },
}

/// Validates and normalises CRI sysctls (`net/ipv4/ip_forward` becomes
/// `net.ipv4.ip_forward`). Sorted by key so application order is stable.
pub fn validate(
    sysctls: &std::collections::HashMap<String, String>,
    host_network: bool,
    host_ipc: bool,
) -> Result<Vec<(String, String)>, SysctlError> {
    let mut out = Vec::with_capacity(sysctls.len());
    for (key, value) in sysctls {
        let norm = normalise_key(key)?;
        let ipc = norm.starts_with("kernel.shm")
            || norm.starts_with("kernel.msg")
            || norm == "kernel.sem"
            || norm.starts_with("fs.mqueue.");
        if norm.starts_with("net.") {
            if host_network {
                return Err(SysctlError::HostNetwork { key: key.clone() });
            }
        } else if !ipc || host_ipc {
            return Err(SysctlError::NotNamespaced { key: key.clone() });
        }
        check_value(key, value)?;
        out.push((norm, value.clone()));
    }
    out.sort();
    Ok(out)
}

fn normalise_key(key: &str) -> Result<String, SysctlError> {
    let bad = || SysctlError::BadKey {
        key: key.to_owned(),
    };
    if key.is_empty() || key.len() > 256 {
        return Err(bad());
    }
    // Kubernetes accepts `/` as the separator; then dots are not separators,
    // which /proc/sys paths here cannot express, so such keys are refused.
    let parts: Vec<&str> = if key.contains('/') {
        key.split('/').collect()
    } else {
        key.split('.').collect()
    };
    let ok = |p: &&str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if parts.len() < 2 || !parts.iter().all(ok) {
        return Err(bad());
    }
    Ok(parts.join("."))
}

fn check_value(key: &str, value: &str) -> Result<(), SysctlError> {
    let what = if value.is_empty() {
        Some("nothing")
    } else if value.len() > 4096 {
        Some("more than 4096 bytes")
    } else if value.contains(['\n', '\r']) {
        Some("a line break")
    } else if value.contains('\0') {
        Some("a NUL byte")
    } else if value.contains(['+', '=']) {
        Some("'+' or '=' (a second key=value smuggled in the value)")
    } else if value.contains(|c: char| c.is_control() && c != '\t') {
        Some("a control character")
    } else {
        None
    };
    match what {
        Some(what) => Err(SysctlError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
            what,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn one(k: &str, v: &str, host_net: bool) -> Result<Vec<(String, String)>, SysctlError> {
        validate(
            &HashMap::from([(k.to_owned(), v.to_owned())]),
            host_net,
            false,
        )
    }

    #[test]
    fn namespaced_keys_are_accepted() {
        for k in [
            "net.ipv4.ip_forward",
            "net/ipv4/ip_unprivileged_port_start",
            "kernel.shmmax",
            "kernel.msgmax",
            "kernel.sem",
            "fs.mqueue.msg_max",
        ] {
            assert!(one(k, "1", false).is_ok(), "{k}");
        }
        assert_eq!(
            one("net/ipv4/ip_forward", "1", false).unwrap(),
            vec![("net.ipv4.ip_forward".into(), "1".into())]
        );
        assert!(one("net.ipv4.ip_local_port_range", "1024\t65000", false).is_ok());
        assert!(one("net.ipv4.ip_local_port_range", "1024 65000", false).is_ok());
    }

    #[test]
    fn host_wide_keys_are_refused() {
        for k in [
            "kernel.core_pattern",
            "vm.overcommit_memory",
            "kernel.hostname",
            "fs.file-max",
        ] {
            assert!(
                matches!(one(k, "1", false), Err(SysctlError::NotNamespaced { .. })),
                "{k}"
            );
        }
        assert!(matches!(
            one("net.ipv4.ip_forward", "1", true),
            Err(SysctlError::HostNetwork { .. })
        ));
        let ipc = HashMap::from([("kernel.shmmax".to_owned(), "1".to_owned())]);
        assert!(validate(&ipc, false, true).is_err(), "host IPC");
    }

    #[test]
    fn injection_and_bad_shapes_are_refused() {
        // CVE-2022-0811's payload and relatives.
        for v in [
            "1+kernel.core_pattern=|/tmp/evil",
            "1=2",
            "1\nkernel.core_pattern=x",
            "1\0",
            "",
            "\u{7}",
        ] {
            let err = one("kernel.shmmax", v, false).unwrap_err();
            assert!(matches!(err, SysctlError::BadValue { .. }), "{v:?}");
            assert!(err.to_string().contains("kernel.shmmax"), "{err}");
        }
        for k in [
            "",
            "net",
            "net..ipv4",
            "net.ipv4.ip_forward=1",
            "../../etc/passwd",
            "net/../kernel/core_pattern",
            "net/ipv4.conf/x",
            "net.ipv4.*",
        ] {
            assert!(
                matches!(one(k, "1", false), Err(SysctlError::BadKey { .. })),
                "{k:?}"
            );
        }
    }
}
