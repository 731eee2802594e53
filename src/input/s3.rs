//! The S3 edge: listing a prefix and opening an object as a stream. Credentials,
//! region and endpoint come from the standard AWS chain (`AWS_ENDPOINT_URL` included).

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

/// Builds an S3 client from the environment (see [`crate::aws`]).
pub async fn client() -> Client {
    crate::aws::s3_client(&crate::aws::sdk_config().await)
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
        let page = page.map_err(|e| {
            anyhow::anyhow!(
                "listing s3://{bucket}/{prefix}: {}",
                crate::aws::error_text(&e)
            )
        })?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    keys.sort();
    Ok(keys)
}

/// Why an object could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("fetching s3://{bucket}/{key}: {message}")]
pub struct FetchError {
    pub bucket: String,
    pub key: String,
    pub message: String,
    /// The object does not exist (`NoSuchKey`).
    pub not_found: bool,
}

/// Opens `s3://bucket/key` for streaming; returns the body and its ETag (without
/// quotes). With `expected_owner`, S3 refuses the object unless that account owns
/// the bucket (a bucket deleted and recreated by someone else is not read).
pub async fn open(
    client: &Client,
    bucket: &str,
    key: &str,
    expected_owner: Option<&str>,
) -> Result<(ByteStream, Option<String>), FetchError> {
    let get = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_expected_bucket_owner(expected_owner.map(str::to_owned));
    match get.send().await {
        Ok(out) => {
            let etag = out.e_tag().map(|e| e.trim_matches('"').to_owned());
            Ok((out.body, etag))
        }
        Err(e) => Err(FetchError {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            not_found: crate::aws::error_code(&e) == Some("NoSuchKey")
                || e.as_service_error().is_some_and(|s| s.is_no_such_key()),
            message: crate::aws::error_text(&e),
        }),
    }
}
