//! How AWS SDK errors are told to the user: the service's error code and message when
//! the service answered with one, the HTTP status when it answered with something the
//! SDK could not read, the cause chain when there was no answer (no route, TLS, timeout).
//!
//! Never the raw response: the SDK's `DisplayErrorContext` appends the response's Debug
//! form, body included, and an STS answer that failed to parse carries credentials that
//! are not masked yet.

use std::error::Error as StdError;

use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};

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
