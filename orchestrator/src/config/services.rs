//! The services' sections: OAuth (with the orchestrator's own credentials), Memory, Audit and
//! the Tool services, each an [`Endpoint`]; and the notes on the seed's keys that are ignored.

use std::collections::BTreeMap;

use super::{
    ConfigError, Endpoints, Secret,
    agents::{secret_variable, tool_name},
    fields::Fields,
    raw::{AddressParts, HasAddress, RawConfig},
};

/// Where OAuth listens when the file does not say.
pub const DEFAULT_OAUTH_URL: &str = "http://127.0.0.1:8001";
/// Where Memory listens when the file does not say.
pub const DEFAULT_MEMORY_URL: &str = "http://127.0.0.1:8005";
/// Where Audit listens when the file does not say.
pub const DEFAULT_AUDIT_URL: &str = "http://127.0.0.1:8006";
/// The orchestrator's OAuth client ID when the file does not say.
pub const DEFAULT_CLIENT_ID: &str = "orchestrator";

/// The OAuth service and the orchestrator's own credentials (it writes Audit and Memory).
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthSettings {
    /// Where OAuth listens (every replica).
    pub endpoint: Endpoints,
    /// The orchestrator's client ID (default `orchestrator`).
    pub client_id: String,
    /// The orchestrator's client secret (`HEIST_SECRET_<CLIENT_ID>`, else the file, else
    /// `<client_id>-dev-secret`).
    pub client_secret: Secret,
}

/// Every service the orchestrator calls.
pub(super) struct Services {
    /// OAuth and the orchestrator's credentials.
    pub(super) oauth: OAuthSettings,
    /// Tool name to its service.
    pub(super) tool_services: BTreeMap<String, Endpoints>,
    /// Memory.
    pub(super) memory: Endpoints,
    /// Audit.
    pub(super) audit: Endpoints,
}

impl Services {
    /// Every service's config entry and addresses.
    pub(super) fn entries(&self) -> impl Iterator<Item = (String, &Endpoints)> {
        [
            ("oauth_service".to_owned(), &self.oauth.endpoint),
            ("memory_service".to_owned(), &self.memory),
            ("audit_service".to_owned(), &self.audit),
        ]
        .into_iter()
        .chain(
            self.tool_services
                .iter()
                .map(|(tool, endpoints)| (format!("tool_services.{tool}"), endpoints)),
        )
    }
}

/// Reads the service sections, noting the seed's keys that are accepted but mean nothing here.
pub(super) fn build_services(
    fields: &Fields<'_>,
    raw: &RawConfig,
    notes: &mut Vec<String>,
) -> Result<Services, ConfigError> {
    let oauth_section = raw.oauth_service.as_ref();
    let client_id = match oauth_section.and_then(|oauth| oauth.client_id.as_deref()) {
        Some(client_id) => fields.client_name("oauth_service.client_id", client_id)?,
        None => DEFAULT_CLIENT_ID.to_owned(),
    };
    let oauth = OAuthSettings {
        endpoint: service(fields, "oauth_service", oauth_section, DEFAULT_OAUTH_URL)?,
        client_secret: fields.secret(
            "oauth_service.client_secret",
            &secret_variable(&client_id),
            oauth_section.and_then(|oauth| oauth.client_secret.as_deref()),
            &format!("{client_id}-dev-secret"),
        )?,
        client_id,
    };
    let memory = service(
        fields,
        "memory_service",
        raw.memory_service.as_ref(),
        DEFAULT_MEMORY_URL,
    )?;
    let audit = service(
        fields,
        "audit_service",
        raw.audit_service.as_ref(),
        DEFAULT_AUDIT_URL,
    )?;
    let mut tool_services = BTreeMap::new();
    for (tool, section) in &raw.tool_services {
        let field = format!("tool_services.{tool}");
        let name = tool_name(fields, &field, tool)?;
        tool_services.insert(name, fields.endpoint(&field, section.address())?);
    }
    note_ignored_keys(raw, notes);
    Ok(Services {
        oauth,
        tool_services,
        memory,
        audit,
    })
}

/// The endpoints of an optional service section; `default` when the section is absent or gives
/// no address key (e.g. only `client_id`).
fn service(
    fields: &Fields<'_>,
    field: &str,
    section: Option<&impl HasAddress>,
    default: &str,
) -> Result<Endpoints, ConfigError> {
    let address = section
        .map(HasAddress::address)
        .filter(|address| {
            address.host.is_some()
                || address.port.is_some()
                || address.base_url.is_some()
                || address.base_urls.is_some()
        })
        .unwrap_or(AddressParts {
            host: None,
            port: None,
            base_url: Some(default),
            base_urls: None,
        });
    fields.endpoint(field, address)
}

/// One note per kind of seed key that is accepted and ignored.
fn note_ignored_keys(raw: &RawConfig, notes: &mut Vec<String>) {
    if raw
        .tool_services
        .values()
        .any(|tool| tool.endpoint.is_some())
    {
        notes.push(
            "tool_services.*.endpoint is ignored: tools are called over gRPC at host:port".into(),
        );
    }
    if raw
        .memory_service
        .as_ref()
        .is_some_and(|memory| memory.compression_threshold.is_some())
    {
        notes.push(
            "memory_service.compression_threshold is ignored: the Memory service compresses \
             on every read (see session.memory_recent_count and session.memory_max_chars)"
                .into(),
        );
    }
    if raw.database.is_some() {
        notes.push("database is ignored: the Audit service owns the database".into());
    }
}
