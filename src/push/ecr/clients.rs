//! The SDK clients a push talks to ECR through, and the pacing of its write calls.
//!
//! ECR's request quotas are per account and region, one per group of actions, and
//! shared by every job of the account. So there is one client per group, each retrying
//! in a partition of its own (the token bucket that caps retries): throttled parts do
//! not use up PutImage's retries. Each write action also has its own [`Pace`] (AIMD, in
//! `push/pace.rs`), which decides how many of its calls are in flight at once. All the
//! clients call the endpoint variant (FIPS, dual-stack) the registry's host asks for.

use std::sync::Arc;

use aws_sdk_ecr::config::retry::{RetryConfig, RetryPartition, TokenBucket};

use crate::calls::Calls;
use crate::ecr_host::EcrHost;
use crate::push::pace::{MAX_ATTEMPTS, MAX_BACKOFF, Pace};
use crate::sdk::Endpoint;

/// The retry partition of the calls outside the write quotas; a registry login, the
/// destination's or a source's, retries in it too.
const OTHER_CALLS: &str = "ecr-push-other";

pub struct Clients {
    /// BatchCheckLayerAvailability, CreateRepository, GetAuthorizationToken.
    pub other: aws_sdk_ecr::Client,
    /// UploadLayerPart (500 requests a second per account and region).
    pub parts: aws_sdk_ecr::Client,
    /// InitiateLayerUpload and CompleteLayerUpload (100 a second).
    pub uploads: aws_sdk_ecr::Client,
    /// PutImage (10 a second) and BatchGetImage.
    pub images: aws_sdk_ecr::Client,
    /// Every attempt of every client, by action.
    pub calls: Calls,
}

impl Clients {
    /// `endpoint` records where the calls go, for a call that got no answer.
    pub fn new(
        config: &aws_config::SdkConfig,
        host: &EcrHost,
        environment: Environment,
        endpoint: &Endpoint,
    ) -> Self {
        let calls = Calls::default();
        let client_for = |quota: &'static str, paced: bool| {
            let mut builder = config_for(config, host, environment.endpoint_overridden, quota);
            if paced && environment.paced {
                // The pace waits throttles out (push/pace.rs); the SDK's retry budget,
                // 5 of 500 tokens per throttled retry and never given back, would end
                // that after about 100 of them. Other errors keep its costs.
                let budget = TokenBucket::builder().throttling_retry_cost(0).build();
                builder = builder
                    .retry_partition(RetryPartition::custom(quota).token_bucket(budget).build());
            }
            aws_sdk_ecr::Client::from_conf(
                builder
                    .interceptor(calls.clone())
                    .interceptor(endpoint.clone())
                    .build(),
            )
        };
        Self {
            other: client_for(OTHER_CALLS, false),
            parts: client_for("ecr-push-upload-layer-part", true),
            uploads: client_for("ecr-push-initiate-complete", true),
            images: client_for("ecr-push-images", true),
            calls,
        }
    }
}

/// The one client a source's registry login needs (GetAuthorizationToken), configured
/// as a destination's own login client is.
pub fn login_client(
    config: &aws_config::SdkConfig,
    host: &EcrHost,
    endpoint_overridden: bool,
    endpoint: &Endpoint,
) -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::from_conf(
        config_for(config, host, endpoint_overridden, OTHER_CALLS)
            .interceptor(endpoint.clone())
            .build(),
    )
}

/// ECR's client config for the group of actions that share the quota `quota`: the
/// host's endpoint variant, the retries, and the group's own retry partition. The SDK's
/// adaptive retry mode was tried and dropped: after two throttles its client-side
/// limiter held a 4-blob push for 29 s instead of 1.7 s.
fn config_for(
    config: &aws_config::SdkConfig,
    host: &EcrHost,
    endpoint_overridden: bool,
    quota: &'static str,
) -> aws_sdk_ecr::config::Builder {
    let (fips, dual_stack) = endpoint_variant(host, endpoint_overridden);
    // The registry's region, which for one of several targets is not the session's.
    let mut builder = aws_sdk_ecr::config::Builder::from(config)
        .region(aws_sdk_ecr::config::Region::new(host.region.clone()));
    if fips {
        builder = builder.use_fips(true);
    }
    if dual_stack {
        builder = builder.use_dual_stack(true);
    }
    builder
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_max_backoff(MAX_BACKOFF),
        )
        .retry_partition(RetryPartition::new(quota))
}

/// How many calls of each write action may be in flight at once.
pub struct Paces {
    pub initiate: Arc<Pace>,
    pub part: Arc<Pace>,
    pub complete: Arc<Pace>,
    pub put: Arc<Pace>,
}

impl Paces {
    /// Each layer-upload action starts at the push's `concurrency`, each knowing ECR's
    /// default quota for it (calls a second per account and region, from the ECR user
    /// guide's "Amazon ECR service quotas"). `on`: false to measure without the pace.
    pub fn new(concurrency: usize, on: bool) -> Self {
        Self {
            initiate: Pace::new("InitiateLayerUpload", concurrency, 100, on),
            part: Pace::new("UploadLayerPart", concurrency, 500, on),
            complete: Pace::new("CompleteLayerUpload", concurrency, 100, on),
            // Tags are written one after another.
            put: Pace::new("PutImage", 1, 10, on),
        }
    }

    /// The throttled calls so far, by action, of the actions throttled at all.
    pub fn throttled(&self) -> Vec<(String, u64)> {
        [&self.initiate, &self.part, &self.complete, &self.put]
            .into_iter()
            .map(|pace| (pace.action().to_owned(), pace.throttles()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// The endpoint variant (FIPS, dual-stack) of ECR's API that a registry host asks for:
/// a FIPS host's calls go to ECR's FIPS endpoint, a dual-stack host's to its dual-stack
/// one, unless an endpoint URL is configured. `AWS_USE_FIPS_ENDPOINT` and
/// `AWS_USE_DUALSTACK_ENDPOINT` still turn either on for any host, as in every SDK.
fn endpoint_variant(host: &EcrHost, endpoint_overridden: bool) -> (bool, bool) {
    if endpoint_overridden {
        (false, false)
    } else {
        (host.fips, host.dual_stack)
    }
}

/// What the environment says of the calls to ECR's API.
#[derive(Clone, Copy, Debug)]
pub struct Environment {
    /// An endpoint URL is configured (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_ECR`),
    /// which the SDK refuses to combine with the FIPS or dual-stack variant a host asks
    /// for; the configured URL then wins.
    pub endpoint_overridden: bool,
    /// The write calls are paced: always, but for `ECR_PUSH_PACE=off`, which
    /// `scripts/bench quota` sets to measure the pace against its absence.
    pub paced: bool,
}

impl Environment {
    pub fn read(env: &impl Fn(&str) -> Option<String>) -> Self {
        Self {
            endpoint_overridden: endpoint_overridden(env),
            paced: !env("ECR_PUSH_PACE").is_some_and(|v| v.trim().eq_ignore_ascii_case("off")),
        }
    }
}

/// Whether an endpoint URL for ECR is configured in the environment, as the SDK reads it.
fn endpoint_overridden(env: &impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let ignored =
        env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    !ignored && (set("AWS_ENDPOINT_URL_ECR") || set("AWS_ENDPOINT_URL"))
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecr::config::endpoint::{Params, ResolveEndpoint};

    use super::*;

    /// Which endpoint ECR's own resolver picks for each host form, without an endpoint
    /// override: what a real run talks to. With an override the host form is set aside.
    #[test]
    fn the_api_endpoint_follows_the_host() {
        let resolve = |host: &str, overridden: bool| {
            let host = EcrHost::parse(host).unwrap();
            let (fips, dual_stack) = endpoint_variant(&host, overridden);
            let params = Params::builder()
                .region(host.region.clone())
                .use_fips(fips)
                .use_dual_stack(dual_stack)
                .build()
                .unwrap();
            let resolver = aws_sdk_ecr::config::endpoint::DefaultResolver::new();
            let endpoint = resolver.resolve_endpoint(&params);
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(endpoint)
                .unwrap()
                .url()
                .to_owned()
        };
        let cases = [
            (
                "111111111111.dkr.ecr.us-east-1.amazonaws.com",
                "https://api.ecr.us-east-1.amazonaws.com",
            ),
            (
                "111111111111.dkr.ecr-fips.us-east-1.amazonaws.com",
                "https://api.ecr-fips.us-east-1.amazonaws.com",
            ),
            (
                "111111111111.dkr-ecr.us-east-1.on.aws",
                "https://ecr.us-east-1.api.aws",
            ),
            (
                "111111111111.dkr-ecr-fips.us-east-1.on.aws",
                "https://ecr-fips.us-east-1.api.aws",
            ),
            (
                "111111111111.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "https://api.ecr.cn-north-1.amazonaws.com.cn",
            ),
        ];
        for (host, endpoint) in cases {
            assert_eq!(resolve(host, false), endpoint, "{host}");
        }
        assert_eq!(
            resolve("111111111111.dkr.ecr-fips.us-east-1.amazonaws.com", true),
            "https://api.ecr.us-east-1.amazonaws.com",
            "an endpoint override sets the variant aside"
        );
    }
}
