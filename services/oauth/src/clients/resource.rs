//! Resource indicators (RFC 8707): the rules that turn the `resource` values of a token request
//! into the audiences (`aud`) of the token granted to a client.
//!
//! The resources are the mesh's audiences, one per service ([`Audience`]). A client's
//! registration may restrict them (`allowed_audiences`); by default it may have them all.

use heist_tokens::Audience;

use super::ClientError;

/// The most `resource` values one request may carry (duplicates included).
pub const MAX_RESOURCES: usize = 16;

/// The audiences to grant for `requested` (the request's `resource` values, in order) to a
/// client allowed `allowed`: all of `allowed` when none is named, otherwise the named ones in
/// their order without duplicates, each of which must be an audience of the mesh
/// ([`ClientError::UnknownResource`]) and allowed ([`ClientError::ResourceNotAllowed`]).
pub(crate) fn grant(
    allowed: &[Audience],
    requested: &[String],
) -> Result<Vec<Audience>, ClientError> {
    if requested.is_empty() {
        return Ok(allowed.to_vec());
    }
    if requested.len() > MAX_RESOURCES {
        return Err(ClientError::TooManyResources(requested.len()));
    }
    let mut granted: Vec<Audience> = Vec::with_capacity(requested.len());
    for (index, resource) in requested.iter().enumerate() {
        if resource.is_empty() {
            return Err(ClientError::EmptyResource(index));
        }
        let audience: Audience = resource.parse().map_err(|_| ClientError::UnknownResource {
            resource: resource.clone(),
            allowed: allowed.to_vec(),
        })?;
        if !allowed.contains(&audience) {
            return Err(ClientError::ResourceNotAllowed {
                resource: audience,
                allowed: allowed.to_vec(),
            });
        }
        if !granted.contains(&audience) {
            granted.push(audience);
        }
    }
    Ok(granted)
}

/// The audiences a client's registration allows: every audience when the entry names none
/// (`None`), else the named ones in file order without duplicates; an unknown name or an
/// empty list is an error naming it.
pub(crate) fn allowed(entry: Option<Vec<String>>) -> Result<Vec<Audience>, String> {
    let Some(names) = entry else {
        return Ok(Audience::ALL.to_vec());
    };
    if names.is_empty() {
        return Err(
            "allowed_audiences is empty: name at least one of oauth, tools, memory, audit, or \
             leave it out to allow them all"
                .to_owned(),
        );
    }
    let mut audiences = Vec::with_capacity(names.len());
    for name in names {
        let audience: Audience = name
            .parse()
            .map_err(|error| format!("allowed_audiences: {error}"))?;
        if !audiences.contains(&audience) {
            audiences.push(audience);
        }
    }
    Ok(audiences)
}

/// Audiences in a message: `"tools", "memory"`.
pub(crate) struct AudienceList<'a>(pub(crate) &'a [Audience]);

impl std::fmt::Display for AudienceList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, audience) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "\"{audience}\"")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    const TOOLS_AND_MEMORY: [Audience; 2] = [Audience::Tools, Audience::Memory];

    #[test]
    fn no_resource_named_grants_every_allowed_audience() {
        assert_eq!(grant(&TOOLS_AND_MEMORY, &[]), Ok(TOOLS_AND_MEMORY.to_vec()));
        assert_eq!(grant(&Audience::ALL, &[]), Ok(Audience::ALL.to_vec()));
    }

    #[test]
    fn named_resources_are_granted_in_order_without_duplicates() {
        assert_eq!(
            grant(&Audience::ALL, &requested(&["memory", "tools", "memory"])),
            Ok(vec![Audience::Memory, Audience::Tools])
        );
    }

    #[test]
    fn an_unknown_resource_is_refused_naming_it_and_the_audiences() {
        let error = grant(&TOOLS_AND_MEMORY, &requested(&["tools", "vault"])).unwrap_err();
        assert_eq!(
            error,
            ClientError::UnknownResource {
                resource: "vault".into(),
                allowed: TOOLS_AND_MEMORY.to_vec(),
            }
        );
        assert_eq!(
            error.to_string(),
            "invalid_target: resource \"vault\" is not an audience of the mesh \
             (oauth, tools, memory, audit); this client may ask for \"tools\", \"memory\""
        );
        // Names are exact: no case folding, no list in one value.
        for bad in [
            "Tools",
            "tools memory",
            "tools,memory",
            " tools",
            "heist-mesh",
        ] {
            assert!(
                matches!(
                    grant(&Audience::ALL, &requested(&[bad])),
                    Err(ClientError::UnknownResource { resource, .. }) if resource == bad
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_resource_not_allowed_for_the_client_is_refused_naming_the_allowed_ones() {
        let error = grant(&TOOLS_AND_MEMORY, &requested(&["audit"])).unwrap_err();
        assert_eq!(
            error,
            ClientError::ResourceNotAllowed {
                resource: Audience::Audit,
                allowed: TOOLS_AND_MEMORY.to_vec(),
            }
        );
        assert_eq!(
            error.to_string(),
            "invalid_target: resource \"audit\" is not allowed for this client; \
             it may ask for \"tools\", \"memory\""
        );
    }

    #[test]
    fn an_empty_resource_is_refused_naming_its_position() {
        let error = grant(&Audience::ALL, &requested(&["tools", ""])).unwrap_err();
        assert_eq!(error, ClientError::EmptyResource(1));
        assert!(
            error.to_string().contains("resource[1] is empty"),
            "{error}"
        );
    }

    #[test]
    fn too_many_resources_are_refused() {
        let many = vec!["tools".to_owned(); MAX_RESOURCES + 1];
        assert_eq!(
            grant(&Audience::ALL, &many),
            Err(ClientError::TooManyResources(MAX_RESOURCES + 1))
        );
        let enough = vec!["tools".to_owned(); MAX_RESOURCES];
        assert_eq!(grant(&Audience::ALL, &enough), Ok(vec![Audience::Tools]));
    }

    #[test]
    fn a_registration_allows_every_audience_unless_it_names_some() {
        assert_eq!(allowed(None), Ok(Audience::ALL.to_vec()));
        assert_eq!(
            allowed(Some(requested(&["tools", "memory", "tools"]))),
            Ok(TOOLS_AND_MEMORY.to_vec())
        );
        let unknown = allowed(Some(requested(&["tools", "vault"]))).unwrap_err();
        assert!(unknown.contains("\"vault\""), "{unknown}");
        let empty = allowed(Some(Vec::new())).unwrap_err();
        assert!(empty.contains("allowed_audiences is empty"), "{empty}");
    }
}
