//! Scopes: the syntax a scope must have and the rules that turn a requested `scope` string
//! into the scopes granted to a client.

use super::ClientError;

/// The most distinct scopes one request may name.
pub const MAX_SCOPES: usize = 32;
/// The longest scope name.
pub const MAX_SCOPE_LEN: usize = 64;
/// The longest requested `scope` string, in bytes (checked before splitting it).
const MAX_REQUEST_LEN: usize = 4 * 1024;

/// True when `scope` is a well-formed scope: 1 to 64 characters of `[A-Za-z0-9:_.-]`.
pub fn is_valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= MAX_SCOPE_LEN
        && scope
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b":_.-".contains(&byte))
}

/// The scopes to grant for `requested` (space-separated, as in a token request) to a client
/// allowed `allowed`: all of `allowed` when `requested` is blank, otherwise the requested
/// scopes in their order without duplicates, each of which must be allowed.
pub(crate) fn grant(allowed: &[String], requested: &str) -> Result<Vec<String>, ClientError> {
    let requested = parse(requested)?;
    if requested.is_empty() {
        return Ok(allowed.to_vec());
    }
    match requested
        .iter()
        .find(|scope| !allowed.iter().any(|allowed| allowed == *scope))
    {
        Some(scope) => Err(ClientError::ScopeNotAllowed((*scope).to_owned())),
        None => Ok(requested.into_iter().map(str::to_owned).collect()),
    }
}

/// Splits a space-separated scope string into distinct, well-formed scopes (in order).
fn parse(requested: &str) -> Result<Vec<&str>, ClientError> {
    if requested.len() > MAX_REQUEST_LEN {
        return Err(ClientError::InvalidScope(format!(
            "the scope string is longer than {MAX_REQUEST_LEN} bytes"
        )));
    }
    let mut scopes: Vec<&str> = Vec::new();
    for scope in requested.split(' ').filter(|scope| !scope.is_empty()) {
        if !is_valid_scope(scope) {
            return Err(ClientError::InvalidScope(format!(
                "scope {:?} must be 1 to {MAX_SCOPE_LEN} characters of [A-Za-z0-9:_.-]",
                heist_plumbing::quote(scope)
            )));
        }
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
        if scopes.len() > MAX_SCOPES {
            return Err(ClientError::InvalidScope(format!(
                "more than {MAX_SCOPES} scopes requested"
            )));
        }
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        [
            "calculator:use",
            "memory:read",
            "memory:write",
            "audit:write",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    #[test]
    fn a_blank_request_grants_every_allowed_scope() {
        assert_eq!(grant(&allowed(), ""), Ok(allowed()));
        assert_eq!(grant(&allowed(), "   "), Ok(allowed()));
    }

    #[test]
    fn requested_scopes_are_granted_in_order_without_duplicates() {
        assert_eq!(
            grant(&allowed(), "memory:write  calculator:use memory:write"),
            Ok(vec!["memory:write".to_owned(), "calculator:use".to_owned()])
        );
    }

    #[test]
    fn a_scope_that_is_not_allowed_is_named() {
        assert_eq!(
            grant(&allowed(), "memory:read memory:admin audit:read"),
            Err(ClientError::ScopeNotAllowed("memory:admin".to_owned()))
        );
    }

    #[test]
    fn malformed_scopes_are_invalid() {
        for requested in [
            "memory:read\taudit:write",
            "memory/read",
            "mémoire",
            "a,b",
            "x\ny",
            "\"x\"",
        ] {
            assert!(
                matches!(
                    grant(&allowed(), requested),
                    Err(ClientError::InvalidScope(_))
                ),
                "{requested:?}"
            );
        }
        let long = "a".repeat(MAX_SCOPE_LEN + 1);
        assert!(matches!(
            grant(&allowed(), &long),
            Err(ClientError::InvalidScope(_))
        ));
    }

    #[test]
    fn the_invalid_scope_message_names_the_scope() {
        let Err(ClientError::InvalidScope(message)) = grant(&allowed(), "memory:read bad$scope")
        else {
            panic!("accepted");
        };
        assert!(message.contains("bad$scope"), "{message}");
    }

    #[test]
    fn more_than_32_distinct_scopes_are_invalid_but_duplicates_do_not_count() {
        let many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("scope{i}")).collect();
        assert_eq!(
            grant(&allowed(), &many.join(" ")),
            Err(ClientError::InvalidScope(format!(
                "more than {MAX_SCOPES} scopes requested"
            )))
        );
        let repeated = vec!["memory:read"; 100].join(" ");
        assert_eq!(
            grant(&allowed(), &repeated),
            Ok(vec!["memory:read".to_owned()])
        );
    }

    #[test]
    fn an_overlong_scope_string_is_invalid() {
        let huge = "memory:read ".repeat(1000);
        assert!(matches!(
            grant(&allowed(), &huge),
            Err(ClientError::InvalidScope(_))
        ));
    }

    #[test]
    fn scope_syntax_allows_the_documented_characters() {
        assert!(is_valid_scope("Tool_1.x-y:use"));
        assert!(!is_valid_scope(""));
        assert!(!is_valid_scope("a b"));
    }
}
