//! The job's GitHub Actions OIDC token, asked of the Actions runtime
//! (`ACTIONS_ID_TOKEN_REQUEST_URL`) for the audience the role's trust policy expects.
//! The request's bearer and the token it gives are masked before anything else is done
//! with them.

use std::time::Duration;

use super::Error;
use crate::actions::Runtime;

const TOKEN_REQUEST_ATTEMPTS: u32 = 3;

/// Asks the Actions runtime for the job's OIDC token, for `audience`.
pub(super) async fn request_id_token(
    audience: &str,
    timeout: Duration,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, Error> {
    let non_empty = |name| env(name).filter(|v: &String| !v.is_empty());
    let (Some(url), Some(bearer)) = (
        non_empty("ACTIONS_ID_TOKEN_REQUEST_URL"),
        non_empty("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) else {
        return Err(if runtime.in_actions() {
            Error::NoTokenInActions
        } else {
            Error::NoTokenOutsideActions
        });
    };
    runtime.mask(&bearer);
    let mut url = reqwest::Url::parse(&url).map_err(|_| Error::TokenUrl(url.clone()))?;
    url.query_pairs_mut().append_pair("audience", audience);
    let host = url.host_str().unwrap_or_default().to_owned();
    let failed = |reason: String| Error::Token {
        host: host.clone(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| Error::Tls(e.to_string()))?;

    #[derive(serde::Deserialize)]
    struct TokenResponse {
        value: String,
    }
    let mut attempt = 1;
    loop {
        let response = client
            .get(url.clone())
            .header(reqwest::header::AUTHORIZATION, format!("bearer {bearer}"))
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await;
        let retryable = match response {
            Ok(response) if response.status().is_success() => {
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| failed(e.without_url().to_string()))?;
                let token = serde_json::from_slice::<TokenResponse>(&body)
                    .map_err(|_| failed("the answer is not JSON with a `value` field".into()))?
                    .value;
                runtime.mask(&token);
                return Ok(token);
            }
            Ok(response) => {
                let status = response.status();
                let reason = format!("HTTP {status}");
                if !(status.is_server_error() || status.as_u16() == 429) {
                    return Err(failed(reason));
                }
                reason
            }
            Err(e) if e.is_timeout() => {
                format!("no answer: timed out after {} s", timeout.as_secs_f64())
            }
            Err(e) => crate::sdk::innermost(&e.without_url()),
        };
        if attempt == TOKEN_REQUEST_ATTEMPTS {
            return Err(failed(format!("{retryable} ({attempt} attempts)")));
        }
        tracing::debug!("token request failed ({retryable}), retrying");
        tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        attempt += 1;
    }
}
