//! [`Endpoint`]: a service address, given as `base_url` or `host` + `port`, normalised to
//! `http://host:port` (or `https://host:port` as written); and the looser check of the LLM's
//! base URL.

use std::fmt;

use http::Uri;

/// A service's address, `http://host:port` (host lowercased, no path); `https://host:port` when
/// written so (which needs the `tls` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http://host:port` or `https://host:port`.
    pub url: String,
}

/// Why an address is not acceptable. Each message says how to write a good one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not a URL at all, or one without a scheme or host.
    #[error("`{0}` is not a URL; write http://HOST:PORT, e.g. http://127.0.0.1:8001")]
    NotAUrl(String),
    /// A scheme other than the one accepted here.
    #[error("`{url}` uses the scheme `{scheme}`; write {expected}://HOST:PORT")]
    Scheme {
        /// The URL as given.
        url: String,
        /// Its scheme.
        scheme: String,
        /// The scheme(s) accepted, e.g. `http`.
        expected: &'static str,
    },
    /// A service URL without a port.
    #[error("`{0}` has no port; write http://HOST:PORT with the port the service listens on")]
    NoPort(String),
    /// A port that is not a number from 1 to 65535.
    #[error("`{0}` has a port outside 1-65535; give the port the service listens on")]
    BadPort(String),
    /// Port 0, which no service listens on.
    #[error("`{0}` has port 0; give the port the service listens on")]
    PortZero(String),
    /// A user, path or query where only `http://host:port` belongs.
    #[error("`{0}` holds more than a host and a port; write only http://HOST:PORT")]
    Extra(String),
    /// Neither `base_url` nor `host` + `port`.
    #[error("no address; give base_url (http://HOST:PORT) or both host and port")]
    Missing,
    /// `host` without `port` or the other way round, and no `base_url`.
    #[error("give both host and port (or base_url instead)")]
    Incomplete,
    /// `base_url` and `host`/`port` name different places.
    #[error(
        "base_url `{base_url}` disagrees with {part} `{given}`; keep one of them or make them match"
    )]
    Disagree {
        /// The base URL as given.
        base_url: String,
        /// `host` or `port`.
        part: &'static str,
        /// The disagreeing value.
        given: String,
    },
}

impl Endpoint {
    /// Parses `http://host:port` or `https://host:port` (a trailing `/` is allowed).
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        let (scheme, host, port) = host_and_port(url)?;
        Ok(Self {
            url: format!("{scheme}://{host}:{port}"),
        })
    }

    /// Whether the address was written `https://`.
    pub fn is_https(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// The endpoint given by `base_url`, or by `host` + `port`; when both are given they must
    /// agree.
    pub fn from_parts(
        host: Option<&str>,
        port: Option<u16>,
        base_url: Option<&str>,
    ) -> Result<Self, EndpointError> {
        let Some(base_url) = base_url else {
            let (Some(host), Some(port)) = (host, port) else {
                return Err(if host.is_none() && port.is_none() {
                    EndpointError::Missing
                } else {
                    EndpointError::Incomplete
                });
            };
            return Self::parse(&format!("http://{}:{port}", bracketed(host)));
        };
        let (scheme, url_host, url_port) = host_and_port(base_url)?;
        let disagree = |part, given: String| EndpointError::Disagree {
            base_url: base_url.to_owned(),
            part,
            given,
        };
        if let Some(host) = host
            && !bracketed(host).eq_ignore_ascii_case(&url_host)
        {
            return Err(disagree("host", host.to_owned()));
        }
        if let Some(port) = port
            && port != url_port
        {
            return Err(disagree("port", port.to_string()));
        }
        Ok(Self {
            url: format!("{scheme}://{url_host}:{url_port}"),
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.url)
    }
}

/// Checks an OpenAI-compatible base URL (`http` or `https`, any path, port optional) and returns
/// it without its trailing `/`.
pub(super) fn check_base_url(url: &str) -> Result<String, EndpointError> {
    let uri = parse_uri(url)?;
    let scheme = uri.scheme_str().unwrap_or_default();
    if scheme != "http" && scheme != "https" {
        return Err(EndpointError::Scheme {
            url: url.to_owned(),
            scheme: scheme.to_owned(),
            expected: "http(s)",
        });
    }
    if uri.query().is_some() || has_user(&uri) {
        return Err(EndpointError::Extra(url.to_owned()));
    }
    port_of(&uri, url)?;
    Ok(url.trim().trim_end_matches('/').to_owned())
}

/// The scheme, the lowercased host (IPv6 in brackets) and the port of a service URL
/// `http(s)://host:port[/]`.
fn host_and_port(url: &str) -> Result<(&'static str, String, u16), EndpointError> {
    let uri = parse_uri(url)?;
    let scheme = match uri.scheme_str().unwrap_or_default() {
        "http" => "http",
        "https" => "https",
        other => {
            return Err(EndpointError::Scheme {
                url: url.to_owned(),
                scheme: other.to_owned(),
                expected: "http(s)",
            });
        }
    };
    let path_is_empty = matches!(uri.path(), "" | "/");
    if !path_is_empty || uri.query().is_some() || has_user(&uri) {
        return Err(EndpointError::Extra(url.to_owned()));
    }
    let port = port_of(&uri, url)?.ok_or_else(|| EndpointError::NoPort(url.to_owned()))?;
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    Ok((scheme, host, port))
}

/// `url` as a URI with a scheme and a non-empty host.
fn parse_uri(url: &str) -> Result<Uri, EndpointError> {
    let not_a_url = || EndpointError::NotAUrl(url.to_owned());
    let uri: Uri = url.trim().parse().map_err(|_| not_a_url())?;
    if uri.scheme().is_none() || uri.host().is_none_or(str::is_empty) {
        return Err(not_a_url());
    }
    Ok(uri)
}

/// The URI's port if it has one; port 0 and ports above 65535 are refused.
fn port_of(uri: &Uri, url: &str) -> Result<Option<u16>, EndpointError> {
    let authority = uri.authority().map_or("", |authority| authority.as_str());
    let after_host = match authority.rfind(']') {
        Some(end) => &authority[end + 1..],
        None => authority,
    };
    let Some((_, port)) = after_host.rsplit_once(':') else {
        return Ok(None);
    };
    match port.parse::<u16>() {
        Ok(0) => Err(EndpointError::PortZero(url.to_owned())),
        Ok(port) => Ok(Some(port)),
        Err(_) if port.is_empty() => Ok(None),
        Err(_) => Err(EndpointError::BadPort(url.to_owned())),
    }
}

/// Whether the URI carries `user@` (credentials do not belong in an address).
fn has_user(uri: &Uri) -> bool {
    uri.authority()
        .is_some_and(|authority| authority.as_str().contains('@'))
}

/// The host as it appears in a URL: an IPv6 address goes in brackets.
fn bracketed(host: &str) -> String {
    let host = host.trim();
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_is_normalised_to_scheme_host_and_port() {
        let endpoint = Endpoint::parse("http://LocalHost:8001/").unwrap();
        assert_eq!(endpoint.url, "http://localhost:8001");
        assert_eq!(endpoint.to_string(), "http://localhost:8001");
    }

    #[test]
    fn host_and_port_make_the_same_endpoint_as_a_base_url() {
        assert_eq!(
            Endpoint::from_parts(Some("localhost"), Some(8001), None),
            Endpoint::parse("http://localhost:8001")
        );
        assert_eq!(
            Endpoint::from_parts(Some("::1"), Some(8005), None)
                .unwrap()
                .url,
            "http://[::1]:8005"
        );
    }

    #[test]
    fn host_port_and_base_url_that_agree_are_accepted() {
        let endpoint =
            Endpoint::from_parts(Some("localhost"), Some(8001), Some("http://localhost:8001"))
                .unwrap();
        assert_eq!(endpoint.url, "http://localhost:8001");
        let endpoint = Endpoint::from_parts(None, Some(8001), Some("http://localhost:8001"));
        assert!(endpoint.is_ok());
    }

    #[test]
    fn host_port_and_base_url_that_disagree_are_refused_naming_the_part() {
        let error =
            Endpoint::from_parts(Some("localhost"), Some(8002), Some("http://localhost:8001"))
                .unwrap_err();
        assert!(matches!(
            error,
            EndpointError::Disagree { part: "port", .. }
        ));
        assert!(error.to_string().contains("make them match"), "{error}");
        let error = Endpoint::from_parts(Some("127.0.0.1"), None, Some("http://localhost:8001"))
            .unwrap_err();
        assert!(matches!(
            error,
            EndpointError::Disagree { part: "host", .. }
        ));
    }

    #[test]
    fn a_missing_or_half_given_address_is_refused() {
        assert_eq!(
            Endpoint::from_parts(None, None, None),
            Err(EndpointError::Missing)
        );
        assert_eq!(
            Endpoint::from_parts(Some("localhost"), None, None),
            Err(EndpointError::Incomplete)
        );
        assert_eq!(
            Endpoint::from_parts(None, Some(8001), None),
            Err(EndpointError::Incomplete)
        );
    }

    #[test]
    fn an_https_service_url_keeps_its_scheme() {
        let endpoint = Endpoint::parse("https://Audit.Heist:8006/").unwrap();
        assert_eq!(endpoint.url, "https://audit.heist:8006");
        assert!(endpoint.is_https());
        assert!(
            !Endpoint::parse("http://audit.heist:8006")
                .unwrap()
                .is_https()
        );
    }

    #[test]
    fn bad_service_urls_are_refused_with_the_reason() {
        let cases = [
            ("localhost:8001", "not a URL"),
            ("not a url", "not a URL"),
            ("http://", "not a URL"),
            ("ftp://localhost:8001", "scheme `ftp`"),
            ("http://localhost", "no port"),
            ("http://localhost:0", "port 0"),
            ("http://localhost:99999", "outside 1-65535"),
            ("http://[::1]:70000", "outside 1-65535"),
            ("http://localhost:8001/v1", "more than a host and a port"),
            ("http://user@localhost:8001", "more than a host and a port"),
            ("http://localhost:8001/?x=1", "more than a host and a port"),
        ];
        for (url, expected) in cases {
            let error = Endpoint::parse(url).unwrap_err().to_string();
            assert!(error.contains(expected), "{url}: {error}");
        }
        let error = Endpoint::from_parts(Some("bad host"), Some(1), None).unwrap_err();
        assert!(matches!(error, EndpointError::NotAUrl(_)), "{error}");
    }

    #[test]
    fn an_llm_base_url_keeps_its_path_and_may_use_https() {
        assert_eq!(
            check_base_url("http://localhost:1234/v1/").unwrap(),
            "http://localhost:1234/v1"
        );
        assert_eq!(
            check_base_url("https://api.example.com/v1").unwrap(),
            "https://api.example.com/v1"
        );
        assert!(check_base_url("ws://localhost:1234/v1").is_err());
        assert!(check_base_url("http://localhost:0/v1").is_err());
        assert!(check_base_url("localhost:1234").is_err());
    }
}
