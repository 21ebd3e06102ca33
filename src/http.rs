//! What every HTTP caller outside the AWS SDK shares. A leaf.

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
