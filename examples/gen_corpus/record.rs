//! One file's generator: the record envelope in CloudTrail's key order, the mix of
//! event kinds, and the episodes that make a trail more than noise.
//!
//! Independent random records would never trip a rule that counts (five denials by
//! one principal in five minutes, a hundred deletes in a bucket), but real trails
//! do: a leaked key probing what it can reach, a deployment missing a permission
//! and retrying, a person cleaning up a prefix. So besides the background mix
//! (about 60% S3 data events, 35% management events, 5% errors), a file carries a
//! few *episodes*: bursts of denied calls by one caller, and batch S3 jobs by one
//! caller on one bucket, interleaved with the other records.

use std::collections::HashMap;

use fastrand::Rng;

use super::identity::{Caller, Who};
use super::ids::{self, chance, pick};
use super::json::{self, Obj};
use super::world::World;

/// TLS as the client negotiated it.
pub struct Tls {
    pub version: &'static str,
    pub suite: &'static str,
    pub host: String,
}

/// One record before it is written.
pub struct Record<'w> {
    pub version: &'static str,
    pub who: Who<'w>,
    pub time: i64,
    pub source: &'static str,
    pub name: &'static str,
    pub region: &'static str,
    pub ip: String,
    pub ua: String,
    pub error_code: Option<&'static str>,
    pub error_message: Option<String>,
    /// JSON text; `None` is `null`.
    pub request: Option<String>,
    pub response: Option<String>,
    pub extra: Option<String>,
    /// `None` leaves `requestID` out (console sign-ins have none).
    pub request_id: Option<String>,
    pub read_only: Option<bool>,
    pub resources: Option<String>,
    pub event_type: &'static str,
    pub data: bool,
    pub shared: bool,
    pub vpce: bool,
    pub tls: Option<Tls>,
    pub console: bool,
}

impl<'w> Record<'w> {
    /// A management API call by `caller` with CloudTrail's defaults; the builders
    /// fill in the rest.
    pub fn call(
        g: &mut Gen<'w>,
        caller: Caller<'w>,
        time: i64,
        source: &'static str,
        name: &'static str,
    ) -> Record<'w> {
        Record {
            version: "1.08",
            who: caller.who,
            time,
            source,
            name,
            region: g.region,
            ip: caller.ip,
            ua: caller.ua,
            error_code: None,
            error_message: None,
            request: None,
            response: None,
            extra: None,
            request_id: Some(ids::uuid(&mut g.rng)),
            read_only: None,
            resources: None,
            event_type: "AwsApiCall",
            data: false,
            shared: false,
            vpce: false,
            tls: None,
            console: caller.console,
        }
    }

    /// Marks the call failed; an empty message leaves `errorMessage` out, as for
    /// the errors whose records carry only a code.
    pub fn fail(&mut self, code: &'static str, message: String) {
        self.error_code = Some(code);
        self.error_message = Some(message).filter(|m| !m.is_empty());
        self.response = None;
    }
}

/// How a call fails, when it does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not authorised (AccessDenied and its cousins).
    Denied,
    /// Another error (a missing key, throttling).
    Other,
}

/// What a builder is asked for; everything left `None` is drawn.
#[derive(Default)]
pub struct Ask<'w> {
    pub caller: Option<Caller<'w>>,
    pub name: Option<&'static str>,
    pub bucket: Option<usize>,
    pub failure: Option<Failure>,
}

/// The services that have builders.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Api {
    S3,
    Sts,
    Ec2,
    Kms,
    Iam,
    Signin,
    Ssm,
    Secrets,
}

impl Api {
    pub fn source(self) -> &'static str {
        match self {
            Api::S3 => "s3.amazonaws.com",
            Api::Sts => "sts.amazonaws.com",
            Api::Ec2 => "ec2.amazonaws.com",
            Api::Kms => "kms.amazonaws.com",
            Api::Iam => "iam.amazonaws.com",
            Api::Signin => "signin.amazonaws.com",
            Api::Ssm => "ssm.amazonaws.com",
            Api::Secrets => "secretsmanager.amazonaws.com",
        }
    }
}

/// Denied calls by one caller, a few seconds apart.
struct Burst<'w> {
    caller: Caller<'w>,
    /// The calls it makes, each with its weight.
    calls: &'static [(u32, (Api, &'static str))],
    bucket: usize,
    left: u32,
    start: i64,
    /// The AWS CLI agent it calls with, naming each call's command.
    cli: Option<usize>,
}

/// A batch S3 job: one caller, one operation, one bucket.
pub struct Run<'w> {
    pub caller: Caller<'w>,
    pub name: &'static str,
    pub bucket: usize,
    pub left: u32,
    pub start: i64,
}

/// The state of one file being generated.
pub struct Gen<'w> {
    pub w: &'w World,
    pub rng: Rng,
    pub region: &'static str,
    /// The file's delivery time; its events happened in the 15 minutes before.
    pub t0: i64,
    pub sessions: HashMap<(usize, String), (String, i64)>,
    pub pools: HashMap<usize, Vec<String>>,
    burst: Option<Burst<'w>>,
    pub run: Option<Run<'w>>,
}

/// A leaked key trying what it can reach.
const RECON: &[(u32, (Api, &str))] = &[
    (5, (Api::Iam, "ListUsers")),
    (4, (Api::Iam, "ListRoles")),
    (3, (Api::Iam, "GetUser")),
    (2, (Api::Iam, "ListAccessKeys")),
    (4, (Api::S3, "ListObjects")),
    (3, (Api::S3, "GetObject")),
    (2, (Api::Ec2, "DescribeInstances")),
    (2, (Api::Secrets, "GetSecretValue")),
    (1, (Api::Sts, "AssumeRole")),
];
/// A workload missing a permission, retrying.
const WRITE_RETRY: &[(u32, (Api, &str))] = &[(1, (Api::S3, "PutObject"))];
const DECRYPT_RETRY: &[(u32, (Api, &str))] = &[(1, (Api::Kms, "Decrypt"))];
const PARAM_RETRY: &[(u32, (Api, &str))] = &[
    (3, (Api::Ssm, "GetParameter")),
    (1, (Api::Secrets, "GetSecretValue")),
];
/// A person with a read-only permission set trying to change IAM.
const OVERREACH: &[(u32, (Api, &str))] = &[
    (3, (Api::Iam, "CreateAccessKey")),
    (3, (Api::Iam, "AttachUserPolicy")),
    (2, (Api::Iam, "PutUserPolicy")),
    (2, (Api::Iam, "CreateUser")),
    (1, (Api::S3, "DeleteObject")),
];

impl<'w> Gen<'w> {
    pub fn new(w: &'w World, seed: u64, region: &'static str, t0: i64) -> Gen<'w> {
        Gen {
            w,
            rng: Rng::with_seed(seed),
            region,
            t0,
            sessions: HashMap::new(),
            pools: HashMap::new(),
            burst: None,
            run: None,
        }
    }

    /// When a background event happened: up to 15 minutes before delivery.
    pub fn when(&mut self) -> i64 {
        self.t0 - i64::from(self.rng.u32(..=900))
    }

    /// The start of an episode lasting up to `span` seconds, inside the window.
    pub fn episode_start(&mut self, span: u32) -> i64 {
        self.t0 - i64::from(span) - i64::from(self.rng.u32(..=900 - span))
    }

    pub fn tls(&mut self, host: String) -> Tls {
        let v13 = chance(&mut self.rng, 0.85);
        Tls {
            version: if v13 { "TLSv1.3" } else { "TLSv1.2" },
            suite: if v13 {
                "TLS_AES_128_GCM_SHA256"
            } else {
                "ECDHE-RSA-AES128-GCM-SHA256"
            },
            host,
        }
    }

    /// Appends one record's JSON to `out`.
    pub fn next_record(&mut self, out: &mut String) {
        let r = self.draw();
        self.write(&r, out);
    }

    fn draw(&mut self) -> Record<'w> {
        let x = self.rng.u32(..1000);
        if x < 600 {
            self.s3_event()
        } else if x < 950 {
            let t = self.when();
            let api = pick(
                &mut self.rng,
                &[
                    (24, Api::Sts),
                    (21, Api::Ec2),
                    (18, Api::Kms),
                    (14, Api::Iam),
                    (4, Api::Signin),
                    (10, Api::Ssm),
                    (9, Api::Secrets),
                ],
            );
            self.build(api, t, Ask::default())
        } else {
            self.error_event()
        }
    }

    pub fn build(&mut self, api: Api, t: i64, ask: Ask<'w>) -> Record<'w> {
        match api {
            Api::S3 => self.s3(t, ask),
            Api::Sts => self.sts(t, ask),
            Api::Ec2 => self.ec2(t, ask),
            Api::Kms => self.kms(t, ask),
            Api::Iam => self.iam(t, ask),
            Api::Signin => self.signin(t, ask),
            Api::Ssm => self.ssm(t, ask),
            Api::Secrets => self.secrets(t, ask),
        }
    }

    /// A failed call: part of a burst of denials, or a lone error.
    fn error_event(&mut self) -> Record<'w> {
        if self.burst.is_none() && chance(&mut self.rng, 0.07) {
            self.burst = Some(self.new_burst());
        }
        if let Some(b) = &mut self.burst {
            b.left -= 1;
            let (api, name) = pick(&mut self.rng, b.calls);
            let ask = Ask {
                caller: Some(b.caller.clone()),
                name: Some(name),
                bucket: Some(b.bucket),
                failure: Some(Failure::Denied),
            };
            let mut ask = ask;
            if let (Some(i), Some(c)) = (b.cli, &mut ask.caller) {
                c.ua = super::agents::cli_with(i, &super::agents::cli_command(api.source(), name));
            }
            let t = b.start + i64::from(self.rng.u32(..=200));
            if b.left == 0 {
                self.burst = None;
            }
            return self.build(api, t, ask);
        }
        let t = self.when();
        let failure = if chance(&mut self.rng, 0.85) {
            Failure::Denied
        } else {
            Failure::Other
        };
        let api = pick(
            &mut self.rng,
            &[
                (45, Api::S3),
                (15, Api::Iam),
                (12, Api::Ec2),
                (10, Api::Sts),
                (8, Api::Kms),
                (6, Api::Signin),
                (4, Api::Secrets),
            ],
        );
        let ask = Ask {
            failure: Some(failure),
            ..Ask::default()
        };
        self.build(api, t, ask)
    }

    fn new_burst(&mut self) -> Burst<'w> {
        let w = self.w;
        let start = self.episode_start(200);
        let bucket = self.rng.usize(..w.buckets.len());
        match self.rng.u32(..10) {
            // A leaked IAM user key, from an address the company never uses.
            0..=3 => {
                let ua = (*ids::one(&mut self.rng, &super::agents::PROBING)).to_owned();
                let ip = ids::one(&mut self.rng, &w.foreign_ips).clone();
                Burst {
                    caller: Caller {
                        who: self.iam_user(false),
                        ip,
                        ua,
                        console: false,
                    },
                    calls: RECON,
                    bucket,
                    left: self.rng.u32(6..=22),
                    start,
                    cli: None,
                }
            }
            // A person reaching beyond their permission set.
            4..=5 => {
                let cli = super::agents::cli_index(&mut self.rng);
                let ip = w.public_ip(&mut self.rng).to_owned();
                Burst {
                    caller: Caller {
                        who: self.sso(None),
                        ip,
                        ua: String::new(),
                        console: false,
                    },
                    calls: OVERREACH,
                    bucket,
                    left: self.rng.u32(5..=9),
                    start,
                    cli: Some(cli),
                }
            }
            // A workload retrying what its role may not do.
            _ => {
                let calls = *ids::one(&mut self.rng, &[WRITE_RETRY, DECRYPT_RETRY, PARAM_RETRY]);
                let ua = super::agents::sdk(&mut self.rng);
                let ip = ids::one(&mut self.rng, &w.nat_ips).clone();
                Burst {
                    caller: Caller {
                        who: self.app_role(None),
                        ip,
                        ua,
                        console: false,
                    },
                    calls,
                    bucket,
                    left: self.rng.u32(5..=12),
                    start,
                    cli: None,
                }
            }
        }
    }

    /// Writes `r` in CloudTrail's key order.
    fn write(&mut self, r: &Record<'w>, out: &mut String) {
        let w = self.w;
        let event_id = ids::uuid(&mut self.rng);
        let shared = r.shared.then(|| ids::uuid(&mut self.rng));
        json::object(out, |o: &mut Obj| {
            o.str("eventVersion", r.version)
                .obj("userIdentity", |u| r.who.write(w, u))
                .str("eventTime", &ids::iso(r.time))
                .str("eventSource", r.source)
                .str("eventName", r.name)
                .str("awsRegion", r.region)
                .str("sourceIPAddress", &r.ip)
                .str("userAgent", &r.ua);
            if let Some(code) = r.error_code {
                o.str("errorCode", code);
            }
            if let Some(msg) = &r.error_message {
                o.str("errorMessage", msg);
            }
            o.raw_or_null("requestParameters", r.request.as_deref())
                .raw_or_null("responseElements", r.response.as_deref());
            if let Some(extra) = &r.extra {
                o.raw("additionalEventData", extra);
            }
            if let Some(id) = &r.request_id {
                o.str("requestID", id);
            }
            o.str("eventID", &event_id);
            if let Some(ro) = r.read_only {
                o.bool("readOnly", ro);
            }
            if let Some(res) = &r.resources {
                o.raw("resources", res);
            }
            o.str("eventType", r.event_type)
                .bool("managementEvent", !r.data)
                .str("recipientAccountId", &w.account);
            if let Some(id) = &shared {
                o.str("sharedEventID", id);
            }
            if r.vpce {
                o.str("vpcEndpointId", &w.vpce)
                    .str("vpcEndpointAccountId", &w.account);
            }
            o.str("eventCategory", if r.data { "Data" } else { "Management" });
            if let Some(tls) = &r.tls {
                o.obj("tlsDetails", |t| {
                    t.str("tlsVersion", tls.version)
                        .str("cipherSuite", tls.suite)
                        .str("clientProvidedHostHeader", &tls.host);
                });
            }
            if r.console {
                o.str("sessionCredentialFromConsole", "true");
            }
        });
    }
}
