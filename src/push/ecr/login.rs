//! ECR's registry login, GetAuthorizationToken: the destination's own (for
//! `docker-login` and `transport: registry`), and a `docker://` source's on another ECR
//! registry.
//!
//! The token opens every registry the identity may read (its `registryIds` is
//! deprecated), so only the region matters. Each secret is masked before it is kept.

use aws_sdk_ecr::error::ProvideErrorMetadata;
use base64::Engine as _;

use super::Ecr;
use crate::ecr_host::EcrHost;
use crate::push::Error;

impl Ecr {
    /// A Docker login for the registry: base64 of `AWS:PASSWORD`, as Docker's
    /// config.json stores it. `mask` is called on each secret before it is kept anywhere.
    pub async fn login(&self, mask: impl Fn(&str)) -> Result<String, Error> {
        let output = self
            .clients
            .other
            .get_authorization_token()
            .send()
            .await
            .map_err(|err| {
                self.target
                    .api_error("GetAuthorizationToken", &err, err.code())
            })?;
        let auth = output
            .authorization_data()
            .first()
            .and_then(|d| d.authorization_token())
            .unwrap_or_default()
            .to_owned();
        mask(&auth);
        let Some(password) = Self::password(&auth) else {
            return Err(Error::Api {
                call: "GetAuthorizationToken",
                target: format!("registry {}", self.target.registry_id),
                reason: "the token is not base64 of USER:PASSWORD".into(),
                hint: String::new(),
            });
        };
        mask(&password);
        Ok(auth)
    }

    /// The login for reading a `docker://` source on another ECR registry (of `account`,
    /// in `region`) with the session's credentials. The token GetAuthorizationToken gives
    /// opens every registry the identity may read (its `registryIds` is deprecated), so
    /// only the region matters. `mask` is called on each secret before it is kept.
    pub async fn source_login(
        session: &crate::auth::Session,
        host: EcrHost,
        endpoint_overridden: bool,
        mask: impl Fn(&str),
    ) -> Result<crate::docker_config::Login, Error> {
        let config = session
            .config
            .to_builder()
            .region(aws_config::Region::new(host.region.clone()))
            .build();
        let source = Self::new(
            &config,
            host,
            endpoint_overridden,
            String::new(),
            false,
            session.principal.clone(),
            1,
        );
        let auth = source.login(mask).await?;
        Ok(crate::docker_config::Login {
            username: "AWS".to_owned(),
            password: Self::password(&auth).unwrap_or_default(),
        })
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
