//! Tool discovery: what the tool services offer, from their `ListTools` RPC.

use std::{collections::BTreeMap, time::Duration};

use heist_proto::v1::ListToolsRequest;

use crate::{
    llm::ToolSpec,
    mesh::{Mesh, request},
    replicas::failover,
};

/// What one tool service answered.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The service's URL.
    pub url: String,
    /// Its tools, or why they could not be listed.
    pub tools: Result<Vec<ToolSpec>, String>,
    /// The scope each listed tool requires.
    pub scopes: BTreeMap<String, String>,
}

/// Asks every distinct tool service for its tools (one replica each: the
/// first that is not gone).
pub async fn discover(mesh: &Mesh, token: Option<&str>, deadline: Duration) -> Vec<Discovered> {
    let mut seen = BTreeMap::new();
    for route in mesh.tools.values() {
        seen.entry(route.url.clone())
            .or_insert_with(|| route.clone());
    }
    let mut found = Vec::new();
    for (url, route) in seen {
        // Any live replica answers for the service.
        let answer = failover(route.replicas, 0, |pinned| {
            let mut client = route.client.clone();
            let mut request = request(ListToolsRequest {}, token, deadline);
            request.extensions_mut().insert(pinned);
            async move { client.list_tools(request).await }
        })
        .await;
        let (tools, scopes) = match answer {
            Ok(answer) => {
                let listed = answer.into_inner().tools;
                let scopes = listed
                    .iter()
                    .map(|tool| (tool.name.clone(), tool.required_scope.clone()))
                    .collect();
                let specs = listed
                    .into_iter()
                    .map(|tool| ToolSpec {
                        parameters_schema: serde_json::from_str(&tool.parameters_schema)
                            .unwrap_or(serde_json::Value::Null),
                        name: tool.name,
                        description: tool.description,
                        primary_argument: tool.primary_argument,
                    })
                    .collect();
                (Ok(specs), scopes)
            }
            Err(status) => (
                Err(format!("{:?}: {}", status.code(), status.message())),
                BTreeMap::new(),
            ),
        };
        found.push(Discovered { url, tools, scopes });
    }
    found
}

/// The specs of the configured tools: as discovered, or, for a service that
/// could not be asked, the built-in description of the tool (so agents still
/// try it, and the failure is recorded).
pub fn tool_specs(mesh: &Mesh, discovered: &[Discovered]) -> BTreeMap<String, ToolSpec> {
    let mut specs: BTreeMap<String, ToolSpec> = discovered
        .iter()
        .filter_map(|found| found.tools.as_ref().ok())
        .flatten()
        .map(|spec| (spec.name.clone(), spec.clone()))
        .collect();
    for name in mesh.tools.keys() {
        if !specs.contains_key(name)
            && let Some(spec) = builtin_spec(name)
        {
            specs.insert(name.clone(), spec);
        }
    }
    specs
}

/// The description of a known tool, for when its service is down.
pub fn builtin_spec(name: &str) -> Option<ToolSpec> {
    let (description, argument, doc) = match name {
        "calculator" => (
            "Evaluates an arithmetic expression.",
            "expression",
            "e.g. 45 * 3 + 20",
        ),
        "file_reader" => (
            "Reads a heist document by file name.",
            "filename",
            "e.g. vault_specs.md",
        ),
        "database_query" => (
            "Queries the bank's intelligence database (SELECT or a topic).",
            "query",
            "e.g. guard schedule",
        ),
        _ => return None,
    };
    Some(ToolSpec::single_string(name, description, argument, doc))
}
