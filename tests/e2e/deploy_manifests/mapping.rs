//! How a container's view maps onto this machine: every `HOST:PORT` of the
//! compose network becomes a free port on 127.0.0.1, and every path a
//! container sees (a volume's target, an image directory) becomes a
//! directory of the test.
//!
//! - `0.0.0.0:P` and `127.0.0.1:P` written for service S (its listen
//!   addresses, its health check) and `S:P` written anywhere (a URL, a
//!   scrape target) are one address: 127.0.0.1 and a free port.
//! - The engines: `postgres:5432` and `redis:6379` are the test's private
//!   PostgreSQL and Redis (the whole URL, since their passwords differ);
//!   `jaeger:4317` is an OTLP receiver inside the test, standing in for
//!   Jaeger's collector port.
//! - A named volume is a directory shared by every container that mounts it;
//!   a bind mount is the file beside the compose file, its host names and
//!   ports rewritten as above; the image's working directory is a directory
//!   of each container's own; `/usr/share/heist/documents` is the
//!   checkout's `services/tools/documents` (the Dockerfile copies it there).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// The addresses and paths of one deployment on this machine.
#[derive(Debug, Default)]
pub(super) struct Mapping {
    /// `(host, port)` of the compose network -> a loopback address.
    pub(super) addrs: BTreeMap<(String, u16), SocketAddr>,
    /// Whole engine URLs -> the test's engines' URLs.
    pub(super) urls: BTreeMap<String, String>,
}

impl Mapping {
    /// Gives `(host, port)` the address `addr`.
    pub(super) fn insert(&mut self, host: &str, port: u16, addr: SocketAddr) {
        self.addrs.insert((host.to_owned(), port), addr);
    }

    /// `text` as service `own` sees it, with every address of the compose
    /// network replaced by its loopback address; panics on a `HOST:PORT` of
    /// a known host that no one listens on.
    pub(super) fn addresses(&self, text: &str, own: &str) -> String {
        if let Some(url) = self.urls.get(text) {
            return url.clone();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        'scan: while !rest.is_empty() {
            let at_boundary = out
                .chars()
                .last()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'));
            if at_boundary {
                for ((host, port), addr) in &self.addrs {
                    let hosts: &[&str] = if host == own {
                        &[host.as_str(), "0.0.0.0", "127.0.0.1"]
                    } else {
                        &[host.as_str()]
                    };
                    for candidate in hosts {
                        let written = format!("{candidate}:{port}");
                        if let Some(after) = rest.strip_prefix(&written)
                            && !after.starts_with(|c: char| c.is_ascii_digit())
                        {
                            out.push_str(&addr.to_string());
                            rest = after;
                            continue 'scan;
                        }
                    }
                }
            }
            if at_boundary
                && let Some((host, _)) = self.addrs.keys().find(|(host, _)| {
                    rest.strip_prefix(host.as_str())
                        .and_then(|after| after.strip_prefix(':'))
                        .is_some_and(|after| after.starts_with(|c: char| c.is_ascii_digit()))
                })
            {
                panic!("{own} names {host} on a port {host} does not listen on, in {text:?}");
            }
            let mut chars = rest.chars();
            out.extend(chars.next());
            rest = chars.as_str();
        }
        out
    }
}

/// Paths as one container sees them -> directories of the test, longest
/// first (so `/var/lib/heist/x` maps by its own mount before its parent's).
#[derive(Debug, Default)]
pub(super) struct Paths(Vec<(String, PathBuf)>);

impl Paths {
    /// `target` in the container is `host` here.
    pub(super) fn insert(&mut self, target: &str, host: &Path) {
        self.0
            .push((target.trim_end_matches('/').to_owned(), host.to_owned()));
        self.0
            .sort_by_key(|(target, _)| std::cmp::Reverse(target.len()));
    }

    /// `text` with every container path that starts a word replaced.
    pub(super) fn rewrite(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        'scan: while !rest.is_empty() {
            if out
                .chars()
                .last()
                .is_none_or(|c| c == '=' || c == ' ' || c == '"')
            {
                for (target, host) in &self.0 {
                    if let Some(after) = rest.strip_prefix(target.as_str())
                        && (after.is_empty() || after.starts_with('/') || after.starts_with('"'))
                    {
                        out.push_str(&host.to_string_lossy());
                        rest = after;
                        continue 'scan;
                    }
                }
            }
            let mut chars = rest.chars();
            out.extend(chars.next());
            rest = chars.as_str();
        }
        out
    }
}

/// The ports service `own` listens on: every `0.0.0.0:PORT` in `text`.
pub(super) fn listen_ports(text: &str) -> Vec<u16> {
    text.match_indices("0.0.0.0:")
        .filter_map(|(at, found)| {
            let digits: String = text[at + found.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        let mut mapping = Mapping::default();
        mapping.insert("oauth", 8001, "127.0.0.1:41001".parse().unwrap());
        mapping.insert("oauth", 8090, "127.0.0.1:41090".parse().unwrap());
        mapping.insert("audit", 8090, "127.0.0.1:42090".parse().unwrap());
        mapping
    }

    #[test]
    fn addresses_of_the_network_become_loopback_ports_and_own_listens_too() {
        let mapping = mapping();
        assert_eq!(
            mapping.addresses("https://oauth:8001", "tools"),
            "https://127.0.0.1:41001"
        );
        assert_eq!(
            mapping.addresses("--health-listen=0.0.0.0:8090", "audit"),
            "--health-listen=127.0.0.1:42090"
        );
        assert_eq!(
            mapping.addresses("127.0.0.1:8090", "oauth"),
            "127.0.0.1:41090"
        );
        // Not a host of the network, not a port of it, or part of a longer word.
        assert_eq!(mapping.addresses("oauth:admin", "tools"), "oauth:admin");
        assert_eq!(mapping.addresses("myoauth:8001", "tools"), "myoauth:8001");
    }

    #[test]
    #[should_panic(expected = "tools names oauth on a port oauth does not listen on")]
    fn an_address_of_a_known_host_on_a_port_it_does_not_listen_on_is_refused() {
        mapping().addresses("https://oauth:8002", "tools");
    }

    #[test]
    fn paths_map_by_the_longest_mount_and_only_at_a_word_start() {
        let mut paths = Paths::default();
        paths.insert("/var/lib/heist", Path::new("/tmp/own"));
        paths.insert("/var/lib/heist/data", Path::new("/tmp/volume"));
        assert_eq!(
            paths.rewrite("--db=/var/lib/heist/data/a.db"),
            "--db=/tmp/volume/a.db"
        );
        assert_eq!(paths.rewrite("/var/lib/heist/spool"), "/tmp/own/spool");
        assert_eq!(paths.rewrite("/var/lib/heister"), "/var/lib/heister");
        assert_eq!(paths.rewrite("x/var/lib/heist"), "x/var/lib/heist");
    }

    #[test]
    fn listen_ports_are_the_ports_of_every_unspecified_address() {
        assert_eq!(
            listen_ports("--listen=0.0.0.0:8001 --health-listen=0.0.0.0:8090"),
            vec![8001, 8090]
        );
        assert!(listen_ports("https://oauth:8001").is_empty());
    }
}
