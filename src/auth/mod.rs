//! Credentials for the push: the job's GitHub OIDC token exchanged with STS
//! AssumeRoleWithWebIdentity for `role-to-assume`, then optionally AssumeRole into a
//! second role (role chaining, typically into the account that owns the registry).
//! Without `role-to-assume` the default AWS credential chain is used, so the same binary
//! works on a laptop.
//!
//! Every secret is masked the moment it exists. The web-identity call is made on a
//! client with no credentials at all, so the default chain (and its instance-metadata
//! probe) is never touched on the keyless path.
//!
//! One file per hop, by what it talks to: `oidc` (the Actions runtime's token service),
//! `web_identity` (STS AssumeRoleWithWebIdentity) and `cross_account` (STS AssumeRole
//! into a second role). This file runs them in order, asks the default chain and STS
//! GetCallerIdentity when there is no role, and runs the chain again when its
//! credentials are about to expire.

mod cross_account;
mod oidc;
mod web_identity;

use std::time::{Duration, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{self, ProvideCredentials};
use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_sts::error::ProvideErrorMetadata;
use base64::Engine as _;

use crate::actions::Runtime;
use crate::names::account_of_arn;
use crate::sdk::describe;
use cross_account::assume_cross_account;
use oidc::request_id_token;
use web_identity::assume_web_identity;

const STS_ATTEMPTS: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One attempt of one call (a layer part gets more, by its size: see
/// push/ecr/layers.rs); past it the SDK retries, so a stalled connection cannot hang
/// the job.
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
#[derive(Clone, Debug)]
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
        Renewing::provider(&base, auth.clone(), None, &last, runtime, env).await
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
    // The ARN names the account, the default registry: an answer without one would
    // push to a registry with no id.
    let arn = identity
        .arn()
        .filter(|arn| !arn.is_empty())
        .ok_or_else(|| Error::CallerIdentity {
            reason: "the answer has no Arn".into(),
            hint: String::new(),
        })?
        .to_owned();
    tracing::info!(
        "default credential chain: {arn}, in account {}",
        identity.account().unwrap_or("?")
    );
    Ok(Hop { provider, arn })
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
/// token, each assume), every new secret masked before use. A chain that starts `from`
/// a session of the step ([`chain`]) runs only its own hop again, with that session's
/// credentials, which renew themselves.
#[derive(Debug)]
struct Renewing {
    base: SdkConfig,
    auth: Request,
    from: Option<Hop>,
    runtime: Runtime,
    variables: std::collections::HashMap<String, String>,
    held: Held,
}

impl Renewing {
    /// The renewing provider of a chain whose credentials are `last` now.
    async fn provider(
        base: &SdkConfig,
        auth: Request,
        from: Option<Hop>,
        last: &Hop,
        runtime: &Runtime,
        env: &impl Fn(&str) -> Option<String>,
    ) -> SharedCredentialsProvider {
        let initial = last.provider.provide_credentials().await.ok();
        SharedCredentialsProvider::new(Self {
            base: base.clone(),
            auth,
            from,
            runtime: runtime.clone(),
            variables: RENEWAL_VARIABLES
                .iter()
                .filter_map(|name| Some(((*name).to_owned(), env(name)?)))
                .collect(),
            held: Held::new(initial),
        })
    }

    async fn renew(&self) -> Result<Credentials, Error> {
        let env = |name: &str| self.variables.get(name).cloned();
        let first = match (&self.from, &self.auth.role_to_assume) {
            (Some(from), _) => from.clone(),
            (None, Some(role)) => {
                let timeout = attempt_timeout(&self.base);
                let token =
                    request_id_token(&self.auth.audience, timeout, &self.runtime, &env).await?;
                assume_web_identity(&self.base, &self.auth, role, &token, &self.runtime, &env)
                    .await?
            }
            (None, None) => default_chain(&self.base).await?,
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
            if let Some(credentials) = self.held.fresh() {
                return Ok(credentials);
            }
            match (&self.from, &self.auth.cross_account) {
                (Some(_), Some(cross)) => tracing::info!(
                    "renewing the credentials of {} before they expire",
                    cross.role
                ),
                _ => tracing::info!("renewing the credentials before they expire"),
            }
            let credentials = self
                .renew()
                .await
                .map_err(provider::error::CredentialsError::provider_error)?;
            self.held.keep(&credentials);
            Ok(credentials)
        })
    }
}

/// A session in a second role, assumed with `first`'s credentials (which renew
/// themselves): one of several targets' roles, chained from the one OIDC exchange of
/// the step. It runs the hop again, and only the hop, shortly before it expires.
pub async fn chain(
    first: &Session,
    auth: &Request,
    cross: &CrossAccount,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Session, Error> {
    let provider = first
        .config
        .credentials_provider()
        .ok_or(Error::NoCredentials)?;
    let from = Hop {
        provider: provider.clone(),
        arn: first.principal.clone(),
    };
    let last = assume_cross_account(&first.config, &from, auth, cross, runtime, env).await?;
    let chained = Request {
        cross_account: Some(cross.clone()),
        ..auth.clone()
    };
    let provider =
        Renewing::provider(&first.config, chained, Some(from), &last, runtime, env).await;
    Ok(Session {
        config: first
            .config
            .to_builder()
            .credentials_provider(provider)
            .build(),
        account: account_of_arn(&last.arn).unwrap_or_default().to_owned(),
        region: first.region.clone(),
        principal: last.arn,
    })
}

/// The credentials a renewing provider got last, handed out again while more than half
/// their life is left: every SDK client of the step (each target has four) asks its
/// provider once, and only the ask near the end of their life runs the chain again.
#[derive(Debug)]
struct Held(std::sync::Mutex<Option<(Credentials, SystemTime)>>);

impl Held {
    fn new(credentials: Option<Credentials>) -> Self {
        Self(std::sync::Mutex::new(
            credentials.map(|c| (c, SystemTime::now())),
        ))
    }

    fn keep(&self, credentials: &Credentials) {
        if let Ok(mut held) = self.0.lock() {
            *held = Some((credentials.clone(), SystemTime::now()));
        }
    }

    /// The credentials held, while more than half their life is left.
    fn fresh(&self) -> Option<Credentials> {
        let held = self.0.lock().ok()?;
        let (credentials, obtained) = held.as_ref()?;
        let now = SystemTime::now();
        let Some(expiry) = credentials.expiry() else {
            return Some(credentials.clone());
        };
        let life = expiry.duration_since(*obtained).ok()?;
        let left = expiry.duration_since(now).ok()?;
        (left > life / 2).then(|| credentials.clone())
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

    #[tokio::test]
    async fn a_caller_identity_without_an_arn_fails_naming_the_call() {
        let base = crate::sdk::answering(
            "<GetCallerIdentityResponse><GetCallerIdentityResult><Account>111111111111</Account></GetCallerIdentityResult></GetCallerIdentityResponse>",
        );
        let err = default_chain(&base).await.err().unwrap();
        assert_eq!(
            err.to_string(),
            "STS GetCallerIdentity: the answer has no Arn"
        );
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
