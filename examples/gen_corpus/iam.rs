//! Identity-plane management events: IAM reads and writes (the policy and key
//! changes the identity rules watch for, some of them granting admin rights) and
//! console sign-ins, successful and failed.
//!
//! Kept apart from `mgmt.rs` because IAM's request shapes are the longest.

use super::agents;
use super::identity::{Caller, Who};
use super::ids::{self, BASE32, LOWER_ALNUM, chance, one, pick};
use super::json::to_object;
use super::mgmt::not_authorized;
use super::record::{Ask, Failure, Gen, Record};

impl<'w> Gen<'w> {
    /// A console sign-in: people through Identity Center, IAM users (some without
    /// MFA), root, and failed passwords.
    pub fn signin(&mut self, t: i64, ask: Ask<'w>) -> Record<'w> {
        let w = self.w;
        let failed = ask.failure.is_some();
        let kind = if failed {
            if chance(&mut self.rng, 0.1) { 2 } else { 1 }
        } else {
            pick(&mut self.rng, &[(60, 0), (30, 1), (6, 2), (4, 3)])
        };
        let who = match kind {
            0 => self.sso(None),
            1 => match self.iam_user(false) {
                Who::User { user, .. } => Who::User {
                    user,
                    key: String::new(),
                    console: None,
                },
                other => other,
            },
            2 => Who::Root,
            _ => self.idc_user(),
        };
        let ip = if failed && chance(&mut self.rng, 0.5) {
            one(&mut self.rng, &w.foreign_ips).clone()
        } else {
            w.public_ip(&mut self.rng).to_owned()
        };
        let ua = agents::browser(&mut self.rng);
        let caller = Caller {
            who,
            ip,
            ua,
            console: false,
        };
        let mut r = Record::call(self, caller, t, "signin.amazonaws.com", "ConsoleLogin");
        r.region = "us-east-1";
        r.request_id = None;
        r.event_type = "AwsConsoleSignIn";
        r.read_only = Some(false);
        let rng = &mut self.rng;
        // Identity Center sign-ins report MFA at Identity Center, not here; a
        // failed password never reaches MFA.
        let mfa = kind != 0 && !failed && (kind != 1 || chance(rng, 0.7));
        let state = ids::chars(rng, ids::HEX, 16);
        let region = self.region;
        r.extra = Some(to_object(|o| {
            if kind != 0 {
                o.str(
                    "LoginTo",
                    &format!("https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_{region}_{state}"),
                );
            }
            o.str("MobileVersion", "No")
                .str("MFAUsed", if mfa { "Yes" } else { "No" });
            if kind == 1 && mfa {
                o.str(
                    "MFAIdentifier",
                    &format!("arn:aws:iam::{}:mfa/authenticator", w.account),
                );
            }
        }));
        r.response = Some(to_object(|o| {
            o.str("ConsoleLogin", if failed { "Failure" } else { "Success" });
        }));
        if failed {
            r.error_message = Some("Failed authentication".to_owned());
        }
        r.tls = Some(self.tls("signin.aws.amazon.com".to_owned()));
        r
    }

    pub fn iam(&mut self, t: i64, mut ask: Ask<'w>) -> Record<'w> {
        let w = self.w;
        let name = ask.name.unwrap_or_else(|| {
            pick(
                &mut self.rng,
                &[
                    (20, "GetRole"),
                    (14, "ListRoles"),
                    (12, "ListAttachedRolePolicies"),
                    (10, "GetPolicy"),
                    (10, "GetPolicyVersion"),
                    (8, "ListUsers"),
                    (6, "GetUser"),
                    (6, "ListAccessKeys"),
                    (4, "AttachRolePolicy"),
                    (2, "AttachUserPolicy"),
                    (4, "PutRolePolicy"),
                    (2, "PutUserPolicy"),
                    (3, "CreateAccessKey"),
                    (3, "UpdateAssumeRolePolicy"),
                    (2, "CreateUser"),
                    (2, "TagRole"),
                ],
            )
        });
        let caller = self.caller_for(&mut ask, "iam", name);
        let mut r = Record::call(self, caller, t, "iam.amazonaws.com", name);
        r.region = "us-east-1";
        let rng = &mut self.rng;
        let role = &w.roles[rng.usize(..w.app_roles)];
        let user = one(rng, &w.users);
        let policy = format!(
            "arn:aws:iam::aws:policy/{}",
            one(
                rng,
                &[
                    "ReadOnlyAccess",
                    "AmazonS3FullAccess",
                    "AdministratorAccess",
                    "AmazonEC2ReadOnlyAccess",
                    "SecurityAudit",
                    "IAMFullAccess"
                ]
            )
        );
        let suffix = ids::chars(rng, LOWER_ALNUM, 6);
        let bucket = &one(rng, &w.buckets).name;
        let admin = chance(rng, 0.15);
        let other_acct = one(rng, &w.other_accounts);
        let cost = rng.u32(100..999);
        let version = rng.u32(1..40);
        let max = rng.bool();
        let new_user = format!(
            "{}-{}",
            one(rng, &["svc", "tmp", "contractor", "backup"]),
            ids::chars(rng, LOWER_ALNUM, 4)
        );
        let new_key = ids::prefixed(rng, "AKIA", BASE32, 16);
        let new_id = ids::prefixed(rng, "AIDA", BASE32, 17);
        let document = if admin {
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#.to_owned()
        } else {
            format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:ListBucket"],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}}]}}"#
            )
        };
        r.request = match name {
            "ListRoles" | "ListUsers" if !max => None,
            _ => Some(to_object(|o| match name {
                "GetRole" | "ListAttachedRolePolicies" => {
                    o.str("roleName", &role.name);
                }
                "TagRole" => {
                    o.str("roleName", &role.name).arr("tags", |a| {
                        a.obj(|x| {
                            x.str("key", "owner").str("value", "platform-team");
                        })
                        .obj(|x| {
                            x.str("key", "cost-center").str("value", &cost.to_string());
                        });
                    });
                }
                "ListRoles" | "ListUsers" => {
                    o.int("maxItems", 1000);
                }
                "GetPolicy" => {
                    o.str("policyArn", &policy);
                }
                "GetPolicyVersion" => {
                    o.str("policyArn", &policy)
                        .str("versionId", &format!("v{version}"));
                }
                "GetUser" | "ListAccessKeys" | "CreateAccessKey" => {
                    o.str("userName", user.name);
                }
                "AttachRolePolicy" => {
                    o.str("roleName", &role.name).str("policyArn", &policy);
                }
                "AttachUserPolicy" => {
                    o.str("userName", user.name).str("policyArn", &policy);
                }
                "PutRolePolicy" | "PutUserPolicy" => {
                    if name == "PutRolePolicy" {
                        o.str("roleName", &role.name);
                    } else {
                        o.str("userName", user.name);
                    }
                    o.str("policyName", &format!("inline-{suffix}"))
                        .str("policyDocument", &document);
                }
                "UpdateAssumeRolePolicy" => {
                    o.str("roleName", &role.name).str(
                        "policyDocument",
                        &format!(
                            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{other_acct}:root"}},"Action":"sts:AssumeRole"}}]}}"#
                        ),
                    );
                }
                _ => {
                    o.str("userName", &new_user);
                }
            })),
        };
        let acct = &w.account;
        r.response = match name {
            "CreateAccessKey" => Some(to_object(|o| {
                o.obj("accessKey", |k| {
                    k.str("userName", user.name)
                        .str("accessKeyId", &new_key)
                        .str("status", "Active")
                        .str("createDate", &ids::human(t));
                });
            })),
            "CreateUser" => Some(to_object(|o| {
                o.obj("user", |u| {
                    u.str("path", "/")
                        .str("userName", &new_user)
                        .str("userId", &new_id)
                        .str("arn", &format!("arn:aws:iam::{acct}:user/{new_user}"))
                        .str("createDate", &ids::human(t));
                });
            })),
            _ => None,
        };
        r.read_only = Some(name.starts_with("Get") || name.starts_with("List"));
        r.tls = Some(self.tls("iam.amazonaws.com".to_owned()));
        match ask.failure {
            Some(Failure::Other) if name.starts_with("Get") => {
                let msg = format!("The role with name {} cannot be found.", role.name);
                r.fail("NoSuchEntity", msg);
            }
            Some(_) => {
                let target = if name.contains("User") || name.contains("AccessKey") {
                    format!("arn:aws:iam::{acct}:user/{}", user.name)
                } else {
                    format!("arn:aws:iam::{acct}:role{}{}", role.path, role.name)
                };
                let msg = not_authorized(&r.who.arn(w), &format!("iam:{name}"), Some(&target));
                r.fail("AccessDenied", msg);
            }
            None => {}
        }
        r
    }
}
