//! Management events: STS, EC2 reads, KMS, SSM parameters and Secrets Manager
//! (IAM and console sign-ins are in `iam.rs`), each with the request and response
//! shapes CloudTrail logs for it and the error codes each service uses when it
//! refuses (`AccessDenied`, `Client.UnauthorizedOperation`,
//! `AccessDeniedException`).

use super::agents;
use super::identity::{Caller, GITHUB_SUBJECT, Who};
use super::ids::{self, B64, BASE32, chance, one, pick};
use super::json::{Obj, to_array, to_object};
use super::record::{Ask, Failure, Gen, Record};
use super::world::{RoleKind, World};

/// "User: ARN is not authorized to perform: ACTION [on resource: RES] because no
/// identity-based policy allows the ACTION action"
pub fn not_authorized(arn: &str, action: &str, resource: Option<&str>) -> String {
    let on = resource.map_or(String::new(), |r| format!(" on resource: {r}"));
    format!(
        "User: {arn} is not authorized to perform: {action}{on} because no identity-based policy allows the {action} action"
    )
}

/// `{"items":[{"name":N,"valueSet":{"items":[{"value":V}]}}]}`, EC2's filters.
fn filter(o: &mut Obj, name: &str, value: &str) {
    o.obj("filterSet", |f| {
        f.arr("items", |a| {
            a.obj(|i| {
                i.str("name", name).obj("valueSet", |v| {
                    v.arr("items", |a| {
                        a.obj(|x| {
                            x.str("value", value);
                        });
                    });
                });
            });
        });
    });
}

fn role_arn(w: &World, i: usize) -> String {
    let r = &w.roles[i];
    format!("arn:aws:iam::{}:role{}{}", w.account, r.path, r.name)
}

fn resource(w: &World, ty: &str, arn: &str) -> String {
    to_array(|a| {
        a.obj(|o| {
            o.str("accountId", &w.account)
                .str("type", ty)
                .str("ARN", arn);
        });
    })
}

impl<'w> Gen<'w> {
    /// The caller asked for, or one drawn for the API.
    pub fn caller_for(&mut self, ask: &mut Ask<'w>, source: &str, name: &str) -> Caller<'w> {
        match ask.caller.take() {
            Some(c) => c,
            None => self.caller(source, name),
        }
    }

    fn credentials(&mut self, o: &mut Obj, t: i64) {
        let rng = &mut self.rng;
        let key = ids::prefixed(rng, "ASIA", BASE32, 16);
        let mut token = String::from("IQoJb3JpZ2luX2VjE");
        let n = rng.usize(560..900);
        ids::push_chars(&mut token, rng, B64, n);
        o.obj("credentials", |c| {
            c.str("accessKeyId", &key)
                .str("sessionToken", &token)
                .str("expiration", &ids::human(t + 3600));
        });
    }

    pub fn sts(&mut self, t: i64, mut ask: Ask<'w>) -> Record<'w> {
        let w = self.w;
        let name = ask.name.unwrap_or_else(|| {
            if ask.failure.is_some() {
                "AssumeRole"
            } else {
                pick(
                    &mut self.rng,
                    &[
                        (80, "AssumeRole"),
                        (12, "GetCallerIdentity"),
                        (8, "AssumeRoleWithWebIdentity"),
                    ],
                )
            }
        });
        let host = format!("sts.{}.amazonaws.com", self.region);
        if name == "GetCallerIdentity" {
            let caller = self.caller_for(&mut ask, "sts", name);
            let mut r = Record::call(self, caller, t, "sts.amazonaws.com", name);
            r.read_only = Some(true);
            r.tls = Some(self.tls(host));
            return r;
        }
        let role = self.rng.usize(..w.app_roles);
        let arn = role_arn(w, role);
        if name == "AssumeRoleWithWebIdentity" {
            let role = w
                .roles
                .iter()
                .position(|r| r.kind == RoleKind::GitHub)
                .unwrap();
            let arn = role_arn(w, role);
            let ip = format!("192.0.2.{}", self.rng.u32(1..255));
            let caller = Caller {
                who: Who::WebIdentity,
                ip,
                ua: agents::GITHUB_OIDC.to_owned(),
                console: false,
            };
            let mut r = Record::call(self, caller, t, "sts.amazonaws.com", name);
            let acct = &w.account;
            let provider =
                format!("arn:aws:iam::{acct}:oidc-provider/token.actions.githubusercontent.com");
            r.request = Some(to_object(|o| {
                o.str("roleArn", &arn)
                    .str("roleSessionName", "GitHubActions")
                    .int("durationSeconds", 3600);
            }));
            let role_id = &w.roles[role].id;
            let role_name = &w.roles[role].name;
            r.response = Some(to_object(|o| {
                self.credentials(o, t);
                o.str("subjectFromWebIdentityToken", GITHUB_SUBJECT)
                    .obj("assumedRoleUser", |u| {
                        u.str("assumedRoleId", &format!("{role_id}:GitHubActions"))
                            .str(
                                "arn",
                                &format!(
                                    "arn:aws:sts::{acct}:assumed-role/{role_name}/GitHubActions"
                                ),
                            );
                    })
                    .str("provider", &provider)
                    .str("audience", "sts.amazonaws.com");
            }));
            r.extra = Some(to_object(|o| {
                o.str(
                    "identityProviderConnectionVerificationMethod",
                    "IAMTrustStore",
                )
                .str("RoleSessionNameProvenance", "User");
            }));
            r.read_only = Some(true);
            r.resources = Some(resource(w, "AWS::IAM::Role", &arn));
            r.tls = Some(self.tls("sts.amazonaws.com".to_owned()));
            return r;
        }
        // AssumeRole: by the service a workload runs on, or by a client.
        let svc = w.roles[role].service();
        let by_service = ask.caller.is_none()
            && ask.failure.is_none()
            && svc.is_some()
            && chance(&mut self.rng, 0.6);
        let (caller, session) = if by_service {
            let svc = svc.unwrap();
            let session = if w.roles[role].kind == RoleKind::Ec2 {
                one(&mut self.rng, &w.instances).clone()
            } else {
                ids::chars(&mut self.rng, ids::HEX, 32)
            };
            (Caller::service(Who::Service(svc), svc), session)
        } else {
            let c = self.caller_for(&mut ask, "sts", name);
            (
                c,
                format!(
                    "botocore-session-{}",
                    self.rng.u32(1_740_000_000..1_746_000_000)
                ),
            )
        };
        let mut r = Record::call(self, caller, t, "sts.amazonaws.com", name);
        let duration = chance(&mut self.rng, 0.4);
        r.request = Some(to_object(|o| {
            o.str("roleArn", &arn).str("roleSessionName", &session);
            if duration {
                o.int("durationSeconds", 3600);
            }
        }));
        r.read_only = Some(true);
        r.shared = by_service;
        if !by_service {
            r.tls = Some(self.tls(host));
        }
        if ask.failure.is_some() {
            let msg = format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {arn}",
                r.who.arn(w)
            );
            r.fail("AccessDenied", msg);
            return r;
        }
        let (role_id, role_name) = (&w.roles[role].id, &w.roles[role].name);
        let acct = &w.account;
        r.response = Some(to_object(|o| {
            self.credentials(o, t);
            o.obj("assumedRoleUser", |u| {
                u.str("assumedRoleId", &format!("{role_id}:{session}")).str(
                    "arn",
                    &format!("arn:aws:sts::{acct}:assumed-role/{role_name}/{session}"),
                );
            });
        }));
        r.resources = Some(resource(w, "AWS::IAM::Role", &arn));
        r
    }

    pub fn ec2(&mut self, t: i64, mut ask: Ask<'w>) -> Record<'w> {
        let w = self.w;
        let name = ask.name.unwrap_or_else(|| {
            pick(
                &mut self.rng,
                &[
                    (30, "DescribeInstances"),
                    (15, "DescribeSecurityGroups"),
                    (12, "DescribeVolumes"),
                    (10, "DescribeNetworkInterfaces"),
                    (8, "DescribeRegions"),
                    (8, "DescribeInstanceStatus"),
                    (7, "DescribeSubnets"),
                    (5, "DescribeVpcs"),
                    (5, "DescribeTags"),
                ],
            )
        });
        let caller = self.caller_for(&mut ask, "ec2", name);
        let mut r = Record::call(self, caller, t, "ec2.amazonaws.com", name);
        r.version = "1.09";
        let rng = &mut self.rng;
        let (inst, vpc, vol) = (
            one(rng, &w.instances),
            one(rng, &w.vpcs),
            one(rng, &w.volumes),
        );
        let some = rng.usize(1..=4);
        let start = rng.usize(..w.instances.len() - some);
        let by_ids = rng.bool();
        let env = if rng.bool() { "prod" } else { "staging" };
        let sgs = [one(rng, &w.security_groups), one(rng, &w.security_groups)];
        r.request = Some(to_object(|o| match name {
            "DescribeInstances" if by_ids => {
                o.obj("instancesSet", |s| {
                    s.arr("items", |a| {
                        for i in &w.instances[start..start + some] {
                            a.obj(|x| {
                                x.str("instanceId", i);
                            });
                        }
                    });
                })
                .empty_obj("filterSet");
            }
            "DescribeInstances" => {
                o.empty_obj("instancesSet");
                filter(o, "tag:Environment", env);
            }
            "DescribeSecurityGroups" => {
                o.empty_obj("securityGroupSet")
                    .obj("securityGroupIdSet", |s| {
                        s.arr("items", |a| {
                            for g in sgs {
                                a.obj(|x| {
                                    x.str("groupId", g);
                                });
                            }
                        });
                    });
                o.empty_obj("filterSet");
            }
            "DescribeVolumes" => {
                o.obj("volumeSet", |s| {
                    s.arr("items", |a| {
                        a.obj(|x| {
                            x.str("volumeId", vol);
                        });
                    });
                });
                filter(o, "attachment.instance-id", inst);
            }
            "DescribeNetworkInterfaces" | "DescribeSubnets" => {
                o.empty_obj(if name == "DescribeSubnets" {
                    "subnetSet"
                } else {
                    "networkInterfaceIdSet"
                });
                filter(o, "vpc-id", vpc);
            }
            "DescribeRegions" => {
                o.empty_obj("regionSet").bool("allRegions", false);
            }
            "DescribeInstanceStatus" => {
                o.empty_obj("instancesSet")
                    .empty_obj("filterSet")
                    .bool("includeAllInstances", true)
                    .int("maxResults", 1000);
            }
            "DescribeVpcs" => {
                o.empty_obj("vpcSet").empty_obj("filterSet");
            }
            _ => filter(o, "resource-id", inst),
        }));
        r.read_only = Some(true);
        r.tls = Some(self.tls(format!("ec2.{}.amazonaws.com", self.region)));
        match ask.failure {
            Some(Failure::Other) if name == "DescribeInstances" && by_ids => {
                let msg = format!("The instance ID '{}' does not exist", w.instances[start]);
                r.fail("Client.InvalidInstanceID.NotFound", msg);
            }
            Some(_) => {
                let msg = format!(
                    "You are not authorized to perform this operation. {}",
                    not_authorized(&r.who.arn(w), &format!("ec2:{name}"), None)
                );
                r.fail("Client.UnauthorizedOperation", msg);
            }
            None => {}
        }
        r
    }

    pub fn kms(&mut self, t: i64, mut ask: Ask<'w>) -> Record<'w> {
        let w = self.w;
        let region = self.region;
        let name = ask.name.unwrap_or_else(|| {
            pick(
                &mut self.rng,
                &[(65, "Decrypt"), (25, "GenerateDataKey"), (10, "Encrypt")],
            )
        });
        let key_arn = w.kms_arn(region, self.rng.usize(..w.kms_keys.len()));
        let svc_call = ask.caller.is_none() && ask.failure.is_none() && chance(&mut self.rng, 0.6);
        let (caller, svc) = if svc_call {
            let svc = pick(
                &mut self.rng,
                &[
                    (5, "s3.amazonaws.com"),
                    (2, "secretsmanager.amazonaws.com"),
                    (1, "ssm.amazonaws.com"),
                    (1, "lambda.amazonaws.com"),
                ],
            );
            let who = if self.rng.bool() {
                Who::Service(svc)
            } else {
                self.app_role(Some(svc))
            };
            (Caller::service(who, svc), Some(svc))
        } else {
            (self.caller_for(&mut ask, "kms", name), None)
        };
        let mut r = Record::call(self, caller, t, "kms.amazonaws.com", name);
        let rng = &mut self.rng;
        let context = match svc {
            Some("s3.amazonaws.com") | None => {
                let b = one(rng, &w.buckets);
                let key = b.key(rng, w, region);
                ("aws:s3:arn", format!("arn:aws:s3:::{}/{key}", b.name))
            }
            Some("secretsmanager.amazonaws.com") => (
                "SecretARN",
                w.secret_arn(region, rng.usize(..w.secrets.len())),
            ),
            Some("ssm.amazonaws.com") => (
                "PARAMETER_ARN",
                format!(
                    "arn:aws:ssm:{region}:{}:parameter{}",
                    w.account,
                    one(rng, &w.params)
                ),
            ),
            Some(_) => (
                "aws:lambda:FunctionArn",
                format!(
                    "arn:aws:lambda:{region}:{}:function:{}",
                    w.account,
                    one(rng, &["ingest-events", "thumbnail", "orders-webhook"])
                ),
            ),
        };
        let version = (context.0 == "SecretARN").then(|| ids::uuid(rng));
        r.request = Some(to_object(|o| {
            if name != "Decrypt" {
                o.str("keyId", &key_arn);
            }
            o.obj("encryptionContext", |c| {
                c.str(context.0, &context.1);
                if let Some(v) = &version {
                    c.str("SecretVersionId", v);
                }
            });
            if name == "GenerateDataKey" {
                o.str("keySpec", "AES_256");
            } else {
                o.str("encryptionAlgorithm", "SYMMETRIC_DEFAULT");
            }
        }));
        r.read_only = Some(true);
        r.resources = Some(resource(w, "AWS::KMS::Key", &key_arn));
        r.shared = svc_call;
        if !svc_call {
            r.tls = Some(self.tls(format!("kms.{region}.amazonaws.com")));
        }
        match ask.failure {
            Some(Failure::Other) if name == "Decrypt" => {
                r.fail("InvalidCiphertextException", String::new())
            }
            Some(_) => {
                let msg = not_authorized(&r.who.arn(w), &format!("kms:{name}"), Some(&key_arn));
                r.fail("AccessDeniedException", msg);
            }
            None => {}
        }
        r
    }

    pub fn ssm(&mut self, t: i64, mut ask: Ask<'w>) -> Record<'w> {
        let w = self.w;
        let name = ask.name.unwrap_or_else(|| {
            pick(
                &mut self.rng,
                &[
                    (55, "GetParameter"),
                    (20, "GetParameters"),
                    (10, "GetParametersByPath"),
                    (15, "DescribeInstanceInformation"),
                ],
            )
        });
        let caller = self.caller_for(&mut ask, "ssm", name);
        let mut r = Record::call(self, caller, t, "ssm.amazonaws.com", name);
        let rng = &mut self.rng;
        let param = *one(rng, &w.params);
        let other = *one(rng, &w.params);
        let decrypt = rng.bool();
        let inst = one(rng, &w.instances);
        r.request = Some(to_object(|o| match name {
            "GetParameter" => {
                o.str("name", param).bool("withDecryption", decrypt);
            }
            "GetParameters" => {
                o.strs("names", &[param, other])
                    .bool("withDecryption", true);
            }
            "GetParametersByPath" => {
                o.str("path", param.rsplit_once('/').map_or("/", |p| p.0))
                    .bool("recursive", true)
                    .bool("withDecryption", decrypt);
            }
            _ => {
                o.arr("filters", |a| {
                    a.obj(|f| {
                        f.str("key", "InstanceIds").strs("values", &[inst]);
                    });
                })
                .int("maxResults", 50);
            }
        }));
        r.read_only = Some(true);
        r.tls = Some(self.tls(format!("ssm.{}.amazonaws.com", self.region)));
        let res = format!("arn:aws:ssm:{}:{}:parameter{param}", self.region, w.account);
        match ask.failure {
            Some(Failure::Other) => r.fail("ParameterNotFound", String::new()),
            Some(Failure::Denied) => {
                let msg = not_authorized(&r.who.arn(w), &format!("ssm:{name}"), Some(&res));
                r.fail("AccessDeniedException", msg);
            }
            None => {}
        }
        r
    }

    pub fn secrets(&mut self, t: i64, mut ask: Ask<'w>) -> Record<'w> {
        let w = self.w;
        let name = ask.name.unwrap_or_else(|| {
            pick(
                &mut self.rng,
                &[
                    (75, "GetSecretValue"),
                    (20, "DescribeSecret"),
                    (5, "ListSecrets"),
                ],
            )
        });
        let caller = self.caller_for(&mut ask, "secretsmanager", name);
        let mut r = Record::call(self, caller, t, "secretsmanager.amazonaws.com", name);
        let arn = w.secret_arn(self.region, self.rng.usize(..w.secrets.len()));
        r.request = Some(if name == "ListSecrets" {
            to_object(|o| {
                o.int("maxResults", 100);
            })
        } else {
            to_object(|o| {
                o.str("secretId", &arn);
            })
        });
        r.read_only = Some(true);
        r.tls = Some(self.tls(format!("secretsmanager.{}.amazonaws.com", self.region)));
        match ask.failure {
            Some(Failure::Other) => r.fail(
                "ResourceNotFoundException",
                "Secrets Manager can't find the specified secret.".to_owned(),
            ),
            Some(Failure::Denied) => {
                let msg =
                    not_authorized(&r.who.arn(w), &format!("secretsmanager:{name}"), Some(&arn));
                r.fail("AccessDenied", msg);
            }
            None => {}
        }
        r
    }
}
