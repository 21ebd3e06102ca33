//! How AWS SDK errors are told to the user: the service's error code and message when
//! the service answered, the whole cause chain when it did not (no route, TLS, timeout).
//! The SDK's own `Display` says only "service error", which helps nobody.

use std::error::Error as StdError;

use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

pub fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug,
{
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => match err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                format!("no answer from the endpoint ({})", DisplayErrorContext(err))
            }
            _ => DisplayErrorContext(err).to_string(),
        },
    }
}
