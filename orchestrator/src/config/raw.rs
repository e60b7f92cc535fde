//! The config file's shape as written, for serde: every section rejects unknown keys (except the
//! seed's known keys that no longer mean anything), and string values stay unexpanded until
//! `${VAR}` expansion and validation turn them into a [`Config`](super::Config).

use std::{collections::BTreeMap, fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{Error as _, IgnoredAny, MapAccess, Visitor},
};

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// The agents, in file order.
    pub(super) agents: Vec<RawAgent>,
    /// The OAuth service and the orchestrator's own credentials.
    #[serde(default)]
    pub(super) oauth_service: Option<RawOAuth>,
    /// Tool name to the Tool service hosting it.
    #[serde(default, deserialize_with = "unique_keys")]
    pub(super) tool_services: BTreeMap<String, RawToolService>,
    /// The language model.
    #[serde(default)]
    pub(super) llm: RawLlm,
    /// The Memory service.
    #[serde(default)]
    pub(super) memory_service: Option<RawMemory>,
    /// The Audit service.
    #[serde(default)]
    pub(super) audit_service: Option<RawAddress>,
    /// The conversation's shape.
    #[serde(default)]
    pub(super) session: RawSession,
    /// Per-call deadlines.
    #[serde(default)]
    pub(super) timeouts: RawTimeouts,
    /// Retries, circuit breakers and the audit spool.
    #[serde(default)]
    pub(super) resilience: RawResilience,
    /// TLS on every call.
    #[serde(default)]
    pub(super) tls: Option<RawTls>,
    /// Where to serve Prometheus metrics.
    #[serde(default)]
    pub(super) metrics: Option<RawMetrics>,
    /// The seed's SQLite path: accepted and ignored (the Audit service owns the database).
    #[serde(default)]
    pub(super) database: Option<IgnoredAny>,
}

/// The `metrics` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    /// `HOST:PORT` to serve `/metrics` on while a run lasts.
    #[serde(default)]
    pub(super) listen: Option<String>,
}

/// The `tls` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// The CA that signed the services' certificates.
    pub(super) ca: String,
    /// The certificate shown under mutual TLS.
    #[serde(default)]
    pub(super) cert: Option<String>,
    /// Its key.
    #[serde(default)]
    pub(super) key: Option<String>,
    /// How often changed files are read again.
    #[serde(default)]
    pub(super) reload: Option<String>,
}

/// One agent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    /// Its name, also its OAuth client ID.
    pub(super) name: String,
    /// Its role, shown to the other agents.
    pub(super) role: String,
    /// Tools it may call: `calculator` or the seed's `calculator:use`.
    #[serde(default)]
    pub(super) tools: Vec<String>,
    /// Scopes it asks OAuth for.
    #[serde(default)]
    pub(super) oauth_scopes: Vec<String>,
    /// Its system prompt.
    pub(super) system_prompt: String,
    /// Whether it secretly works against the crew.
    #[serde(default)]
    pub(super) is_saboteur: bool,
    /// Its OAuth client secret.
    #[serde(default)]
    pub(super) client_secret: Option<String>,
}

/// Where a service listens: `base_url`, or `host` + `port`, or all three in agreement; or
/// `base_urls`, every replica's address.
pub(super) struct AddressParts<'a> {
    /// The host.
    pub(super) host: Option<&'a str>,
    /// The port.
    pub(super) port: Option<u16>,
    /// `http://host:port`.
    pub(super) base_url: Option<&'a str>,
    /// Every replica's `http://host:port`.
    pub(super) base_urls: Option<&'a [String]>,
}

/// A service section that is only an address (the Audit service).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAddress {
    /// The host.
    #[serde(default)]
    pub(super) host: Option<String>,
    /// The port.
    #[serde(default)]
    pub(super) port: Option<u16>,
    /// `http://host:port`.
    #[serde(default)]
    pub(super) base_url: Option<String>,
    /// Every replica's `http://host:port`.
    #[serde(default)]
    pub(super) base_urls: Option<Vec<String>>,
}

/// The OAuth service section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOAuth {
    /// The host.
    #[serde(default)]
    pub(super) host: Option<String>,
    /// The port.
    #[serde(default)]
    pub(super) port: Option<u16>,
    /// `http://host:port`.
    #[serde(default)]
    pub(super) base_url: Option<String>,
    /// Every replica's `http://host:port`.
    #[serde(default)]
    pub(super) base_urls: Option<Vec<String>>,
    /// The orchestrator's own client ID.
    #[serde(default)]
    pub(super) client_id: Option<String>,
    /// The orchestrator's own client secret.
    #[serde(default)]
    pub(super) client_secret: Option<String>,
}

/// One `tool_services` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToolService {
    /// The host.
    #[serde(default)]
    pub(super) host: Option<String>,
    /// The port.
    #[serde(default)]
    pub(super) port: Option<u16>,
    /// `http://host:port`.
    #[serde(default)]
    pub(super) base_url: Option<String>,
    /// Every replica's `http://host:port`.
    #[serde(default)]
    pub(super) base_urls: Option<Vec<String>>,
    /// The seed's HTTP path: accepted and ignored (tools are called over gRPC).
    #[serde(default)]
    pub(super) endpoint: Option<IgnoredAny>,
}

/// The Memory service section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMemory {
    /// The host.
    #[serde(default)]
    pub(super) host: Option<String>,
    /// The port.
    #[serde(default)]
    pub(super) port: Option<u16>,
    /// `http://host:port`.
    #[serde(default)]
    pub(super) base_url: Option<String>,
    /// Every replica's `http://host:port`.
    #[serde(default)]
    pub(super) base_urls: Option<Vec<String>>,
    /// The seed's compression trigger: accepted and ignored.
    #[serde(default)]
    pub(super) compression_threshold: Option<IgnoredAny>,
}

/// Gives the address keys of a service section.
pub(super) trait HasAddress {
    /// The section's `host`, `port`, `base_url` and `base_urls`.
    fn address(&self) -> AddressParts<'_>;
}

macro_rules! impl_has_address {
    ($($section:ty),*) => {$(
        impl HasAddress for $section {
            fn address(&self) -> AddressParts<'_> {
                AddressParts {
                    host: self.host.as_deref(),
                    port: self.port,
                    base_url: self.base_url.as_deref(),
                    base_urls: self.base_urls.as_deref(),
                }
            }
        }
    )*};
}

impl_has_address!(RawAddress, RawOAuth, RawToolService, RawMemory);

/// The `llm` section.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLlm {
    /// `auto`, `offline` or `openai`.
    #[serde(default)]
    pub(super) backend: Option<String>,
    /// The OpenAI-compatible API's base URL.
    #[serde(default)]
    pub(super) base_url: Option<String>,
    /// The model's name.
    #[serde(default)]
    pub(super) model: Option<String>,
    /// The API key.
    #[serde(default)]
    pub(super) api_key: Option<String>,
    /// Sampling temperature.
    #[serde(default)]
    pub(super) temperature: Option<f32>,
    /// Longest answer, in tokens.
    #[serde(default)]
    pub(super) max_tokens: Option<u32>,
    /// `inline` or `native`.
    #[serde(default)]
    pub(super) tool_calls: Option<String>,
    /// Per-request deadline, e.g. `60s`.
    #[serde(default)]
    pub(super) timeout: Option<String>,
    /// Retries after a failed request.
    #[serde(default)]
    pub(super) retries: Option<u32>,
}

/// The `session` section.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSession {
    /// Turns before the session ends.
    #[serde(default)]
    pub(super) max_turns: Option<u64>,
    /// Who speaks when.
    #[serde(default)]
    pub(super) turn_order: Option<Vec<String>>,
    /// Conversation messages given to each agent.
    #[serde(default)]
    pub(super) context_messages: Option<usize>,
    /// Memory turns returned verbatim.
    #[serde(default)]
    pub(super) memory_recent_count: Option<u32>,
    /// Longest memory summary, in characters.
    #[serde(default)]
    pub(super) memory_max_chars: Option<u32>,
    /// Whether turn 0 is the seed's framing message.
    #[serde(default)]
    pub(super) warmup: Option<bool>,
    /// Seed for the offline backend and any other randomness.
    #[serde(default)]
    pub(super) seed: Option<u64>,
}

/// The `timeouts` section: durations such as `500ms`, `5s`, `2m`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    /// Token requests.
    #[serde(default)]
    pub(super) oauth: Option<String>,
    /// Tool calls.
    #[serde(default)]
    pub(super) tools: Option<String>,
    /// Memory calls.
    #[serde(default)]
    pub(super) memory: Option<String>,
    /// Audit calls.
    #[serde(default)]
    pub(super) audit: Option<String>,
    /// Health checks.
    #[serde(default)]
    pub(super) health: Option<String>,
}

/// The `resilience` section.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResilience {
    /// Attempts per call (retries + 1).
    #[serde(default)]
    pub(super) max_attempts: Option<u32>,
    /// Consecutive failures that open a service's breaker.
    #[serde(default)]
    pub(super) failure_threshold: Option<u32>,
    /// How long an open breaker refuses calls.
    #[serde(default)]
    pub(super) open_for: Option<String>,
    /// Turns whose audit writes may wait in the spool before the conversation pauses.
    #[serde(default)]
    pub(super) max_spooled_turns: Option<u32>,
}

/// A map that refuses a key given twice (serde's own map keeps the last one silently).
fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    /// Collects the entries, refusing repeats.
    struct UniqueKeys<V>(PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueKeys<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a map of tool name to its service")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut entries = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, V>()? {
                if entries.contains_key(&key) {
                    return Err(A::Error::custom(format_args!(
                        "duplicate entry `{key}`; give each tool once"
                    )));
                }
                entries.insert(key, value);
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_map(UniqueKeys(PhantomData))
}
