//! What a scan reads: local files (directories walked), stdin, or every object
//! under an S3 prefix, listed up front, and each opened as a byte stream.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;

use crate::alert::SourceRef;
use crate::input::{self, InputSpec};

/// One thing to read.
pub(super) enum Object {
    Local(PathBuf),
    Stdin,
    S3 { bucket: String, key: String },
}

impl Object {
    /// Where record `index` of this object (called `name`) comes from, for its
    /// alerts.
    pub(super) fn source(&self, name: &str, index: u64) -> SourceRef {
        match self {
            Object::S3 { bucket, key } => SourceRef::object(bucket, key, index),
            _ => SourceRef::file(name, index),
        }
    }

    /// Whether the object may be an S3 server access log (those are named without
    /// an extension); CloudTrail files end in `.json.gz`, exports in `.json`,
    /// `.jsonl` or `.ndjson`.
    pub(super) fn may_be_access_log(&self) -> bool {
        let name = match self {
            Object::Local(p) => p.to_string_lossy().into_owned(),
            Object::Stdin => return true,
            Object::S3 { key, .. } => key.clone(),
        };
        ![
            ".json.gz",
            ".json",
            ".jsonl",
            ".ndjson",
            ".jsonl.gz",
            ".ndjson.gz",
        ]
        .iter()
        .any(|ext| name.ends_with(ext))
    }

    pub(super) fn name(&self) -> String {
        match self {
            Object::Local(p) => p.display().to_string(),
            Object::Stdin => "<stdin>".into(),
            Object::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
        }
    }
}

/// Lazily built S3 access (only when an `s3://` input is given).
pub(super) struct S3 {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

impl S3 {
    fn new() -> anyhow::Result<S3> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the async runtime for S3")?;
        let client = rt.block_on(input::s3::client());
        Ok(S3 { rt, client })
    }
}

/// Every object the inputs name, in input order, and how many CloudTrail digest
/// files were skipped; S3 access is set up only when an input needs it.
pub(super) fn list(inputs: &[InputSpec]) -> anyhow::Result<(Vec<Object>, Option<S3>, u64)> {
    let mut s3: Option<S3> = None;
    let mut objects = Vec::new();
    let mut digests = 0;
    for spec in inputs {
        match spec {
            InputSpec::Stdin => objects.push(Object::Stdin),
            InputSpec::Path(p) => {
                for f in
                    input::local_files(p).with_context(|| format!("cannot read {}", p.display()))?
                {
                    let name = f.to_string_lossy();
                    if input::is_digest(&name) {
                        tracing::debug!(file = ?name, "skipping CloudTrail digest file");
                        digests += 1;
                    } else {
                        objects.push(Object::Local(f));
                    }
                }
            }
            InputSpec::S3 { bucket, prefix } => {
                if s3.is_none() {
                    s3 = Some(S3::new()?);
                }
                let s3 = s3.as_ref().expect("just built");
                for key in s3
                    .rt
                    .block_on(input::s3::list(&s3.client, bucket, prefix))?
                {
                    if input::is_digest(&key) {
                        tracing::debug!(key = ?key, "skipping CloudTrail digest file");
                        digests += 1;
                    } else {
                        objects.push(Object::S3 {
                            bucket: bucket.clone(),
                            key,
                        });
                    }
                }
            }
        }
    }
    Ok((objects, s3, digests))
}

/// Opens an object for reading; `Err` is the message to print.
pub(super) fn open(obj: &Object, s3: Option<&S3>) -> Result<Box<dyn Read + Send>, String> {
    match obj {
        Object::Local(p) => std::fs::File::open(p)
            .map(|f| Box::new(f) as Box<dyn Read + Send>)
            .map_err(|e| format!("trailwatch: {}: {e}", obj.name())),
        Object::Stdin => Ok(Box::new(std::io::stdin())),
        Object::S3 { bucket, key } => {
            let s3 = s3.expect("built while listing");
            match s3
                .rt
                .block_on(input::s3::open(&s3.client, bucket, key, None))
            {
                Ok((body, _etag)) => Ok(Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
                    body.into_async_read(),
                    s3.rt.handle().clone(),
                ))),
                Err(e) => Err(format!("trailwatch: {e:#}")),
            }
        }
    }
}
