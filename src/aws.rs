//! The AWS edge shared by every client: configuration from the standard chain and
//! one-line error descriptions.

use aws_sdk_s3::config::http::HttpResponse;
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
pub fn error_text<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_owned(),
                // An answer the SDK could not read (a proxy's or an emulator's error
                // page): its status and the start of its body say more than
                // "unhandled error" alone.
                _ => {
                    let raw = se.raw();
                    let body = raw.body().bytes().unwrap_or_default();
                    let start = String::from_utf8_lossy(&body[..body.len().min(200)]);
                    let start = start.split_whitespace().collect::<Vec<_>>().join(" ");
                    match start.is_empty() {
                        true => format!("{err} (HTTP {})", raw.status().as_u16()),
                        false => format!("{err} (HTTP {}: {start})", raw.status().as_u16()),
                    }
                }
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

/// Consecutive runs of entries (by weight) for the SDK's batch calls (SNS
/// `PublishBatch`, SQS `SendMessageBatch`): at most `max_entries` entries and
/// `max_bytes` of weight each; an entry that weighs more goes alone (the service
/// then says why it was refused).
pub fn batches(
    weights: &[usize],
    max_entries: usize,
    max_bytes: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &w) in weights.iter().enumerate() {
        if i > start && (i - start == max_entries || bytes + w > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += w;
    }
    if start < weights.len() {
        out.push(start..weights.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::primitives::SdkBody;
    use aws_sdk_sns::error::ErrorMetadata;
    use aws_sdk_sns::operation::publish_batch::PublishBatchError;

    fn service_error(err: ErrorMetadata, status: u16, body: &str) -> String {
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body));
        error_text(&SdkError::service_error(
            PublishBatchError::generic(err),
            raw,
        ))
    }

    /// The service's code and message when the SDK read them; else the status and
    /// the start of what came back, on one line.
    #[test]
    fn service_errors_say_what_came_back() {
        let coded = ErrorMetadata::builder()
            .code("Throttling")
            .message("Rate exceeded")
            .build();
        assert_eq!(service_error(coded, 400, ""), "Throttling: Rate exceeded");
        let unread = service_error(
            ErrorMetadata::builder().build(),
            403,
            "<ErrorResponse>\n  <Errors><Error><Code>AccessDenied</Code>",
        );
        assert!(
            unread
                .ends_with("(HTTP 403: <ErrorResponse> <Errors><Error><Code>AccessDenied</Code>)"),
            "{unread}"
        );
        let empty = service_error(ErrorMetadata::builder().build(), 502, "");
        assert!(empty.ends_with("(HTTP 502)"), "{empty}");
    }
}
