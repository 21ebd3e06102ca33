//! What every HTTP caller outside the AWS SDK shares (the OIDC token request, the
//! registry client for sources and destinations): one way to build a client, with the
//! timeouts in one place, and one retry rule ([`retry`]). A leaf.

pub mod retry;

use std::time::Duration;

/// A connection not made in this long is given up on (and retried, by [`retry`]).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A peer that sends nothing for this long, on one read of an answer or of a streamed
/// body, is given up on: long enough for a registry that verifies a large blob before it
/// answers the request that closes its upload.
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// A client with the timeouts above; `whole_request` bounds each attempt as a whole
/// too, for small requests that must not wait out [`READ_TIMEOUT`].
pub fn client(whole_request: Option<Duration>) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT);
    match whole_request {
        Some(timeout) => builder.timeout(timeout),
        None => builder,
    }
    .build()
}

/// `localhost`, `127.x.x.x` and `[::1]`, with or without a port: registries spoken to
/// over plain HTTP, as Docker does.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
