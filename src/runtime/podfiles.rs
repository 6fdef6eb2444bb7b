//! The files a pod's containers see as /etc/hostname, /etc/resolv.conf and
//! /etc/hosts: rendered here (pure), written under the pod's run dir by the
//! sandbox code and bind-mounted into containers.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodFileError {
    #[error(
        "hostname {0:?} is not a valid hostname (RFC 1123 labels, at most 64 characters, lowercase letters, digits, '-' and '.')"
    )]
    Hostname(String),
    #[error("dns_config.servers: {0:?} is not an IP address")]
    Server(String),
    #[error("dns_config.searches: {0:?} is not a valid search domain")]
    Search(String),
    #[error("dns_config.options: {0:?} is not a valid resolver option")]
    Option(String),
}

/// CRI `DNSConfig`, as the domain sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Checks a pod hostname as the kernel (64 bytes) and RFC 1123 allow.
pub fn validate_hostname(h: &str) -> Result<(), PodFileError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if h.is_empty() || h.len() > 64 || !h.split('.').all(label_ok) {
        return Err(PodFileError::Hostname(h.to_owned()));
    }
    Ok(())
}

/// resolv.conf for a pod: from `dns` when it says anything, else the host's
/// (as containerd and CRI-O do for a pod without DNS config).
pub fn resolv_conf(dns: Option<&DnsConfig>, host: &str) -> Result<String, PodFileError> {
    let Some(dns) =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))
    else {
        return Ok(host.to_owned());
    };
    let token_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && !s.contains(char::is_whitespace)
            && !s.contains(|c: char| c.is_control() || c == '#' || c == ';')
    };
    let mut out = String::new();
    for s in &dns.searches {
        if !token_ok(s) {
            return Err(PodFileError::Search(s.clone()));
        }
    }
    if !dns.searches.is_empty() {
        out.push_str("search ");
        out.push_str(&dns.searches.join(" "));
        out.push('\n');
    }
    for s in &dns.servers {
        let ip: IpAddr = s.parse().map_err(|_| PodFileError::Server(s.clone()))?;
        out.push_str(&format!("nameserver {ip}\n"));
    }
    for o in &dns.options {
        if !token_ok(o) {
            return Err(PodFileError::Option(o.clone()));
        }
    }
    if !dns.options.is_empty() {
        out.push_str("options ");
        out.push_str(&dns.options.join(" "));
        out.push('\n');
    }
    Ok(out)
}

/// /etc/hosts: the loopback names Docker and containerd write, then the
/// pod's hostname on each of its IPs.
pub fn hosts(hostname: &str, ips: &[IpAddr]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["pod", "web-0", "a.b-c.d", &"a".repeat(63)] {
            assert!(validate_hostname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a..b",
            "a b",
            "x\n",
            &"a".repeat(65),
        ] {
            assert!(validate_hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resolv_from_dns_config() {
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into(), "fd00::a".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into(), "edns0".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns), "ignored").unwrap(),
            "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5 edns0\n"
        );
        assert_eq!(resolv_conf(None, "host\n").unwrap(), "host\n");
        assert_eq!(
            resolv_conf(Some(&DnsConfig::default()), "host\n").unwrap(),
            "host\n"
        );
    }

    #[test]
    fn resolv_refuses_injection() {
        let bad_server = DnsConfig {
            servers: vec!["1.1.1.1\nnameserver 6.6.6.6".into()],
            ..Default::default()
        };
        assert!(matches!(
            resolv_conf(Some(&bad_server), ""),
            Err(PodFileError::Server(_))
        ));
        let bad_search = DnsConfig {
            searches: vec!["a b".into()],
            ..Default::default()
        };
        assert!(resolv_conf(Some(&bad_search), "").is_err());
        let bad_opt = DnsConfig {
            options: vec!["ndots:5\nnameserver 6.6.6.6".into()],
            ..Default::default()
        };
        assert!(resolv_conf(Some(&bad_opt), "").is_err());
    }

    #[test]
    fn hosts_lists_pod_ips() {
        let h = hosts("web-0", &["10.88.0.5".parse().unwrap()]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.88.0.5\tweb-0\n"));
    }
}
