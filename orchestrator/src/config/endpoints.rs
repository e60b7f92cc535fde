//! [`Endpoints`]: every address of one service (its replicas), from `base_urls`, or the one
//! address `base_url` or `host` + `port` give; each an [`Endpoint`], none twice.

use std::fmt;

use super::endpoint::{Endpoint, EndpointError};

/// The addresses of one service, in the order given: never empty, no address twice. A host
/// name among them may resolve to several addresses; the mesh makes a replica of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// At least one endpoint.
    list: Vec<Endpoint>,
}

/// Why a list of addresses is not acceptable. Each message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointsError {
    /// `base_urls: []`.
    #[error("base_urls is empty; list at least one http://HOST:PORT, or give base_url instead")]
    Empty,
    /// One address of the list is not acceptable.
    #[error("base_urls[{index}]: {source}")]
    Bad {
        /// Its index in the list.
        index: usize,
        /// What is wrong with it.
        source: EndpointError,
    },
    /// The same address twice (after normalising: `http://LocalHost:1/` is `http://localhost:1`).
    #[error("base_urls[{index}] `{url}` repeats base_urls[{first}]; give each address once")]
    Duplicate {
        /// The repeat's index.
        index: usize,
        /// The index it repeats.
        first: usize,
        /// The address.
        url: String,
    },
    /// `host` or `port` beside `base_urls`.
    #[error(
        "base_urls does not go with host or port; list every address in base_urls and drop host and port"
    )]
    WithHostOrPort,
    /// `base_url` beside a `base_urls` that does not hold it.
    #[error(
        "base_url `{0}` is not in base_urls; drop base_url (base_urls names every address) or add it to the list"
    )]
    NotInList(String),
    /// The single address (`base_url` or `host` + `port`) is not acceptable.
    #[error(transparent)]
    One(#[from] EndpointError),
}

impl Endpoints {
    /// The service's addresses: `base_urls` when given (`base_url` may stand beside it only if
    /// the list holds it; `host` and `port` may not), else the one address of `base_url` or
    /// `host` + `port` (see [`Endpoint::from_parts`]).
    pub fn from_parts(
        host: Option<&str>,
        port: Option<u16>,
        base_url: Option<&str>,
        base_urls: Option<&[String]>,
    ) -> Result<Self, EndpointsError> {
        let Some(urls) = base_urls else {
            return Ok(Endpoint::from_parts(host, port, base_url)?.into());
        };
        if host.is_some() || port.is_some() {
            return Err(EndpointsError::WithHostOrPort);
        }
        let endpoints = Self::parse_list(urls)?;
        if let Some(base_url) = base_url {
            let one = Endpoint::parse(base_url)?;
            if !endpoints.list.contains(&one) {
                return Err(EndpointsError::NotInList(base_url.to_owned()));
            }
        }
        Ok(endpoints)
    }

    /// Parses every URL of `urls` (`http://host:port`), refusing an empty list and repeats.
    pub fn parse_list(urls: &[impl AsRef<str>]) -> Result<Self, EndpointsError> {
        if urls.is_empty() {
            return Err(EndpointsError::Empty);
        }
        let mut list: Vec<Endpoint> = Vec::with_capacity(urls.len());
        for (index, url) in urls.iter().enumerate() {
            let endpoint = Endpoint::parse(url.as_ref())
                .map_err(|source| EndpointsError::Bad { index, source })?;
            if let Some(first) = list.iter().position(|seen| *seen == endpoint) {
                return Err(EndpointsError::Duplicate {
                    index,
                    first,
                    url: endpoint.url,
                });
            }
            list.push(endpoint);
        }
        Ok(Self { list })
    }

    /// The first address (the only one, for a service with one).
    pub fn first(&self) -> &Endpoint {
        &self.list[0]
    }

    /// Every address, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Endpoint> {
        self.list.iter()
    }

    /// How many addresses.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Always false: there is at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl From<Endpoint> for Endpoints {
    fn from(endpoint: Endpoint) -> Self {
        Self {
            list: vec![endpoint],
        }
    }
}

impl<'a> IntoIterator for &'a Endpoints {
    type Item = &'a Endpoint;
    type IntoIter = std::slice::Iter<'a, Endpoint>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Display for Endpoints {
    /// `http://a:1, http://b:2`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, endpoint) in self.list.iter().enumerate() {
            if index > 0 {
                formatter.write_str(", ")?;
            }
            formatter.write_str(&endpoint.url)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|url| (*url).to_owned()).collect()
    }

    #[test]
    fn base_urls_give_every_address_in_order_normalised() {
        let list = urls(&["http://A:8002/", "http://b:8002"]);
        let endpoints = Endpoints::from_parts(None, None, None, Some(&list)).unwrap();
        assert_eq!(endpoints.to_string(), "http://a:8002, http://b:8002");
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints.first().url, "http://a:8002");
    }

    #[test]
    fn one_address_makes_a_list_of_one() {
        let endpoints = Endpoints::from_parts(Some("localhost"), Some(8001), None, None).unwrap();
        assert_eq!(endpoints.to_string(), "http://localhost:8001");
        assert_eq!(
            Endpoints::from_parts(None, None, None, None),
            Err(EndpointsError::One(EndpointError::Missing))
        );
    }

    #[test]
    fn an_empty_list_is_refused_with_the_fix() {
        let error = Endpoints::from_parts(None, None, None, Some(&[])).unwrap_err();
        assert_eq!(error, EndpointsError::Empty);
        assert!(error.to_string().contains("list at least one"), "{error}");
    }

    #[test]
    fn a_bad_url_in_the_list_is_named_by_its_index() {
        let list = urls(&["http://a:1", "http://a:1/v1", "nope"]);
        let error = Endpoints::from_parts(None, None, None, Some(&list)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "base_urls[1]: `http://a:1/v1` holds more than a host and a port; write only http://HOST:PORT"
        );
        let list = urls(&["http://a:1", "http://b"]);
        let error = Endpoints::from_parts(None, None, None, Some(&list)).unwrap_err();
        assert!(
            matches!(
                error,
                EndpointsError::Bad {
                    index: 1,
                    source: EndpointError::NoPort(_)
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_repeated_address_is_refused_naming_both_places() {
        let list = urls(&["http://a:1", "http://b:2", "http://A:1/"]);
        let error = Endpoints::from_parts(None, None, None, Some(&list)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "base_urls[2] `http://a:1` repeats base_urls[0]; give each address once"
        );
    }

    #[test]
    fn base_url_may_stand_beside_base_urls_only_if_the_list_holds_it() {
        let list = urls(&["http://a:1", "http://b:2"]);
        let agreeing = Endpoints::from_parts(None, None, Some("http://b:2/"), Some(&list));
        assert_eq!(agreeing.unwrap().len(), 2);
        let error = Endpoints::from_parts(None, None, Some("http://c:3"), Some(&list)).unwrap_err();
        assert_eq!(error, EndpointsError::NotInList("http://c:3".into()));
        assert!(error.to_string().contains("drop base_url"), "{error}");
        let error = Endpoints::from_parts(None, None, Some("c:3"), Some(&list)).unwrap_err();
        assert!(matches!(
            error,
            EndpointsError::One(EndpointError::NotAUrl(_))
        ));
    }

    #[test]
    fn host_or_port_beside_base_urls_is_refused() {
        let list = urls(&["http://a:1"]);
        for (host, port) in [(Some("a"), None), (None, Some(1)), (Some("a"), Some(1))] {
            let error = Endpoints::from_parts(host, port, None, Some(&list)).unwrap_err();
            assert_eq!(error, EndpointsError::WithHostOrPort);
        }
    }
}
