//! How AWS SDK errors are told to the user: the service's error code and message when
//! the service answered with one, the HTTP status when it answered with something the
//! SDK could not read, the cause chain when there was no answer (no route, TLS, timeout).
//!
//! Never the raw response: the SDK's `DisplayErrorContext` appends the response's Debug
//! form, body included, and an STS answer that failed to parse carries credentials that
//! are not masked yet.

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};

use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_ecr::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::box_error::BoxError;

/// Remembers where a client's requests go (scheme, host and port of the endpoint the
/// SDK resolved), so that "no answer" can say from where.
#[derive(Debug, Clone, Default)]
pub struct Endpoint(Arc<Mutex<Option<String>>>);

impl Endpoint {
    /// The endpoint of the last request sent, or `None` before the first.
    pub fn last(&self) -> Option<String> {
        self.0.lock().ok().and_then(|e| e.clone())
    }
}

impl Intercept for Endpoint {
    fn name(&self) -> &'static str {
        "ecr-push endpoint recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let uri = context.request().uri();
        // The origin only: the path and query say nothing here.
        let origin = match uri.find("://") {
            Some(scheme) => match uri[scheme + 3..].find('/') {
                Some(path) => &uri[..scheme + 3 + path],
                None => uri,
            },
            None => uri,
        };
        if let Ok(mut last) = self.0.lock() {
            *last = Some(origin.to_owned());
        }
        Ok(())
    }
}

/// [`describe`], naming the endpoint when there was no answer from it.
pub fn describe_at<E>(err: &SdkError<E, HttpResponse>, endpoint: &Endpoint) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match (err, endpoint.last()) {
        (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), Some(url))
            if err.code().is_none() =>
        {
            format!("no answer from {url}: {}", causes(err))
        }
        _ => describe(err),
    }
}

pub fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => match err {
            SdkError::ServiceError(context) => format!(
                "HTTP {} with no error code in the answer",
                context.raw().status().as_u16()
            ),
            SdkError::ResponseError(context) => format!(
                "an answer that could not be read (HTTP {})",
                context.raw().status().as_u16()
            ),
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                format!("no answer from the endpoint: {}", causes(err))
            }
            _ => causes(err),
        },
    }
}

/// The last error in the chain of sources: outer layers of HTTP clients say only
/// "client error" or "error sending request".
pub fn innermost(err: &dyn StdError) -> String {
    let mut source = err;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// The error and its sources, each once, as one line.
fn causes(err: &dyn StdError) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// An SDK config whose every call is answered 200 with `body` (the service's JSON or
/// XML): for the answers real AWS never gives, which moto cannot be made to give either.
#[cfg(test)]
pub fn answering(body: &'static str) -> aws_config::SdkConfig {
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_smithy_runtime_api::client::http::{
        HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;

    #[derive(Debug)]
    struct Answer(&'static str);
    impl HttpConnector for Answer {
        fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
            HttpConnectorFuture::ready(Ok(aws_smithy_runtime_api::http::Response::new(
                200.try_into().unwrap(),
                aws_smithy_types::body::SdkBody::from(self.0),
            )))
        }
    }
    let connector = SharedHttpConnector::new(Answer(body));
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        )))
        .http_client(http_client_fn(move |_, _| connector.clone()))
        .build()
}
