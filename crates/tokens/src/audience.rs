//! The audiences of the mesh: its resource indicators (RFC 8707).
//!
//! Each service is one audience, named as the service: `oauth`, `tools`, `memory`, `audit`. A
//! token request may name the resources it is for (OAuth's `IssueTokenRequest.resource`); the
//! token's `aud` lists them, and each service accepts only tokens whose `aud` names it, so a
//! token stolen from a tool call is refused by Audit and Memory.

use std::fmt;
use std::str::FromStr;

/// One audience (resource indicator) of the mesh: the service a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Audience {
    /// The OAuth service's own protected calls (introspection, revoking by `jti`).
    OAuth,
    /// The Tool services.
    Tools,
    /// The Memory service.
    Memory,
    /// The Audit service.
    Audit,
}

impl Audience {
    /// Every audience, in the order tokens list them.
    pub const ALL: [Audience; 4] = [Self::OAuth, Self::Tools, Self::Memory, Self::Audit];

    /// The audience's name, as `aud` and `resource` carry it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OAuth => "oauth",
            Self::Tools => "tools",
            Self::Memory => "memory",
            Self::Audit => "audit",
        }
    }

    /// The names of every audience, in order.
    pub fn names() -> [&'static str; 4] {
        Self::ALL.map(Self::as_str)
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an audience of the mesh.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown audience {0:?} (the audiences are oauth, tools, memory, audit)")]
pub struct UnknownAudience(pub String);

impl FromStr for Audience {
    type Err = UnknownAudience;

    /// The audience named exactly `name` (case-sensitive, as `aud` is compared).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|audience| audience.as_str() == name)
            .ok_or_else(|| UnknownAudience(crate::error::excerpt(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_are_the_service_names_and_parse_back() {
        assert_eq!(Audience::names(), ["oauth", "tools", "memory", "audit"]);
        for audience in Audience::ALL {
            assert_eq!(audience.as_str().parse::<Audience>(), Ok(audience));
            assert_eq!(audience.to_string(), audience.as_str());
        }
    }

    #[test]
    fn other_names_are_unknown_and_named() {
        for bad in ["", "Tools", "heist-mesh", " tools", "tools memory"] {
            assert_eq!(
                bad.parse::<Audience>(),
                Err(UnknownAudience(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert!(
            "vault"
                .parse::<Audience>()
                .unwrap_err()
                .to_string()
                .contains("\"vault\"")
        );
    }
}
