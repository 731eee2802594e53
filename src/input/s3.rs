//! The S3 edge: listing a prefix and opening an object as a stream. Credentials,
//! region and endpoint come from the standard AWS chain (`AWS_ENDPOINT_URL` included).

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

/// Builds an S3 client from the environment. Path-style addressing is used when an
/// endpoint override is set, since emulators and private endpoints rarely resolve
/// virtual-hosted bucket names.
pub async fn client() -> Client {
    let shared = aws_config::load_from_env().await;
    let custom_endpoint = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(custom_endpoint)
        .build();
    Client::from_conf(conf)
}

/// Every key under `prefix`, sorted (S3 lists in UTF-8 binary order already; the
/// sort makes the order explicit).
pub async fn list(client: &Client, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| anyhow::anyhow!("listing s3://{bucket}/{prefix}: {}", aws_error(&e)))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    keys.sort();
    Ok(keys)
}

/// Opens `s3://bucket/key` for streaming; returns the body and its ETag.
pub async fn open(
    client: &Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<(ByteStream, Option<String>)> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("fetching s3://{bucket}/{key}: {}", aws_error(&e)))?;
    let etag = out.e_tag().map(str::to_owned);
    Ok((out.body, etag))
}

/// A one-line description of an SDK error: the service's code and message when it
/// answered, otherwise the transport problem.
pub fn aws_error<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
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
