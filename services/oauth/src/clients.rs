//! The OAuth clients: who may ask for tokens, with which secret, for which scopes.
//!
//! The [`ClientRegistry`] is loaded once from a YAML file (see `config` for its shape; the
//! default is `services/oauth/clients.yaml`). Secrets live only as Argon2 hashes: a
//! `secret_hash:` entry holds a PHC string (make one with [`hash_secret`]); a plain `secret:`
//! entry, for development, is hashed at load and flagged ([`ClientRegistry::uses_development_secrets`]).
//!
//! - `config`: the file's YAML shape and parsing.
//! - `secret`: hashing and constant-time verification of secrets.
//! - `work_memory`: Argon2's working memory, reused from hash to hash.
//! - `scope`: scope syntax and the granting rules.
//! - `resource`: resource indicators (RFC 8707): the audiences a token is for.

mod config;
mod resource;
mod scope;
mod secret;
mod work_memory;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use resource::MAX_RESOURCES;
pub use scope::{MAX_SCOPE_LEN, MAX_SCOPES, is_valid_scope};

use heist_tokens::Audience;
use resource::AudienceList;
pub use secret::hash_secret;

use config::{ClientEntry, ClientsFile};
use secret::SecretHash;

/// A request from a client failed. Unknown client and wrong secret are the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The client ID is unknown or the secret is wrong (RFC 6749 `invalid_client`).
    #[error("invalid client credentials")]
    InvalidClient,
    /// The requested scope string is malformed (RFC 6749 `invalid_scope`); says why.
    #[error("invalid scope: {0}")]
    InvalidScope(String),
    /// A requested scope is not allowed for this client.
    #[error("scope {0:?} is not allowed for this client")]
    ScopeNotAllowed(String),
    /// A `resource` value is empty (RFC 8707 `invalid_target`).
    #[error(
        "invalid_target: resource[{0}] is empty; name one of oauth, tools, memory, audit, \
         or none for every audience the client may have"
    )]
    EmptyResource(usize),
    /// A `resource` value is not an audience of the mesh (RFC 8707 `invalid_target`).
    #[error(
        "invalid_target: resource {:?} is not an audience of the mesh (oauth, tools, memory, \
         audit); this client may ask for {}",
        heist_plumbing::quote(.resource),
        AudienceList(.allowed)
    )]
    UnknownResource {
        /// The value, as sent.
        resource: String,
        /// The audiences the client may have.
        allowed: Vec<Audience>,
    },
    /// A `resource` is an audience the client may not have (RFC 8707 `invalid_target`).
    #[error(
        "invalid_target: resource \"{resource}\" is not allowed for this client; it may ask \
         for {}",
        AudienceList(.allowed)
    )]
    ResourceNotAllowed {
        /// The audience asked for.
        resource: Audience,
        /// The audiences the client may have.
        allowed: Vec<Audience>,
    },
    /// More `resource` values than [`MAX_RESOURCES`].
    #[error("invalid_target: {0} resources named; at most {MAX_RESOURCES}")]
    TooManyResources(usize),
}

/// The client file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The file could not be read.
    #[error("cannot read client file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not valid YAML of the expected shape (unknown key, wrong type...).
    #[error("{path}: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The line of the problem (1-based), when known.
        line: Option<usize>,
        /// The column of the problem (1-based), when known.
        column: Option<usize>,
        /// The parser's message, which names the key and the location.
        message: String,
    },
    /// A client entry is invalid.
    #[error("{path}: clients[{index}] (`{client_id}`): {reason}")]
    InvalidClient {
        /// The file.
        path: PathBuf,
        /// The entry's position in `clients` (0-based).
        index: usize,
        /// The entry's client ID, as written.
        client_id: String,
        /// What is wrong.
        reason: String,
    },
    /// The file defines no client.
    #[error("{0}: `clients` is empty")]
    NoClients(PathBuf),
    /// Hashing a secret failed.
    #[error("cannot hash a client secret: {0}")]
    Hash(String),
}

/// A registered client. `Debug` never shows its secret hash.
#[derive(Clone)]
pub struct Client {
    id: String,
    secret: SecretHash,
    allowed_scopes: Vec<String>,
    allowed_audiences: Vec<Audience>,
    description: String,
    development_secret: bool,
}

impl Client {
    /// The client ID (the token's `sub`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The scopes the client may be granted, in file order.
    pub fn allowed_scopes(&self) -> &[String] {
        &self.allowed_scopes
    }

    /// The audiences the client may have tokens for (every one unless its entry names some).
    pub fn allowed_audiences(&self) -> &[Audience] {
        &self.allowed_audiences
    }

    /// The audiences to grant for the request's `resource` values: every allowed audience
    /// when none is named, otherwise the named ones (deduplicated, in order). Fails with
    /// [`ClientError::EmptyResource`], [`ClientError::UnknownResource`],
    /// [`ClientError::ResourceNotAllowed`] or [`ClientError::TooManyResources`].
    pub fn grant_audiences(&self, requested: &[String]) -> Result<Vec<Audience>, ClientError> {
        resource::grant(&self.allowed_audiences, requested)
    }

    /// What the client is, for people.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// True when the file gave this client's secret in plain text (development only).
    pub fn has_development_secret(&self) -> bool {
        self.development_secret
    }

    /// The scopes to grant for a requested, space-separated `scope` string: every allowed
    /// scope when it is blank, otherwise the requested ones (deduplicated, in order). Fails
    /// with [`ClientError::InvalidScope`] for a malformed string (a scope outside
    /// `[A-Za-z0-9:_.-]`, longer than [`MAX_SCOPE_LEN`], more than [`MAX_SCOPES`] distinct)
    /// and [`ClientError::ScopeNotAllowed`] naming the first scope the client may not have.
    pub fn grant_scopes(&self, requested: &str) -> Result<Vec<String>, ClientError> {
        scope::grant(&self.allowed_scopes, requested)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("allowed_scopes", &self.allowed_scopes)
            .field("allowed_audiences", &self.allowed_audiences)
            .field("description", &self.description)
            .field("development_secret", &self.development_secret)
            .finish_non_exhaustive()
    }
}

/// The registered clients, by ID.
#[derive(Clone, Debug)]
pub struct ClientRegistry {
    clients: HashMap<String, Client>,
    /// Checked for unknown IDs so that they take as long as a wrong secret.
    dummy: SecretHash,
}

impl ClientRegistry {
    /// Loads the client file at `path`. Plain `secret:` entries are hashed here (a few
    /// milliseconds each in a release build).
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(path, &text)
    }

    /// Builds the registry from the YAML `text` of the file `path` (named in errors).
    pub fn from_yaml(path: &Path, text: &str) -> Result<Self, RegistryError> {
        let file = ClientsFile::parse(path, text)?;
        let mut clients = HashMap::with_capacity(file.clients.len());
        let mut first_hash = None;
        for (index, entry) in file.clients.into_iter().enumerate() {
            let invalid = |client_id: &str, reason: String| RegistryError::InvalidClient {
                path: path.to_owned(),
                index,
                client_id: client_id.to_owned(),
                reason,
            };
            let client = build_client(entry).map_err(|(id, reason)| invalid(&id, reason))?;
            if clients.contains_key(&client.id) {
                return Err(invalid(&client.id, "duplicate client_id".to_owned()));
            }
            first_hash.get_or_insert_with(|| client.secret.clone());
            clients.insert(client.id.clone(), client);
        }
        let first_hash = first_hash.ok_or_else(|| RegistryError::NoClients(path.to_owned()))?;
        let dummy = first_hash.dummy_like().map_err(RegistryError::Hash)?;
        Ok(Self { clients, dummy })
    }

    /// The client with this ID and secret. An unknown ID and a wrong secret give the same
    /// [`ClientError::InvalidClient`] after the same work (one Argon2 verification, a few
    /// milliseconds of CPU: call it from a blocking thread in async code).
    pub fn authenticate(&self, client_id: &str, secret: &str) -> Result<&Client, ClientError> {
        match self.clients.get(client_id) {
            Some(client) if client.secret.verify(secret) => Ok(client),
            Some(_) => Err(ClientError::InvalidClient),
            None => {
                // Same work as for a known client; the result is meaningless.
                let _ = self.dummy.verify(secret);
                Err(ClientError::InvalidClient)
            }
        }
    }

    /// The scopes to grant `client` for the requested `scope` string; see
    /// [`Client::grant_scopes`].
    pub fn grant_scopes(
        &self,
        client: &Client,
        requested: &str,
    ) -> Result<Vec<String>, ClientError> {
        client.grant_scopes(requested)
    }

    /// The client with this ID, without authentication (for listings and logs).
    pub fn get(&self, client_id: &str) -> Option<&Client> {
        self.clients.get(client_id)
    }

    /// The number of clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// True when there is no client (never, for a loaded registry).
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// True when some client's secret was given in plain text: the service should warn at
    /// start-up that this configuration is for development only.
    pub fn uses_development_secrets(&self) -> bool {
        self.clients.values().any(Client::has_development_secret)
    }
}

/// Validates one entry and hashes a plain secret; on failure the entry's ID and the reason.
fn build_client(entry: ClientEntry) -> Result<Client, (String, String)> {
    let ClientEntry {
        client_id,
        secret_hash,
        secret,
        allowed_scopes,
        allowed_audiences,
        description,
    } = entry;
    let fail = |reason: String| (client_id.clone(), reason);
    if !is_valid_client_id(&client_id) {
        return Err(fail(format!(
            "client_id must be 1 to {MAX_CLIENT_ID_LEN} characters of [A-Za-z0-9_.-]"
        )));
    }
    let (secret, development_secret) = match (secret_hash, secret) {
        (Some(phc), None) => (
            SecretHash::parse(&phc).map_err(|reason| fail(format!("secret_hash: {reason}")))?,
            false,
        ),
        (None, Some(plain)) if plain.is_empty() => return Err(fail("secret is empty".to_owned())),
        (None, Some(plain)) => (SecretHash::hash(&plain).map_err(fail)?, true),
        (Some(_), Some(_)) => return Err(fail("give secret_hash or secret, not both".to_owned())),
        (None, None) => {
            return Err(fail(
                "secret_hash (or, for development, secret) is required".to_owned(),
            ));
        }
    };
    let mut scopes: Vec<String> = Vec::with_capacity(allowed_scopes.len());
    for scope in allowed_scopes {
        if !is_valid_scope(&scope) {
            return Err(fail(format!(
                "allowed scope {scope:?} must be 1 to {MAX_SCOPE_LEN} characters of [A-Za-z0-9:_.-]"
            )));
        }
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let allowed_audiences = resource::allowed(allowed_audiences).map_err(fail)?;
    Ok(Client {
        id: client_id,
        secret,
        allowed_scopes: scopes,
        allowed_audiences,
        description,
        development_secret,
    })
}

/// The longest client ID.
const MAX_CLIENT_ID_LEN: usize = 64;

fn is_valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_LEN
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte))
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    const DEFAULT_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients.yaml");

    /// The default registry, loaded once (hashing its development secrets takes a while in
    /// an unoptimised build).
    fn default_registry() -> &'static ClientRegistry {
        static REGISTRY: OnceLock<ClientRegistry> = OnceLock::new();
        REGISTRY.get_or_init(|| ClientRegistry::load(Path::new(DEFAULT_FILE)).unwrap())
    }

    fn from_yaml(text: &str) -> Result<ClientRegistry, RegistryError> {
        ClientRegistry::from_yaml(Path::new("clients.yaml"), text)
    }

    fn scopes(client: &str) -> Vec<&str> {
        let client = default_registry().get(client).unwrap();
        client.allowed_scopes().iter().map(String::as_str).collect()
    }

    #[test]
    fn the_default_file_registers_the_agents_and_the_orchestrator() {
        let registry = default_registry();
        assert_eq!(registry.len(), 5);
        assert!(registry.uses_development_secrets());
        let common = [
            "memory:read",
            "memory:write",
            "audit:write",
            "simulation:read",
        ];
        for (agent, tools) in [
            ("planner", vec!["calculator:use"]),
            ("hacker", vec!["file_reader:use", "database_query:use"]),
            ("safecracker", vec!["calculator:use", "file_reader:use"]),
            ("mole", vec!["database_query:use"]),
        ] {
            let granted = scopes(agent);
            let expected: Vec<&str> = tools.iter().copied().chain(common).collect();
            assert_eq!(granted, expected, "{agent}");
            assert!(!granted.contains(&"memory:admin"), "{agent}");
            assert!(!granted.contains(&"audit:read"), "{agent}");
        }
        let orchestrator = scopes("orchestrator");
        for scope in [
            "audit:read",
            "audit:write",
            "memory:read",
            "memory:write",
            "memory:admin",
            "calculator:use",
            "file_reader:use",
            "database_query:use",
        ] {
            assert!(orchestrator.contains(&scope), "{scope}");
        }
    }

    #[test]
    fn default_clients_authenticate_with_their_development_secrets() {
        let registry = default_registry();
        let client = registry
            .authenticate("planner", "planner-dev-secret")
            .unwrap();
        assert_eq!(client.id(), "planner");
        assert!(client.has_development_secret());
        assert!(
            registry
                .authenticate("orchestrator", "orchestrator-dev-secret")
                .is_ok()
        );
    }

    #[test]
    fn a_wrong_secret_and_an_unknown_client_give_the_same_error() {
        let registry = default_registry();
        let wrong_secret = registry
            .authenticate("planner", "hacker-dev-secret")
            .unwrap_err();
        let unknown = registry
            .authenticate("intruder", "planner-dev-secret")
            .unwrap_err();
        let empty = registry.authenticate("", "").unwrap_err();
        assert_eq!(wrong_secret, ClientError::InvalidClient);
        assert_eq!(unknown, wrong_secret);
        assert_eq!(empty, wrong_secret);
        assert_eq!(unknown.to_string(), wrong_secret.to_string());
    }

    #[test]
    fn the_registry_grants_scopes_by_the_rules() {
        let registry = default_registry();
        let planner = registry.get("planner").unwrap();
        assert_eq!(
            registry.grant_scopes(planner, "").unwrap(),
            planner.allowed_scopes()
        );
        assert_eq!(
            registry
                .grant_scopes(planner, "calculator:use calculator:use")
                .unwrap(),
            vec!["calculator:use".to_owned()]
        );
        assert_eq!(
            registry.grant_scopes(planner, "calculator:use database_query:use"),
            Err(ClientError::ScopeNotAllowed(
                "database_query:use".to_owned()
            ))
        );
        assert!(matches!(
            registry.grant_scopes(planner, "calculator:use;drop"),
            Err(ClientError::InvalidScope(_))
        ));
    }

    #[test]
    fn debug_output_never_shows_a_secret_or_a_hash() {
        let registry = default_registry();
        let debug = format!("{registry:?} {:?}", registry.get("planner").unwrap());
        assert!(debug.contains("planner"), "{debug}");
        assert!(!debug.contains("dev-secret"), "{debug}");
        assert!(!debug.contains("argon2"), "{debug}");
        assert!(!debug.contains('$'), "{debug}");
    }

    #[test]
    fn a_hashed_secret_entry_authenticates_and_is_not_a_development_secret() {
        let phc = hash_secret("long-random-secret").unwrap();
        let text = format!(
            "clients:\n  - client_id: tool-runner\n    secret_hash: \"{phc}\"\n    allowed_scopes: [calculator:use]\n"
        );
        let registry = from_yaml(&text).unwrap();
        assert!(!registry.uses_development_secrets());
        assert!(
            registry
                .authenticate("tool-runner", "long-random-secret")
                .is_ok()
        );
        assert_eq!(
            registry.authenticate("tool-runner", "guess").unwrap_err(),
            ClientError::InvalidClient
        );
        let debug = format!("{registry:?}");
        assert!(!debug.contains(&phc), "{debug}");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_named_with_its_line() {
        let text = "clients:\n  - client_id: planner\n    secret: s\n    scopes: [memory:read]\n";
        let message = from_yaml(text).unwrap_err().to_string();
        assert!(message.starts_with("clients.yaml: "), "{message}");
        assert!(message.contains("unknown field `scopes`"), "{message}");
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let error = ClientRegistry::load(Path::new("/nonexistent/clients.yaml")).unwrap_err();
        assert!(matches!(error, RegistryError::Read { .. }), "{error}");
        assert!(
            error.to_string().contains("/nonexistent/clients.yaml"),
            "{error}"
        );
    }

    #[test]
    fn invalid_entries_are_named_with_their_position_and_reason() {
        let phc = "$argon2id$v=19$m=4096,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$3mGgYqvkbCkQyRd8yY0TVKBCUpbVqsZ1W2AZfvuSs3s";
        let cases = [
            (
                "client_id: a\n    secret: s\n  - client_id: a\n    secret: t",
                "clients[1] (`a`): duplicate client_id",
            ),
            (
                "client_id: a\n    allowed_scopes: [x]",
                "secret_hash (or, for development, secret) is required",
            ),
            (
                &format!("client_id: a\n    secret: s\n    secret_hash: \"{phc}\""),
                "not both",
            ),
            ("client_id: a\n    secret: \"\"", "secret is empty"),
            (
                "client_id: a\n    secret_hash: plain",
                "secret_hash: not a PHC string",
            ),
            ("client_id: \"a b\"\n    secret: s", "client_id must be"),
            (
                "client_id: a\n    secret: s\n    allowed_scopes: [\"memory read\"]",
                "allowed scope \"memory read\"",
            ),
            (
                "client_id: a\n    secret: s\n    allowed_audiences: [tools, vault]",
                "allowed_audiences: unknown audience \"vault\"",
            ),
            (
                "client_id: a\n    secret: s\n    allowed_audiences: []",
                "allowed_audiences is empty",
            ),
        ];
        for (entries, expected) in cases {
            let text = format!("clients:\n  - {entries}\n");
            let message = from_yaml(&text).unwrap_err().to_string();
            assert!(message.starts_with("clients.yaml: clients["), "{message}");
            assert!(message.contains(expected), "{expected}: {message}");
        }
    }

    #[test]
    fn errors_about_an_entry_never_show_its_secret() {
        let text = "clients:\n  - client_id: a\n    secret: hunter2-secret\n    allowed_scopes: [\"bad scope\"]\n";
        let message = from_yaml(text).unwrap_err().to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn a_file_without_clients_is_refused() {
        let error = from_yaml("clients: []\n").unwrap_err();
        assert!(matches!(error, RegistryError::NoClients(_)), "{error}");
    }

    #[test]
    fn clients_get_every_audience_unless_their_entry_names_some() {
        let planner = default_registry().get("planner").unwrap();
        assert_eq!(planner.allowed_audiences(), Audience::ALL);
        assert_eq!(planner.grant_audiences(&[]).unwrap(), Audience::ALL);
        let text = "clients:\n  - client_id: a\n    secret: s\n    allowed_scopes: [x]\n    allowed_audiences: [tools]\n";
        let registry = from_yaml(text).unwrap();
        let client = registry.get("a").unwrap();
        assert_eq!(client.allowed_audiences(), [Audience::Tools]);
        assert_eq!(client.grant_audiences(&[]).unwrap(), [Audience::Tools]);
        assert_eq!(
            client.grant_audiences(&["audit".to_owned()]),
            Err(ClientError::ResourceNotAllowed {
                resource: Audience::Audit,
                allowed: vec![Audience::Tools],
            })
        );
    }

    #[test]
    fn duplicate_allowed_scopes_are_kept_once() {
        let text = "clients:\n  - client_id: a\n    secret: s\n    allowed_scopes: [x, y, x]\n";
        let registry = from_yaml(text).unwrap();
        assert_eq!(registry.get("a").unwrap().allowed_scopes(), ["x", "y"]);
    }
}
