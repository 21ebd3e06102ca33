//! ECR's registry login, GetAuthorizationToken: the destination's own (for
//! `docker-login` and `transport: registry`), and a `docker://` source's on another ECR
//! registry, which needs a client and nothing else of a destination.
//!
//! The token opens every registry the identity may read (its `registryIds` is
//! deprecated), so only the region matters. Each secret is masked before it is kept.

use aws_sdk_ecr::error::ProvideErrorMetadata;
use base64::Engine as _;

use super::clients::login_client;
use super::{Ecr, Target};
use crate::ecr_host::EcrHost;
use crate::push::Error;

const CALL: &str = "GetAuthorizationToken";

/// The login for reading a `docker://` source on the ECR registry `host` with the
/// session's `config`, as `principal` (named when it is refused). `mask` is called on
/// each secret before it is kept.
pub async fn source_login(
    config: &aws_config::SdkConfig,
    host: &EcrHost,
    endpoint_overridden: bool,
    principal: &str,
    mask: impl Fn(&str),
) -> Result<crate::docker_config::Login, Error> {
    let config = config
        .to_builder()
        .region(aws_config::Region::new(host.region.clone()))
        .build();
    // A login acts on no repository.
    let target = Target::new(host, String::new(), principal.to_owned());
    let client = login_client(&config, host, endpoint_overridden, &target.endpoint);
    let token = authorization_token(&client, &target, mask).await?;
    Ok(crate::docker_config::Login {
        username: "AWS".to_owned(),
        password: token.password,
    })
}

impl Ecr {
    /// A Docker login for the registry: base64 of `AWS:PASSWORD`, as Docker's
    /// config.json stores it. `mask` is called on each secret before it is kept anywhere.
    pub async fn login(&self, mask: impl Fn(&str)) -> Result<String, Error> {
        let token = authorization_token(&self.clients.other, &self.target, mask).await?;
        Ok(token.auth)
    }

    /// The password in a login from [`Ecr::login`].
    pub fn password(auth: &str) -> Option<String> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        decoded.split_once(':').map(|(_, p)| p.to_owned())
    }
}

/// A token from GetAuthorizationToken, both masked.
struct Token {
    /// Base64 of `AWS:PASSWORD`.
    auth: String,
    password: String,
}

async fn authorization_token(
    client: &aws_sdk_ecr::Client,
    target: &Target,
    mask: impl Fn(&str),
) -> Result<Token, Error> {
    let output = client
        .get_authorization_token()
        .send()
        .await
        .map_err(|err| target.api_error(CALL, &err, err.code()))?;
    let unusable = |reason: &str| Error::Api {
        call: CALL,
        target: format!("registry {}", target.registry_id),
        reason: reason.into(),
        hint: String::new(),
    };
    let auth = output
        .authorization_data()
        .first()
        .and_then(|d| d.authorization_token())
        .ok_or_else(|| unusable("the answer has no authorizationToken"))?
        .to_owned();
    mask(&auth);
    let Some(password) = Ecr::password(&auth) else {
        return Err(unusable("the token is not base64 of USER:PASSWORD"));
    };
    mask(&password);
    Ok(Token { auth, password })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::answering;

    const PRINCIPAL: &str = "arn:aws:sts::111111111111:assumed-role/ci/run";

    #[tokio::test]
    async fn a_source_login_is_the_password_of_the_token_and_masks_both() {
        let host = EcrHost::standard("222222222222", "eu-west-1");
        // base64 of `AWS:secret`.
        let config =
            answering(r#"{"authorizationData":[{"authorizationToken":"QVdTOnNlY3JldA=="}]}"#);
        let masked = std::sync::Mutex::new(Vec::new());
        let login = source_login(&config, &host, false, PRINCIPAL, |s| {
            masked.lock().unwrap().push(s.to_owned())
        })
        .await
        .unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("AWS", "secret")
        );
        assert_eq!(*masked.lock().unwrap(), ["QVdTOnNlY3JldA==", "secret"]);
    }

    #[tokio::test]
    async fn a_login_without_a_token_fails_naming_the_call() {
        let host = EcrHost::standard("222222222222", "eu-west-1");
        let err = source_login(
            &answering(r#"{"authorizationData":[]}"#),
            &host,
            false,
            PRINCIPAL,
            |_| {},
        )
        .await
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "ECR GetAuthorizationToken failed for registry 222222222222: the answer has no authorizationToken"
        );
    }
}
