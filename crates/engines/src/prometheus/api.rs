//! Prometheus's HTTP query API (`/api/v1/query`): instant queries and their samples.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::IgnoredAny;

/// Why a query gave no samples.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// The server could not be reached or did not answer in time.
    #[error("querying Prometheus at {url}: {source}")]
    Http {
        /// The query URL.
        url: String,
        /// The client's error.
        source: reqwest::Error,
    },
    /// Prometheus refused the query, e.g. PromQL that does not parse.
    #[error("Prometheus refused `{promql}` ({error_type}): {error}")]
    Refused {
        /// The query.
        promql: String,
        /// Prometheus's `errorType`, e.g. `bad_data`.
        error_type: String,
        /// Prometheus's `error` message.
        error: String,
    },
    /// The answer was not an instant vector or scalar, or not readable.
    #[error("unexpected answer to `{promql}`: {reason}")]
    Unexpected {
        /// The query.
        promql: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A wait ended before the samples satisfied it.
    #[error("`{promql}` did not give the expected samples within {seconds} s; last: [{last}]")]
    Timeout {
        /// The query.
        promql: String,
        /// How long it was waited for.
        seconds: u64,
        /// The samples of the last answer.
        last: String,
    },
}

/// One sample of an instant query: a series' labels and its value then.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Every label, `__name__` (the metric name) included when the series has one.
    pub labels: BTreeMap<String, String>,
    /// The value (`NaN` and infinities included).
    pub value: f64,
    /// When it was evaluated, in seconds since the Unix epoch.
    pub timestamp: f64,
}

impl Sample {
    /// The metric name, if the series kept one (aggregations drop it).
    pub fn name(&self) -> Option<&str> {
        self.label("__name__")
    }

    /// The value of the label `name`, if the series has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

impl fmt::Display for Sample {
    /// `name{label="value",...} VALUE`, as PromQL writes a series.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<String> = self
            .labels
            .iter()
            .filter(|(name, _)| name.as_str() != "__name__")
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        write!(
            f,
            "{}{{{}}} {}",
            self.name().unwrap_or_default(),
            labels.join(","),
            self.value
        )
    }
}

/// The samples in `body`, the answer to the instant query `promql`.
pub(crate) fn decode(promql: &str, body: &str) -> Result<Vec<Sample>, PromError> {
    let unexpected = |reason: String| PromError::Unexpected {
        promql: promql.to_owned(),
        reason,
    };
    let answer: Answer = serde_json::from_str(body)
        .map_err(|error| unexpected(format!("{error} in {}", excerpt(body))))?;
    if answer.status != "success" {
        return Err(PromError::Refused {
            promql: promql.to_owned(),
            error_type: answer.error_type.unwrap_or_default(),
            error: answer.error.unwrap_or_default(),
        });
    }
    match answer.data {
        Some(Data::Vector(series)) => series
            .into_iter()
            .map(|series| {
                let (timestamp, value) = series.value;
                Ok(Sample {
                    labels: series.metric,
                    value: parse_value(&value).map_err(unexpected)?,
                    timestamp,
                })
            })
            .collect(),
        Some(Data::Scalar((timestamp, value))) => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value: parse_value(&value).map_err(unexpected)?,
            timestamp,
        }]),
        Some(Data::Matrix(_)) => Err(unexpected(
            "a range vector; ask for an instant vector (no `[range]` at the end)".into(),
        )),
        Some(Data::String(_)) => Err(unexpected("a string, not a number".into())),
        None => Err(unexpected("no data".into())),
    }
}

/// Prometheus writes values as strings: numbers, `NaN`, `+Inf`, `-Inf`.
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse()
            .map_err(|_| format!("value `{text}` is not a number")),
    }
}

fn excerpt(body: &str) -> String {
    let cut: String = body.chars().take(200).collect();
    format!("`{cut}`")
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Series>),
    Scalar((f64, String)),
    Matrix(IgnoredAny),
    String(IgnoredAny),
}

#[derive(Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_answer_gives_each_series_with_its_labels_and_value() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"audit","instance":"127.0.0.1:9"},"value":[1700000000.5,"1"]},
            {"metric":{"job":"x"},"value":[1700000000.5,"+Inf"]}]}}"#;
        let samples = decode("up", body).expect("decodes");
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].name(), Some("up"));
        assert_eq!(samples[0].label("job"), Some("audit"));
        assert_eq!(samples[0].value, 1.0);
        assert_eq!(samples[0].timestamp, 1_700_000_000.5);
        assert_eq!(
            samples[0].to_string(),
            r#"up{instance="127.0.0.1:9",job="audit"} 1"#
        );
        assert_eq!(samples[1].name(), None);
        assert!(samples[1].value.is_infinite());
    }

    #[test]
    fn a_scalar_answer_is_one_sample_without_labels() {
        let body = r#"{"status":"success","data":{"resultType":"scalar","result":[17.0,"NaN"]}}"#;
        let samples = decode("0/0", body).expect("decodes");
        assert_eq!(samples.len(), 1);
        assert!(samples[0].labels.is_empty());
        assert!(samples[0].value.is_nan());
    }

    #[test]
    fn refusals_and_odd_answers_say_what_was_wrong() {
        let refused = r#"{"status":"error","errorType":"bad_data","error":"1:4: parse error: unexpected end of input"}"#;
        let error = decode("up{", refused).expect_err("refused").to_string();
        assert_eq!(
            error,
            "Prometheus refused `up{` (bad_data): 1:4: parse error: unexpected end of input"
        );
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        let error = decode("up[1m]", matrix).expect_err("a matrix").to_string();
        assert!(error.contains("a range vector"), "{error}");
        let error = decode("up", "<html>").expect_err("not JSON").to_string();
        assert!(error.contains("`<html>`"), "{error}");
        let bad_value =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"many"]}}"#;
        let error = decode("x", bad_value).expect_err("a bad value").to_string();
        assert!(error.contains("value `many` is not a number"), "{error}");
    }
}
