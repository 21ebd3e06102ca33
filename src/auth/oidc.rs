//! The job's GitHub Actions OIDC token, asked of the Actions runtime
//! (`ACTIONS_ID_TOKEN_REQUEST_URL`) for the audience the role's trust policy expects.
//! The request's bearer and the token it gives are masked before anything else is done
//! with them.

use std::time::Duration;

use super::Error;
use crate::actions::Runtime;
use crate::http::retry;

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
    let client = crate::http::client(Some(timeout)).map_err(|e| Error::Tls(e.to_string()))?;
    let request = client
        .get(url.clone())
        .header(reqwest::header::AUTHORIZATION, format!("bearer {bearer}"))
        .header(reqwest::header::ACCEPT, "application/json")
        .build()
        .map_err(|e| failed(crate::sdk::innermost(&e.without_url())))?;
    // GitHub's token endpoint answers 5xx under load: the one HTTP retry rule.
    let (answer, attempts) = retry::send(request, "token request", |request| {
        let client = &client;
        async move { Ok::<_, Error>(client.execute(request).await) }
    })
    .await?;
    let retried = |reason: String| {
        if attempts > 1 {
            failed(format!("{reason} ({attempts} attempts)"))
        } else {
            failed(reason)
        }
    };
    let response = match answer {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => return Err(retried(format!("HTTP {}", response.status()))),
        Err(e) if e.is_timeout() => {
            return Err(retried(format!(
                "no answer: timed out after {} s",
                timeout.as_secs_f64()
            )));
        }
        Err(e) => return Err(retried(crate::sdk::innermost(&e.without_url()))),
    };

    #[derive(serde::Deserialize)]
    struct TokenResponse {
        value: String,
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| failed(e.without_url().to_string()))?;
    let token = serde_json::from_slice::<TokenResponse>(&body)
        .map_err(|_| failed("the answer is not JSON with a `value` field".into()))?
        .value;
    runtime.mask(&token);
    Ok(token)
}
