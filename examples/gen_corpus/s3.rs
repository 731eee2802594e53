//! S3 data events: object reads, writes, lists and deletes, with the request and
//! additional data S3 logs (host, SSE, byte counts, `x-amz-id-2`), by the callers
//! S3 sees in practice: workloads, people on the CLI and the console, AWS services
//! writing logs, services reading on a person's behalf (Athena, Glue), Identity
//! Center users and, rarely, root.

use super::agents;
use super::identity::{Caller, Who};
use super::ids::{self, B64, B64URL, UPPER_ALNUM, chance, one, pick};
use super::json::{self, to_object};
use super::record::{Ask, Failure, Gen, Record, Run};
use super::world::BucketKind;

const OPS: [(u32, &str); 8] = [
    (36, "GetObject"),
    (19, "HeadObject"),
    (17, "PutObject"),
    (12, "ListObjects"),
    (7, "DeleteObject"),
    (3, "DeleteObjects"),
    (3, "GetObjectTagging"),
    (2, "GetObjectAcl"),
];

fn read_only(name: &str) -> bool {
    !matches!(name, "PutObject" | "DeleteObject" | "DeleteObjects")
}

impl<'w> Gen<'w> {
    /// A background S3 data event, or the next call of a batch job.
    pub fn s3_event(&mut self) -> Record<'w> {
        if self.run.is_none() && chance(&mut self.rng, 0.0015) {
            self.run = Some(self.new_run());
        }
        if let Some(run) = &mut self.run
            && chance(&mut self.rng, 0.5)
        {
            run.left -= 1;
            let ask = Ask {
                caller: Some(run.caller.clone()),
                name: Some(run.name),
                bucket: Some(run.bucket),
                failure: None,
            };
            let t = run.start + i64::from(self.rng.u32(..=300));
            if run.left == 0 {
                self.run = None;
            }
            return self.s3(t, ask);
        }
        let t = self.when();
        self.s3(t, Ask::default())
    }

    /// `aws s3 sync` down or up, `aws s3 rm --recursive`, an export job.
    fn new_run(&mut self) -> Run<'w> {
        let w = self.w;
        let rng = &mut self.rng;
        let name = pick(
            rng,
            &[(45, "GetObject"), (35, "PutObject"), (20, "DeleteObject")],
        );
        let bucket = w.bucket_of(*one(
            rng,
            &[
                BucketKind::DataLake,
                BucketKind::Uploads,
                BucketKind::Reports,
                BucketKind::Artifacts,
                BucketKind::Backups,
            ],
        ));
        let left = rng.u32(20..=150);
        let person = rng.bool();
        let caller = if person {
            let ua = agents::cli(rng, agents::cli_command("s3", name).as_str());
            let ip = w.public_ip(rng).to_owned();
            Caller {
                who: self.sso(None),
                ip,
                ua,
                console: false,
            }
        } else {
            let ua = agents::sdk(rng);
            let ip = one(rng, &w.vpc_ips).clone();
            Caller {
                who: self.app_role(None),
                ip,
                ua,
                console: false,
            }
        };
        let start = self.episode_start(300);
        Run {
            caller,
            name,
            bucket,
            left,
            start,
        }
    }

    /// Who calls S3 when nothing was asked, and on which bucket.
    fn s3_caller(&mut self, name: &mut &'static str) -> (Caller<'w>, usize) {
        let w = self.w;
        let rng = &mut self.rng;
        let any_bucket = rng.usize(..w.buckets.len());
        let kind = pick(
            rng,
            &[
                (88, 0),
                (34, 1),
                (18, 2),
                (18, 3),
                (22, 4),
                (8, 5),
                (8, 6),
                (1, 7),
            ],
        );
        let cmd = agents::cli_command("s3", name);
        match kind {
            // A workload: from its VPC through the endpoint, or through NAT.
            0 => {
                let ua = agents::sdk(rng);
                let ip = if rng.bool() {
                    one(rng, &w.vpc_ips).clone()
                } else {
                    one(rng, &w.nat_ips).clone()
                };
                let who = self.app_role(None);
                (
                    Caller {
                        who,
                        ip,
                        ua,
                        console: false,
                    },
                    any_bucket,
                )
            }
            1 => {
                let ua = agents::cli(rng, &cmd);
                let ip = w.public_ip(rng).to_owned();
                let who = self.sso(None);
                (
                    Caller {
                        who,
                        ip,
                        ua,
                        console: false,
                    },
                    any_bucket,
                )
            }
            2 => {
                let ua = if rng.bool() {
                    agents::cli(rng, &cmd)
                } else {
                    agents::sdk(rng)
                };
                let ip = w.public_ip(rng).to_owned();
                let who = self.iam_user(false);
                (
                    Caller {
                        who,
                        ip,
                        ua,
                        console: false,
                    },
                    any_bucket,
                )
            }
            // A service reading or writing for a person or a role (FAS).
            3 => {
                let svc = pick(
                    rng,
                    &[
                        (6, "athena.amazonaws.com"),
                        (2, "glue.amazonaws.com"),
                        (1, "redshift.amazonaws.com"),
                    ],
                );
                let who = if self.rng.bool() {
                    self.sso(Some(svc))
                } else {
                    self.app_role(Some(svc))
                };
                let bucket = if *name == "PutObject" {
                    w.bucket_of(BucketKind::Athena)
                } else {
                    w.bucket_of(BucketKind::DataLake) + self.rng.usize(..2)
                };
                (Caller::service(who, svc), bucket)
            }
            // Services delivering their logs.
            4 => {
                let (svc, bucket) = match pick(rng, &[(5, 0), (3, 1), (2, 2)]) {
                    0 => {
                        *name = if chance(rng, 0.9) {
                            "PutObject"
                        } else {
                            "HeadObject"
                        };
                        (
                            "cloudtrail.amazonaws.com",
                            w.bucket_of(BucketKind::CloudTrail),
                        )
                    }
                    1 => {
                        *name = "PutObject";
                        ("config.amazonaws.com", w.bucket_of(BucketKind::Config))
                    }
                    _ => ("delivery.logs.amazonaws.com", any_bucket),
                };
                (Caller::service(Who::Service(svc), svc), bucket)
            }
            5 => {
                let ip = w.public_ip(rng).to_owned();
                let who = self.sso(None);
                (
                    Caller {
                        who,
                        ip,
                        ua: agents::S3_CONSOLE.to_owned(),
                        console: true,
                    },
                    any_bucket,
                )
            }
            6 => {
                let ua = agents::cli(rng, &cmd);
                let ip = w.public_ip(rng).to_owned();
                let who = self.idc_user();
                (
                    Caller {
                        who,
                        ip,
                        ua,
                        console: false,
                    },
                    any_bucket,
                )
            }
            _ => {
                let ip = w.public_ip(rng).to_owned();
                (
                    Caller {
                        who: Who::Root,
                        ip,
                        ua: agents::S3_CONSOLE.to_owned(),
                        console: false,
                    },
                    any_bucket,
                )
            }
        }
    }

    /// One S3 data event.
    pub fn s3(&mut self, t: i64, ask: Ask<'w>) -> Record<'w> {
        let w = self.w;
        let mut name = ask.name.unwrap_or_else(|| pick(&mut self.rng, &OPS));
        let (caller, bucket) = match ask.caller {
            Some(c) => (c, ask.bucket.unwrap_or(0)),
            None => self.s3_caller(&mut name),
        };
        let b = &w.buckets[bucket];
        let region = self.region;
        let host = format!("{}.s3.{region}.amazonaws.com", b.name);
        let service = caller.who.via_service().is_some();
        let console_ua = caller.ua.starts_with("[S3Console");
        let mut caller = caller;
        if !service && !caller.ua.starts_with('[') {
            caller.ua = format!("[{}]", caller.ua);
        }
        let mut r = Record::call(self, caller, t, "s3.amazonaws.com", name);
        r.version = "1.10";
        r.data = true;
        r.request_id = Some(ids::chars(&mut self.rng, UPPER_ALNUM, 16));
        r.read_only = Some(read_only(name));
        let rng = &mut self.rng;
        let key = b.key(rng, w, region);
        let size = ids::log_normal(rng, 10.0, 2.2) as u64 + 1;
        let bucket_res = |a: &mut json::Arr| {
            a.obj(|o| {
                o.str("accountId", &w.account)
                    .str("type", "AWS::S3::Bucket")
                    .str("ARN", &format!("arn:aws:s3:::{}", b.name));
            });
        };
        let (mut bytes_in, mut bytes_out) = (0, 0);
        let version_id = |rng: &mut fastrand::Rng| ids::chars(rng, B64URL, 32);
        match name {
            "ListObjects" => {
                let prefix = match key.rsplit_once('/') {
                    Some((dir, _)) => match dir.rsplit_once('/') {
                        Some((up, _)) => format!("{up}/"),
                        None => format!("{dir}/"),
                    },
                    None => String::new(),
                };
                let token = chance(rng, 0.3).then(|| ids::chars(rng, B64, 64));
                r.request = Some(to_object(|o| {
                    o.str("list-type", "2")
                        .str("bucketName", &b.name)
                        .str("encoding-type", "url")
                        .str("prefix", &prefix)
                        .str("delimiter", "/")
                        .str("Host", &host);
                    if let Some(t) = &token {
                        o.str("continuation-token", t);
                    }
                }));
                r.resources = Some(json::to_array(bucket_res));
                bytes_out = rng.u64(300..60_000);
            }
            "DeleteObjects" => {
                r.request = Some(to_object(|o| {
                    o.str("bucketName", &b.name)
                        .str("Host", &host)
                        .str("delete", "");
                }));
                r.resources = Some(json::to_array(bucket_res));
                bytes_in = rng.u64(200..30_000);
                bytes_out = rng.u64(100..20_000);
            }
            _ => {
                let mut response = None;
                let mut sse_kms = None;
                let mut range = None;
                match name {
                    "PutObject" => {
                        bytes_in = size;
                        let version = chance(rng, 0.3).then(|| version_id(rng));
                        if chance(rng, 0.4) {
                            let arn = w.kms_arn(region, rng.usize(..w.kms_keys.len()));
                            response = Some(to_object(|o| {
                                o.str("x-amz-server-side-encryption-aws-kms-key-id", &arn)
                                    .str("x-amz-server-side-encryption", "aws:kms");
                                if let Some(v) = &version {
                                    o.str("x-amz-version-id", v);
                                }
                            }));
                            sse_kms = Some(arn);
                        } else {
                            response = Some(to_object(|o| {
                                o.str("x-amz-server-side-encryption", "AES256");
                                if let Some(v) = &version {
                                    o.str("x-amz-version-id", v);
                                }
                            }));
                        }
                    }
                    "GetObject" => {
                        bytes_out = size;
                        if chance(rng, 0.2) {
                            range = Some(format!("bytes=0-{}", size.min(8_388_607)));
                        }
                    }
                    "DeleteObject" if chance(rng, 0.3) => {
                        let v = version_id(rng);
                        response = Some(to_object(|o| {
                            o.str("x-amz-delete-marker", "true")
                                .str("x-amz-version-id", &v);
                        }));
                    }
                    _ => {}
                }
                r.request = Some(to_object(|o| {
                    o.str("bucketName", &b.name)
                        .str("Host", &host)
                        .str("key", &key);
                    match name {
                        "GetObjectTagging" => {
                            o.str("tagging", "");
                        }
                        "GetObjectAcl" => {
                            o.str("acl", "");
                        }
                        _ => {}
                    }
                    if let Some(range) = &range {
                        o.str("range", range);
                    }
                    if let Some(arn) = &sse_kms {
                        o.str("x-amz-server-side-encryption", "aws:kms")
                            .str("x-amz-server-side-encryption-aws-kms-key-id", arn);
                    }
                    if r.who.via_service() == Some("cloudtrail.amazonaws.com") {
                        o.str("x-amz-acl", "bucket-owner-full-control");
                    }
                }));
                r.response = response;
                r.resources = Some(json::to_array(|a| {
                    a.obj(|o| {
                        o.str("type", "AWS::S3::Object")
                            .str("ARN", &format!("arn:aws:s3:::{}/{key}", b.name));
                    });
                    bucket_res(a);
                }));
            }
        }
        if !service {
            r.tls = Some(self.tls(host));
        }
        let rng = &mut self.rng;
        if let Some(f) = ask.failure {
            let (code, msg) = match f {
                Failure::Other
                    if matches!(name, "GetObject" | "GetObjectTagging" | "GetObjectAcl") =>
                {
                    ("NoSuchKey", "The specified key does not exist.")
                }
                Failure::Other if name == "PutObject" => {
                    ("SlowDown", "Please reduce your request rate.")
                }
                _ => ("AccessDenied", "Access Denied"),
            };
            r.fail(code, msg.to_owned());
            bytes_in = 0;
            bytes_out = 243;
        }
        let suite = r
            .tls
            .as_ref()
            .map_or("ECDHE-RSA-AES128-GCM-SHA256", |t| t.suite);
        let sse = (matches!(name, "GetObject" | "PutObject" | "HeadObject") && chance(rng, 0.6))
            .then(|| pick(rng, &[(6, "Default_SSE_S3"), (3, "SSE_KMS"), (1, "SSE_S3")]));
        let (float_in, float_out) = (rng.bool(), rng.bool());
        let id2 = ids::chars(rng, B64, 76);
        r.extra = Some(to_object(|o| {
            o.str("SignatureVersion", "SigV4").str("CipherSuite", suite);
            if float_in {
                o.float("bytesTransferredIn", bytes_in);
            } else {
                o.int("bytesTransferredIn", bytes_in);
            }
            if let Some(s) = sse {
                o.str("SSEApplied", s);
            }
            o.str(
                "AuthenticationMethod",
                if console_ua {
                    "QueryString"
                } else {
                    "AuthHeader"
                },
            )
            .str("x-amz-id-2", &id2);
            if float_out {
                o.float("bytesTransferredOut", bytes_out);
            } else {
                o.int("bytesTransferredOut", bytes_out);
            }
        }));
        r.vpce = !service && !console_ua && r.ip.starts_with("10.");
        r.console = console_ua && !matches!(r.who, Who::Root);
        r
    }
}
