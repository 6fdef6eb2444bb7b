//! Interface counters of a network namespace (a pod's), read from
//! `/proc/thread-self/net/dev` on a thread that joined it: `setns` changes
//! only the calling thread, and a thread of the async runtime must never
//! change namespace, so each read gets a short-lived thread of its own.

use std::os::fd::AsFd as _;
use std::path::PathBuf;

/// One interface's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// Parses `/proc/net/dev` (two header lines, then `name: rx… tx…`).
pub fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            // rx: bytes packets errs drop fifo frame compressed multicast;
            // tx: bytes packets errs …
            Some(InterfaceStats {
                name: name.trim().to_owned(),
                rx_bytes: *f.first()?,
                rx_errors: *f.get(2)?,
                tx_bytes: *f.get(8)?,
                tx_errors: *f.get(10)?,
            })
        })
        .collect()
}

/// The interfaces of the namespace pinned at `netns` (None: the host's).
pub fn interfaces(netns: Option<PathBuf>) -> std::io::Result<Vec<InterfaceStats>> {
    let read = move || -> std::io::Result<Vec<InterfaceStats>> {
        if let Some(ns) = &netns {
            let f = std::fs::File::open(ns)?;
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
        }
        Ok(parse_net_dev(&std::fs::read_to_string(
            "/proc/thread-self/net/dev",
        )?))
    };
    std::thread::spawn(read)
        .join()
        .map_err(|_| std::io::Error::other("the reading thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_parses() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0: 123456     50    3    0    0     0          0         0     7890      40    1    0    0     0       0          0
";
        let v = parse_net_dev(text);
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[1],
            InterfaceStats {
                name: "eth0".into(),
                rx_bytes: 123456,
                rx_errors: 3,
                tx_bytes: 7890,
                tx_errors: 1,
            }
        );
    }

    #[test]
    fn host_interfaces_include_lo() {
        let v = interfaces(None).unwrap();
        assert!(v.iter().any(|i| i.name == "lo"), "{v:?}");
    }
}
