//! Detection state in one DynamoDB table, shared by every worker of a fleet.
//!
//! The table has a partition key `pk` and a sort key `sk` (both strings) and a TTL
//! attribute `expires_at` (epoch seconds), set to the write time plus the
//! retention on every write: state lives while files of its windows may still
//! come, whatever their event time (a backfill of last year's logs keeps its state
//! as long as a live run would). Items, by the prefix of `pk`:
//!
//! - `w#` a threshold window (the SHA-256 of its [`Gate::text`]): the string set
//!   `m` of its members, never grown past the count (a conditional `ADD`). Adding
//!   a set is idempotent, so a file processed twice counts once, and the set's
//!   size does not depend on which worker added what first.
//! - `c#` a claim: which file emits a gate's alert (`by`), written once by a
//!   conditional put; the same file may claim again (a repeat after a crash).
//! - `j#` the DeleteObjects join, per request ID: `sk = a#<alert id>` holds an
//!   alert waiting for keys, `sk = k#<file>` one file's key lines for it.
//! - `o#` an object read to its end with its alerts delivered.
//!
//! Requests grow with the windows, claims and requests a file touches, never
//! with its events; they are sent concurrently. Calls block the calling thread
//! (files are evaluated on blocking threads) on the worker's runtime. A failure
//! (throttling past the SDK's retries, an outage) is a [`StoreError`]: the
//! file's message is kept and the file retried, and nothing counted twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use sha2::{Digest, Sha256};

use super::{JoinFile, ObjectId, State};
use crate::alert::{Alert, DeletedKey};
use crate::engine::windows::{Claim, Gate, StoreError, WindowAdd, WindowStore};
use crate::join::with_keys;

/// Requests in flight at once for one file.
const CONCURRENCY: usize = 16;

/// The largest alert kept whole for the join (DynamoDB items hold 400 KB).
const MAX_ALERT_ITEM: usize = 300 * 1024;

/// The table, from any thread.
#[derive(Clone)]
pub struct Table {
    client: Client,
    name: String,
    retention_secs: i64,
    rt: tokio::runtime::Handle,
    usage: std::sync::Arc<Usage>,
}

/// What the table was asked, for the cost figures: requests, and the request
/// units DynamoDB bills for them, worked out from the items' sizes as DynamoDB
/// does (a write unit per KB written, conditional failures included; a read unit
/// per 4 KB read strongly consistent). Worked out here rather than read from
/// `ConsumedCapacity`, which emulators report differently.
#[derive(Debug, Default)]
pub struct Usage {
    reads: AtomicU64,
    writes: AtomicU64,
    /// In thousandths of a unit.
    read_units: AtomicU64,
    write_units: AtomicU64,
}

/// A snapshot of [`Usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageSnapshot {
    pub reads: u64,
    pub writes: u64,
    pub read_units: f64,
    pub write_units: f64,
}

impl Usage {
    fn count(&self, write: bool, units: f64) {
        let milli = (units * 1000.0).round() as u64;
        let (n, u) = match write {
            true => (&self.writes, &self.write_units),
            false => (&self.reads, &self.read_units),
        };
        n.fetch_add(1, Ordering::Relaxed);
        u.fetch_add(milli, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> UsageSnapshot {
        UsageSnapshot {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            read_units: self.read_units.load(Ordering::Relaxed) as f64 / 1000.0,
            write_units: self.write_units.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

/// An item's size as DynamoDB counts it: attribute names plus values.
fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                    AttributeValue::Ss(ss) => ss.iter().map(String::len).sum(),
                    _ => 8,
                }
        })
        .sum()
}

/// Write units for an item of `bytes`.
fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

/// Read units for `bytes` read strongly consistent.
fn read_units(bytes: usize) -> f64 {
    bytes.div_ceil(4096).max(1) as f64
}

fn hash(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn err<E>(what: &str, e: &aws_sdk_dynamodb::error::SdkError<E, HttpResponse>) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    StoreError(format!("DynamoDB {what}: {}", crate::aws::error_text(e)))
}

fn conditional_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    crate::aws::error_code(e) == Some("ConditionalCheckFailedException")
}

impl Table {
    /// The table `name`, used from the runtime `rt` (the caller's).
    pub fn new(client: Client, name: &str, retention: std::time::Duration) -> Table {
        Table {
            client,
            name: name.to_owned(),
            retention_secs: retention.as_secs() as i64,
            rt: tokio::runtime::Handle::current(),
            usage: Default::default(),
        }
    }

    /// What this table was asked so far.
    pub fn usage(&self) -> UsageSnapshot {
        self.usage.snapshot()
    }

    fn expires_at(&self) -> AttributeValue {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        AttributeValue::N((now + self.retention_secs).to_string())
    }

    fn key(pk: String, sk: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
    }

    /// Runs `futs` with at most [`CONCURRENCY`] in flight; results in order.
    fn all<T, F>(&self, futs: Vec<F>) -> Vec<T>
    where
        F: std::future::Future<Output = T>,
    {
        self.rt.block_on(async {
            let mut out = Vec::with_capacity(futs.len());
            let mut futs = futs.into_iter();
            loop {
                let chunk: Vec<F> = futs.by_ref().take(CONCURRENCY).collect();
                if chunk.is_empty() {
                    return out;
                }
                out.extend(join_all(chunk).await);
            }
        })
    }

    async fn add_one(&self, a: &WindowAdd) -> Result<bool, StoreError> {
        let members: Vec<String> = a.members.iter().map(|m| format!("{m:032x}")).collect();
        let r = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(Table::key(format!("w#{}", hash(&a.gate.text())), "w")))
            .update_expression("ADD m :m SET expires_at = :t")
            .condition_expression("attribute_not_exists(m) OR size(m) < :c")
            .expression_attribute_values(":m", AttributeValue::Ss(members))
            .expression_attribute_values(":t", self.expires_at())
            .expression_attribute_values(":c", AttributeValue::N(a.count.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await;
        // The item after the update: its key, TTL and members (32 hex digits each).
        let members_after = r
            .as_ref()
            .ok()
            .and_then(|o| o.attributes().and_then(|a| a.get("m")))
            .and_then(|m| m.as_ss().ok())
            .map_or(a.count as usize, Vec::len);
        self.usage.count(true, write_units(90 + 32 * members_after));
        match r {
            Ok(out) => {
                let n = out
                    .attributes()
                    .and_then(|a| a.get("m"))
                    .and_then(|m| m.as_ss().ok())
                    .map_or(0, |m| m.len() as u64);
                Ok(n >= a.count)
            }
            // Already at its count: nothing was added, and the window is reached.
            Err(e) if conditional_failed(&e) => Ok(true),
            Err(e) => Err(err("UpdateItem (threshold window)", &e)),
        }
    }

    async fn claim_one(&self, file: &str, g: &Gate) -> Result<Claim, StoreError> {
        let mut item = Table::key(format!("c#{}", hash(&g.text())), "c");
        item.insert("by".into(), s(file));
        item.insert("expires_at".into(), self.expires_at());
        let size = item_size(&item);
        let r = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #by = :f")
            .expression_attribute_names("#by", "by")
            .expression_attribute_values(":f", s(file))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        self.usage.count(true, write_units(size));
        match r {
            Ok(out) if out.attributes().is_some_and(|a| !a.is_empty()) => Ok(Claim::Repeat),
            Ok(_) => Ok(Claim::Won),
            Err(e) if conditional_failed(&e) => Ok(Claim::Lost),
            Err(e) => Err(err("PutItem (claim)", &e)),
        }
    }

    async fn put(
        &self,
        mut item: HashMap<String, AttributeValue>,
        what: &str,
    ) -> Result<(), StoreError> {
        item.insert("expires_at".into(), self.expires_at());
        let size = item_size(&item);
        let r = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .send()
            .await;
        self.usage.count(true, write_units(size));
        r.map(|_| ()).map_err(|e| err(what, &e))
    }

    /// Every item of a join request: its waiting alerts and its key lines.
    async fn request_items(
        &self,
        request: &str,
    ) -> Result<(Vec<Alert>, Vec<DeletedKey>), StoreError> {
        let mut alerts = Vec::new();
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", s(format!("j#{request}")))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await;
            let read: usize = out
                .as_ref()
                .map_or(0, |o| o.items().iter().map(item_size).sum());
            self.usage.count(false, read_units(read));
            let out = out.map_err(|e| err("Query (join)", &e))?;
            for item in out.items() {
                let sk = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .map_or("", String::as_str);
                let body = item.get("body").and_then(|v| v.as_s().ok());
                let Some(body) = body else { continue };
                if sk.starts_with("a#") {
                    alerts.extend(serde_json::from_str::<Alert>(body).ok());
                } else if sk.starts_with("k#") {
                    keys.extend(keys_from_json(body));
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok((alerts, keys)),
            }
        }
    }

    /// A file's alerts on one request: kept, and followed up at once when the
    /// request's lines came first.
    async fn join_alerts(&self, request: &str, alerts: &[Alert]) -> Result<Vec<Alert>, StoreError> {
        for a in alerts {
            let mut item = Table::key(format!("j#{request}"), &format!("a#{}", a.alert_id));
            let mut body = serde_json::to_string(a).map_err(|e| StoreError(e.to_string()))?;
            if body.len() > MAX_ALERT_ITEM {
                // An item holds at most 400 KB: a huge record stays out of the
                // follow-up (the first alert carried it).
                let mut slim = a.clone();
                slim.record = crate::record::RecordJson::null();
                body = serde_json::to_string(&slim).map_err(|e| StoreError(e.to_string()))?;
            }
            item.insert("body".into(), s(body));
            self.put(item, "PutItem (join alert)").await?;
        }
        let (_, keys) = self.request_items(request).await?;
        let mut out = alerts.to_vec();
        if !keys.is_empty() {
            out.extend(alerts.iter().map(|a| with_keys(a, &keys)));
        }
        Ok(out)
    }

    /// One file's key lines of one request: kept, and the alerts waiting for the
    /// request followed up with every key seen so far.
    async fn join_keys(
        &self,
        file: &str,
        request: &str,
        keys: &[DeletedKey],
    ) -> Result<Vec<Alert>, StoreError> {
        let mut item = Table::key(format!("j#{request}"), &format!("k#{}", hash(file)));
        item.insert("body".into(), s(keys_to_json(keys)));
        self.put(item, "PutItem (join keys)").await?;
        let (alerts, all) = self.request_items(request).await?;
        Ok(alerts.iter().map(|a| with_keys(a, &all)).collect())
    }

    fn object_key(o: &ObjectId) -> HashMap<String, AttributeValue> {
        Table::key(
            format!("o#{}", hash(&format!("{}\0{}\0{}", o.0, o.1, o.2))),
            "o",
        )
    }

    /// Creates the table with the schema the worker expects (on demand, TTL on
    /// `expires_at`); nothing when it exists. Returns whether it was created.
    pub async fn create(client: &Client, name: &str) -> anyhow::Result<bool> {
        use anyhow::Context;
        if client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .is_ok()
        {
            return Ok(false);
        }
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type set")
        };
        let key = |n: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .expect("name and type set")
        };
        let r = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .send()
            .await;
        match r {
            Ok(_) => {}
            // Created by someone else meanwhile.
            Err(e) if crate::aws::error_code(&e) == Some("ResourceInUseException") => {
                return Ok(false);
            }
            Err(e) => anyhow::bail!(
                "creating DynamoDB table {name}: {}",
                crate::aws::error_text(&e)
            ),
        }
        // The table must be active before its TTL can be set.
        for _ in 0..120 {
            let d = client.describe_table().table_name(name).send().await;
            let active = d
                .ok()
                .and_then(|d| d.table().and_then(|t| t.table_status().cloned()));
            if active == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .expect("name and flag set"),
            )
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(crate::aws::error_text(&e)))
            .with_context(|| format!("turning on TTL for DynamoDB table {name}"))?;
        Ok(true)
    }
}

/// Runs futures concurrently, results in order (the futures of one chunk).
async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut tasks: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = tasks.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (t, o) in tasks.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match t.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

/// Key lines as stored: every field (an alert's own JSON leaves some out).
fn keys_to_json(keys: &[DeletedKey]) -> String {
    let v: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "key": k.key, "http_status": k.http_status, "error_code": k.error_code,
                "version_id": k.version_id, "request_id": k.request_id, "bucket": k.bucket,
                "time": k.time, "requester": k.requester, "remote_ip": k.remote_ip,
                "user_agent": k.user_agent,
            })
        })
        .collect();
    serde_json::Value::Array(v).to_string()
}

fn keys_from_json(body: &str) -> Vec<DeletedKey> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(body) else {
        return Vec::new();
    };
    let text =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    items
        .iter()
        .map(|v| DeletedKey {
            key: text(v, "key").unwrap_or_default(),
            http_status: v.get("http_status").and_then(|x| x.as_u64()),
            error_code: text(v, "error_code"),
            version_id: text(v, "version_id"),
            request_id: text(v, "request_id").unwrap_or_default(),
            bucket: text(v, "bucket"),
            time: text(v, "time"),
            requester: text(v, "requester"),
            remote_ip: text(v, "remote_ip"),
            user_agent: text(v, "user_agent"),
        })
        .collect()
}

impl WindowStore for Table {
    fn add(&mut self, _file: &str, adds: &[WindowAdd]) -> Result<Vec<bool>, StoreError> {
        let futs: Vec<_> = adds.iter().map(|a| self.add_one(a)).collect();
        self.all(futs).into_iter().collect()
    }

    fn claim(&mut self, file: &str, gates: &[Gate]) -> Result<Vec<Claim>, StoreError> {
        let futs: Vec<_> = gates.iter().map(|g| self.claim_one(file, g)).collect();
        self.all(futs).into_iter().collect()
    }
}

/// The table as one file's [`State`].
pub struct Handle {
    table: Table,
    /// The file's name, for its join key items.
    file: Option<String>,
}

impl Handle {
    pub fn new(table: Table) -> Handle {
        Handle { table, file: None }
    }
}

impl WindowStore for Handle {
    fn add(&mut self, file: &str, adds: &[WindowAdd]) -> Result<Vec<bool>, StoreError> {
        self.file = Some(file.to_owned());
        self.table.add(file, adds)
    }
    fn claim(&mut self, file: &str, gates: &[Gate]) -> Result<Vec<Claim>, StoreError> {
        self.file = Some(file.to_owned());
        self.table.claim(file, gates)
    }
}

impl State for Handle {
    fn windows(&mut self) -> &mut dyn WindowStore {
        self
    }

    /// The table always keeps `DeleteObjects` alerts for their keys: another
    /// worker may read the access logs.
    fn join_holds(&self) -> bool {
        true
    }

    fn join(&mut self, file: JoinFile, _now_ms: u64) -> Result<Vec<Alert>, StoreError> {
        let t = &self.table;
        let name = self.file.clone().unwrap_or_default();
        let keys = file
            .keys
            .map(crate::join::FileKeys::into_requests)
            .unwrap_or_default();
        let mut futs = Vec::new();
        for (request, alerts) in &file.alerts {
            futs.push(Box::pin(t.join_alerts(request, alerts))
                as std::pin::Pin<
                    Box<dyn std::future::Future<Output = _> + Send + '_>,
                >);
        }
        for (request, k) in &keys {
            futs.push(Box::pin(t.join_keys(&name, request, k)));
        }
        let mut out = Vec::new();
        for r in t.all(futs) {
            out.extend(r?);
        }
        Ok(out)
    }

    fn object_done(&mut self, object: &ObjectId) -> Result<bool, StoreError> {
        // The file's name, for its join items, is known from here on.
        self.file = Some(format!("s3://{}/{}#{}", object.0, object.1, object.2));
        let r = self.table.rt.block_on(
            self.table
                .client
                .get_item()
                .table_name(&self.table.name)
                .set_key(Some(Table::object_key(object)))
                .consistent_read(true)
                .send(),
        );
        self.table.usage.count(false, read_units(0));
        match r {
            Ok(out) => Ok(out.item().is_some_and(|i| !i.is_empty())),
            Err(e) => Err(err("GetItem (completed object)", &e)),
        }
    }

    fn object_completed(&mut self, object: ObjectId) -> Result<(), StoreError> {
        let item = Table::object_key(&object);
        self.table
            .rt
            .block_on(self.table.put(item, "PutItem (completed object)"))
    }
}
