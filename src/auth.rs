//! Credentials for the push: the job's GitHub OIDC token exchanged with STS
//! AssumeRoleWithWebIdentity for `role-to-assume`, then optionally AssumeRole into a
//! second role (role chaining, typically into the account that owns the registry).
//! Without `role-to-assume` the default AWS credential chain is used, so the same binary
//! works on a laptop.
//!
//! Every secret is masked the moment it exists. The web-identity call is made on a
//! client with no credentials at all, so the default chain (and its instance-metadata
//! probe) is never touched on the keyless path.

use std::time::{Duration, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{self, ProvideCredentials};
use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_sdk_sts::types::Tag;
use base64::Engine as _;

use crate::actions::Runtime;
use crate::names::account_of_arn;
use crate::sdk::describe;
use crate::sub_claim::{self, SubClaim};

/// IAM caps a session reached by role chaining at one hour, whatever was asked.
const CHAINED_MAX_SECONDS: i32 = 3600;
/// STS session tag values: at most 256 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`.
const MAX_TAG_VALUE_CHARS: usize = 256;
const TOKEN_REQUEST_ATTEMPTS: u32 = 3;
const STS_ATTEMPTS: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One attempt of one call (a layer part gets more, by its size: see push/ecr.rs); past
/// it the SDK retries, so a stalled connection cannot hang the job.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to get credentials: the roles and the session, as the inputs named them.
#[derive(Debug, Clone)]
pub struct Request {
    pub role_to_assume: Option<String>,
    pub audience: String,
    pub role_session_name: String,
    pub role_duration_seconds: i32,
    pub cross_account: Option<CrossAccount>,
}

#[derive(Debug, Clone)]
pub struct CrossAccount {
    pub role: String,
    pub external_id: Option<String>,
    pub session_tags: bool,
}

/// The timeout of one attempt of one small request: [`REQUEST_TIMEOUT`], or
/// `ECR_PUSH_REQUEST_TIMEOUT_SECONDS` for links where AWS answers slower. Read once, by
/// [`authenticate`], which keeps it in the session's config: [`attempt_timeout`].
fn request_timeout(env: &impl Fn(&str) -> Option<String>) -> Duration {
    let Some(text) = env("ECR_PUSH_REQUEST_TIMEOUT_SECONDS") else {
        return REQUEST_TIMEOUT;
    };
    match text.trim().parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 3600.0 => Duration::from_secs_f64(seconds),
        _ => {
            tracing::warn!(
                "ECR_PUSH_REQUEST_TIMEOUT_SECONDS={text} is not a number of seconds from 0 to 3600; using {} s",
                REQUEST_TIMEOUT.as_secs()
            );
            REQUEST_TIMEOUT
        }
    }
}

/// The attempt timeout a session's config carries (see [`request_timeout`]).
pub fn attempt_timeout(config: &SdkConfig) -> Duration {
    config
        .timeout_config()
        .and_then(|t| t.operation_attempt_timeout())
        .unwrap_or(REQUEST_TIMEOUT)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "token request: ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set; give the job `permissions: id-token: write` (and `contents: read`) so GitHub issues an OIDC token"
    )]
    NoTokenInActions,
    #[error(
        "token request: role-to-assume needs a GitHub Actions OIDC token, and ACTIONS_ID_TOKEN_REQUEST_URL is not set; outside Actions leave role-to-assume empty to use your AWS credentials"
    )]
    NoTokenOutsideActions,
    #[error("token request: ACTIONS_ID_TOKEN_REQUEST_URL `{0}` is not a URL")]
    TokenUrl(String),
    #[error("token request: could not set up HTTPS (are CA certificates installed?): {0}")]
    Tls(String),
    #[error("token request to {host} failed: {reason}")]
    Token { host: String, reason: String },
    #[error("aws-region: no region given; set aws-region or AWS_REGION")]
    NoRegion,
    #[error("web-identity assume of {role} failed: {reason}{hint}")]
    WebIdentity {
        role: String,
        reason: String,
        hint: String,
    },
    #[error("cross-account assume of {role} failed: {reason}{hint}")]
    CrossAccount {
        role: String,
        reason: String,
        hint: String,
    },
    #[error(
        "AWS credentials: none found (not in the environment, the shared config and credentials files, a web identity token file, the ECS container endpoint or the instance metadata); set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or role-to-assume in a GitHub Actions job"
    )]
    NoCredentials,
    #[error(
        "AWS credentials: {0}; fix that source (aws sso login for an expired SSO session, the profile named by AWS_PROFILE, …)"
    )]
    DefaultChain(String),
    #[error("STS GetCallerIdentity: {reason}{hint}")]
    CallerIdentity { reason: String, hint: String },
}

/// Credentials and where they lead.
pub struct Session {
    pub config: SdkConfig,
    /// The account of the final credentials: the default registry.
    pub account: String,
    pub region: String,
    /// The identity that will make the ECR calls (an ARN), for messages.
    pub principal: String,
}

/// One link of the chain: credentials and the identity they are.
struct Hop {
    provider: SharedCredentialsProvider,
    arn: String,
}

pub async fn authenticate(
    auth: &Request,
    region: Option<&str>,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Session, Error> {
    let timeout = request_timeout(env);
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(timeout)
                .build(),
        )
        // STS throttles a busy account too; three attempts (the default) lost 2 runs in
        // 200 with 20 % of calls failing (tests/it/faults.rs). ECR's clients set their own.
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(STS_ATTEMPTS));
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    let (base, first) = match &auth.role_to_assume {
        Some(role) => {
            let base = loader.no_credentials().load().await;
            resolved_region(&base)?;
            let token = request_id_token(&auth.audience, timeout, runtime, env).await?;
            let first = assume_web_identity(&base, auth, role, &token, runtime, env).await?;
            (base, first)
        }
        None => {
            let base = loader.load().await;
            resolved_region(&base)?;
            let first = default_chain(&base).await?;
            (base, first)
        }
    };
    let last = match &auth.cross_account {
        Some(cross) => assume_cross_account(&base, &first, auth, cross, runtime, env).await?,
        None => first,
    };
    let region = resolved_region(&base)?;
    let account = account_of_arn(&last.arn).unwrap_or_default().to_owned();
    // Assumed roles expire (a chained one within the hour) and a large push can outlast
    // them: the SDK's cache asks this provider again shortly before they do, and it runs
    // the chain again. The default chain renews its own.
    let provider = if auth.role_to_assume.is_some() || auth.cross_account.is_some() {
        let initial = last.provider.provide_credentials().await.ok();
        SharedCredentialsProvider::new(Renewing {
            base: base.clone(),
            auth: auth.clone(),
            runtime: runtime.clone(),
            variables: RENEWAL_VARIABLES
                .iter()
                .filter_map(|name| Some(((*name).to_owned(), env(name)?)))
                .collect(),
            initial: std::sync::Mutex::new(initial),
        })
    } else {
        last.provider
    };
    Ok(Session {
        config: base.to_builder().credentials_provider(provider).build(),
        account,
        region,
        principal: last.arn,
    })
}

fn resolved_region(config: &SdkConfig) -> Result<String, Error> {
    config
        .region()
        .map(|r| r.to_string())
        .ok_or(Error::NoRegion)
}

/// Asks the Actions runtime for the job's OIDC token, for `audience`.
async fn request_id_token(
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

async fn assume_web_identity(
    base: &SdkConfig,
    auth: &Request,
    role: &str,
    token: &str,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Hop, Error> {
    let endpoint = crate::sdk::Endpoint::default();
    let config = aws_sdk_sts::config::Builder::from(base)
        .interceptor(endpoint.clone())
        .build();
    let output = aws_sdk_sts::Client::from_conf(config)
        .assume_role_with_web_identity()
        .role_arn(role)
        .role_session_name(&auth.role_session_name)
        .duration_seconds(auth.role_duration_seconds)
        .web_identity_token(token)
        .send()
        .await
        .map_err(|err| {
            let hint = match err.code() {
                Some("AccessDenied") => denied_token_hint(role, token, env),
                Some("InvalidIdentityToken") => format!(
                    "; the account of {role} needs an IAM OIDC provider for https://token.actions.githubusercontent.com with client id (audience) `{}`",
                    auth.audience
                ),
                Some("ValidationError") => format!(
                    "; role-duration-seconds ({}) must not exceed the role's maximum session duration",
                    auth.role_duration_seconds
                ),
                _ => String::new(),
            };
            Error::WebIdentity {
                role: role.to_owned(),
                reason: crate::sdk::describe_at(&err, &endpoint),
                hint,
            }
        })?;
    let arn = output
        .assumed_role_user()
        .map(|u| u.arn().to_owned())
        .unwrap_or_else(|| role.to_owned());
    let credentials = output.credentials().ok_or_else(|| Error::WebIdentity {
        role: role.to_owned(),
        reason: "STS answered without credentials".into(),
        hint: String::new(),
    })?;
    let claims = jwt_claims(token).unwrap_or_default();
    let claim = |name: &str| claim_text(&claims, name).unwrap_or_else(|| "?".into());
    tracing::info!(
        "{role}: assumed with the job's token (sub `{}`, aud `{}`) as session {}, in account {}",
        claim("sub"),
        claim("aud"),
        auth.role_session_name,
        account_of_arn(&arn).unwrap_or("?")
    );
    Ok(Hop {
        provider: masked_provider(credentials, runtime),
        arn,
    })
}

/// What a denied web-identity assume needs said: the claims the trust policy saw (they
/// are not secrets, the token is), which `sub` form they have, and the condition that
/// would let them in.
fn denied_token_hint(role: &str, token: &str, env: &impl Fn(&str) -> Option<String>) -> String {
    let claims = jwt_claims(token).unwrap_or_default();
    let claim = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let sub = claim("sub").unwrap_or_else(|| "?".into());
    let aud = claim_text(&claims, "aud").unwrap_or_else(|| "?".into());
    let parsed = SubClaim::parse(&sub);
    let form = match &parsed {
        Some(s) if s.is_immutable() => format!(
            " (an immutable subject: owner id {} and repository id {} after `@`, as github.com writes them for repositories created, renamed or transferred since 2026-07-15 and for those opted in, so a trust written for `{}` does not match it)",
            s.owner_id.unwrap_or_default(),
            s.repo_id.unwrap_or_default(),
            sub_claim::subject(s.owner, None, s.repo, Some("…"))
        ),
        Some(_) => " (the classic form, without the owner's and repository's ids)".to_owned(),
        None => " (a customised subject template)".to_owned(),
    };
    let mut seen = format!("sub `{sub}`{form}, aud `{aud}`");
    for name in ["repository", "ref", "environment"] {
        if let Some(value) = claim(name) {
            seen.push_str(&format!(", {name} `{value}`"));
        }
    }
    // The ids: from the token's own claims, else from the runner's variables.
    let id = |claim_name: &str, variable: &str| {
        claim_text(&claims, claim_name)
            .or_else(|| env(variable))
            .filter(|v| sub_claim::is_id(v))
    };
    let ids = id("repository_owner_id", "GITHUB_REPOSITORY_OWNER_ID")
        .zip(id("repository_id", "GITHUB_REPOSITORY_ID"));
    let generate = parsed.as_ref().and_then(|s| {
        // Git allows `$`, `;` and backquotes in a branch name: quoted, so that a
        // command copied from the log runs nothing else.
        let quoted = |name: &str| {
            if name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
            {
                name.to_owned()
            } else {
                format!("'{}'", name.replace('\'', "'\\''"))
            }
        };
        let subject = match s.context?.split_once(':') {
            Some(("ref", r)) if r.starts_with("refs/heads/") => {
                format!("--branch {}", quoted(&r["refs/heads/".len()..]))
            }
            Some(("ref", r)) if r.starts_with("refs/tags/") => {
                format!("--tag {}", quoted(&r["refs/tags/".len()..]))
            }
            Some(("environment", e)) => format!("--environment {}", quoted(e)),
            None if s.context == Some("pull_request") => "--pull-request".to_owned(),
            _ => return None,
        };
        Some(match &ids {
            Some((o, r)) => format!(
                "; `ecr-push policy generate --github-repo {}/{} --github-owner-id {o} --github-repo-id {r} {subject} …` writes it for both forms",
                s.owner, s.repo
            ),
            None => format!(
                "; `ecr-push policy generate --github-repo {}/{} {subject} …` writes it",
                s.owner, s.repo
            ),
        })
    });
    format!(
        "; the trust policy of {role} does not let this job in. Its token has {seen}. A statement for the federated principal oidc-provider/token.actions.githubusercontent.com with StringEquals \"token.actions.githubusercontent.com:aud\": \"{aud}\", \"token.actions.githubusercontent.com:sub\": \"{sub}\" would let this job in{} (ecr-push policy check --trust FILE --token … names the condition that fails)",
        generate.unwrap_or_default()
    )
}

/// The default chain's credentials, and whose they are. They are asked for first, so
/// that none found, a source that failed, an STS that does not answer and credentials
/// STS refuses are four different lines with four different fixes.
async fn default_chain(base: &SdkConfig) -> Result<Hop, Error> {
    use aws_credential_types::provider::error::CredentialsError;
    let provider = base.credentials_provider().ok_or(Error::NoCredentials)?;
    match provider.provide_credentials().await {
        Ok(_) => {}
        Err(CredentialsError::CredentialsNotLoaded(_)) => return Err(Error::NoCredentials),
        Err(other) => return Err(Error::DefaultChain(crate::sdk::innermost(&other))),
    }
    let endpoint = crate::sdk::Endpoint::default();
    let config = aws_sdk_sts::config::Builder::from(base)
        .interceptor(endpoint.clone())
        .build();
    let identity = aws_sdk_sts::Client::from_conf(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|err| {
            let answered = err.code().is_some()
                || matches!(err, aws_sdk_sts::error::SdkError::ServiceError(_));
            let hint = if answered {
                "; the credentials are wrong, expired or of another partition: renew them"
                    .to_owned()
            } else {
                "; check the network, and AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_STS if one is set"
                    .to_owned()
            };
            Error::CallerIdentity {
                reason: if answered {
                    format!("refused the credentials: {}", describe(&err))
                } else {
                    crate::sdk::describe_at(&err, &endpoint)
                },
                hint,
            }
        })?;
    let arn = identity.arn().unwrap_or_default().to_owned();
    tracing::info!(
        "default credential chain: {arn}, in account {}",
        identity.account().unwrap_or("?")
    );
    Ok(Hop { provider, arn })
}

async fn assume_cross_account(
    base: &SdkConfig,
    first: &Hop,
    auth: &Request,
    cross: &CrossAccount,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Hop, Error> {
    let endpoint = crate::sdk::Endpoint::default();
    let config = aws_sdk_sts::config::Builder::from(base)
        .credentials_provider(first.provider.clone())
        .interceptor(endpoint.clone())
        .build();
    let client = aws_sdk_sts::Client::from_conf(config);
    let mut tags = if cross.session_tags {
        session_tags(env)
    } else {
        Vec::new()
    };
    loop {
        let mut request = client
            .assume_role()
            .role_arn(&cross.role)
            .role_session_name(&auth.role_session_name)
            .duration_seconds(auth.role_duration_seconds.min(CHAINED_MAX_SECONDS))
            .set_external_id(cross.external_id.clone());
        for (key, value, _) in &tags {
            if let Ok(tag) = Tag::builder().key(*key).value(value).build() {
                request = request.tags(tag);
            }
        }
        match request.send().await {
            Ok(output) => {
                let credentials = output.credentials().ok_or_else(|| Error::CrossAccount {
                    role: cross.role.clone(),
                    reason: "STS answered without credentials".into(),
                    hint: String::new(),
                })?;
                let arn = output
                    .assumed_role_user()
                    .map(|u| u.arn().to_owned())
                    .unwrap_or_else(|| cross.role.clone());
                tracing::info!(
                    "{}: assumed with those credentials as session {}{}, in account {}",
                    cross.role,
                    auth.role_session_name,
                    if tags.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " with tags {}",
                            tags.iter()
                                .map(|(k, _, _)| *k)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                    account_of_arn(&arn).unwrap_or("?")
                );
                return Ok(Hop {
                    provider: masked_provider(credentials, runtime),
                    arn,
                });
            }
            Err(err)
                if err.code() == Some("PackedPolicyTooLarge")
                    && tags.iter().any(|(_, _, optional)| *optional) =>
            {
                tracing::info!("session tags too large for STS; sending the required ones only");
                tags.retain(|(_, _, optional)| !optional);
            }
            Err(err) => {
                let hint = match err.code() {
                    Some("AccessDenied") => format!(
                        "; the trust policy of {} must allow sts:AssumeRole{} for {}, and that role needs sts:AssumeRole on {} in its own permissions",
                        cross.role,
                        if tags.is_empty() {
                            ""
                        } else {
                            " and sts:TagSession (session-tags is on)"
                        },
                        role_of(&first.arn),
                        cross.role
                    ),
                    _ => String::new(),
                };
                return Err(Error::CrossAccount {
                    role: cross.role.clone(),
                    reason: crate::sdk::describe_at(&err, &endpoint),
                    hint,
                });
            }
        }
    }
}

/// What the chain reads from the environment, kept for renewals.
const RENEWAL_VARIABLES: [&str; 10] = [
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "GITHUB_REPOSITORY",
    "GITHUB_REPOSITORY_OWNER_ID",
    "GITHUB_REPOSITORY_ID",
    "GITHUB_SHA",
    "GITHUB_ACTOR",
    "GITHUB_WORKFLOW",
    "GITHUB_REF_NAME",
    "GITHUB_RUN_ID",
];

/// The chain's credentials: first those [`authenticate`] got, then, each time the SDK's
/// identity cache finds the current ones about to expire, the chain again (a new OIDC
/// token, each assume), every new secret masked before use.
#[derive(Debug)]
struct Renewing {
    base: SdkConfig,
    auth: Request,
    runtime: Runtime,
    variables: std::collections::HashMap<String, String>,
    initial: std::sync::Mutex<Option<Credentials>>,
}

impl Renewing {
    async fn renew(&self) -> Result<Credentials, Error> {
        let env = |name: &str| self.variables.get(name).cloned();
        let first = match &self.auth.role_to_assume {
            Some(role) => {
                let timeout = attempt_timeout(&self.base);
                let token =
                    request_id_token(&self.auth.audience, timeout, &self.runtime, &env).await?;
                assume_web_identity(&self.base, &self.auth, role, &token, &self.runtime, &env)
                    .await?
            }
            None => default_chain(&self.base).await?,
        };
        let last = match &self.auth.cross_account {
            Some(cross) => {
                assume_cross_account(&self.base, &first, &self.auth, cross, &self.runtime, &env)
                    .await?
            }
            None => first,
        };
        last.provider
            .provide_credentials()
            .await
            .map_err(|e| Error::DefaultChain(e.to_string()))
    }
}

impl ProvideCredentials for Renewing {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            let initial = self.initial.lock().ok().and_then(|mut i| i.take());
            if let Some(credentials) = initial {
                return Ok(credentials);
            }
            tracing::info!("renewing the credentials before they expire");
            self.renew()
                .await
                .map_err(provider::error::CredentialsError::provider_error)
        })
    }
}

/// Masks a set of STS credentials and wraps them as a provider.
fn masked_provider(
    credentials: &aws_sdk_sts::types::Credentials,
    runtime: &Runtime,
) -> SharedCredentialsProvider {
    runtime.mask(credentials.access_key_id());
    runtime.mask(credentials.secret_access_key());
    runtime.mask(credentials.session_token());
    let expiry = SystemTime::try_from(*credentials.expiration()).ok();
    SharedCredentialsProvider::new(Credentials::new(
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token().to_owned()),
        expiry,
        "ecr-push",
    ))
}

/// The session tags of the cross-account hop: (key, value, optional). Optional ones are
/// dropped first when STS finds the packed tags too large.
fn session_tags(env: &impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String, bool)> {
    [
        ("Repository", "GITHUB_REPOSITORY", false),
        ("Commit", "GITHUB_SHA", false),
        ("Actor", "GITHUB_ACTOR", true),
        ("Workflow", "GITHUB_WORKFLOW", true),
        ("Branch", "GITHUB_REF_NAME", true),
        ("RunId", "GITHUB_RUN_ID", true),
    ]
    .into_iter()
    .filter_map(|(key, variable, optional)| {
        let value = tag_value(&env(variable)?);
        (!value.is_empty()).then_some((key, value, optional))
    })
    .collect()
}

/// Replaces what STS refuses in a tag value and cuts it to the allowed length.
fn tag_value(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_TAG_VALUE_CHARS)
        .collect()
}

/// `arn:aws:sts::1:assumed-role/NAME/SESSION` → `arn:aws:iam::1:role/NAME`, for messages.
fn role_of(arn: &str) -> String {
    let mut fields = arn.splitn(6, ':');
    match (fields.next(), fields.next(), fields.nth(2), fields.next()) {
        (Some("arn"), Some(partition), Some(account), Some(resource)) => {
            match resource
                .strip_prefix("assumed-role/")
                .and_then(|r| r.split('/').next())
            {
                Some(name) => format!("arn:{partition}:iam::{account}:role/{name}"),
                None => arn.to_owned(),
            }
        }
        _ => arn.to_owned(),
    }
}

/// A claim as text: a string as it is, another value (an id sent as a number, a list of
/// audiences) written as JSON.
fn claim_text(claims: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
}

/// The claims of a JWT, decoded but not verified.
pub fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_tags_are_sanitised_and_ordered_required_first() {
        let env = |name: &str| match name {
            "GITHUB_REPOSITORY" => Some("org/app".to_owned()),
            "GITHUB_SHA" => Some("abc123".to_owned()),
            "GITHUB_WORKFLOW" => Some("Build & push (prod)".to_owned()),
            "GITHUB_RUN_ID" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            session_tags(&env),
            [
                ("Repository", "org/app".to_owned(), false),
                ("Commit", "abc123".to_owned(), false),
                ("Workflow", "Build _ push _prod_".to_owned(), true),
            ]
        );
        assert_eq!(tag_value(&"x".repeat(300)).len(), MAX_TAG_VALUE_CHARS);
    }

    #[test]
    fn assumed_role_arn_names_its_role() {
        assert_eq!(
            role_of("arn:aws:sts::111111111111:assumed-role/ci/GitHubActions"),
            "arn:aws:iam::111111111111:role/ci"
        );
        assert_eq!(role_of("arn:aws:iam::1:user/me"), "arn:aws:iam::1:user/me");
    }

    #[test]
    fn token_claims_are_read_without_verifying() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"repo:org/app:ref:refs/heads/main"}"#);
        let token = format!("e30.{claims}.sig");
        assert_eq!(
            jwt_claims(&token).unwrap()["sub"],
            "repo:org/app:ref:refs/heads/main"
        );
        assert!(jwt_claims("garbage").is_none());
    }
}
