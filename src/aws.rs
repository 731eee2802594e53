//! The AWS edge shared by every client: configuration from the standard chain and
//! one-line error descriptions.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// SDK configuration from the environment: `AWS_REGION`, credentials chain,
/// `AWS_ENDPOINT_URL` (and per-service overrides).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}

/// Whether an endpoint override is set; S3 then uses path-style addressing, since
/// emulators and private endpoints rarely resolve virtual-hosted bucket names.
pub fn endpoint_overridden() -> bool {
    std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
}

pub fn s3_client(conf: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let c = aws_sdk_s3::config::Builder::from(conf)
        .force_path_style(endpoint_overridden())
        .build();
    aws_sdk_s3::Client::from_conf(c)
}

/// A one-line description of an SDK error: the service's code and message when it
/// answered, otherwise the transport problem with its causes.
pub fn error_text<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_owned(),
                _ => err.to_string(),
            }
        }
        other => {
            let mut msg = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            msg
        }
    }
}

/// The service error code, when the service answered.
pub fn error_code<E, R>(e: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match e {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}
