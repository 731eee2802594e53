//! Who makes a call: the `userIdentity` block of every identity type the detector
//! normalises, and the choice of a caller for an API.
//!
//! Role sessions are kept per file, so one session (an instance, a task, a person
//! signed in through IAM Identity Center) keeps its temporary key and creation time
//! across all its calls, as in a real trail: the same actor name recurs, which is
//! what thresholds and suppression group on.

use super::agents;
use super::ids::{self, B64URL, BASE32, HEX, chance, one, pick};
use super::json::Obj;
use super::record::Gen;
use super::world::{Person, Role, RoleKind, User, World};

/// The principal of one call.
#[derive(Clone)]
pub enum Who<'w> {
    /// Long-term keys, or a console session (`console` is its creation time).
    User {
        user: &'w User,
        key: String,
        console: Option<i64>,
    },
    /// A role session: an application's, a person's through Identity Center, or
    /// one an AWS service uses on the caller's behalf (`invoked_by`).
    Role {
        role: &'w Role,
        session: String,
        key: String,
        created: i64,
        invoked_by: Option<&'static str>,
    },
    Service(&'static str),
    Root,
    /// Identity Center's own identity (S3 Access Grants, Q, the CLI with
    /// identity-enhanced sessions).
    IdcUser {
        person: &'w Person,
        credential: String,
    },
    /// GitHub Actions exchanging its OIDC token.
    WebIdentity,
}

pub const GITHUB_SUBJECT: &str = "repo:nimbus-retail/orders-api:ref:refs/heads/main";

impl Who<'_> {
    /// The `userIdentity` members.
    pub fn write(&self, w: &World, o: &mut Obj) {
        let acct = w.account.as_str();
        match self {
            Who::User { user, key, console } => {
                o.str("type", "IAMUser")
                    .str("principalId", &user.id)
                    .str("arn", &format!("arn:aws:iam::{acct}:user/{}", user.name))
                    .str("accountId", acct)
                    .str("accessKeyId", key)
                    .str("userName", user.name);
                if let Some(created) = console {
                    o.obj("sessionContext", |s| {
                        s.empty_obj("sessionIssuer")
                            .empty_obj("webIdFederationData")
                            .obj("attributes", |a| {
                                a.str("creationDate", &ids::iso(*created))
                                    .str("mfaAuthenticated", "true");
                            });
                    });
                }
            }
            Who::Role {
                role,
                session,
                key,
                created,
                invoked_by,
            } => {
                o.str("type", "AssumedRole")
                    .str("principalId", &format!("{}:{session}", role.id))
                    .str(
                        "arn",
                        &format!("arn:aws:sts::{acct}:assumed-role/{}/{session}", role.name),
                    )
                    .str("accountId", acct)
                    .str("accessKeyId", key)
                    .obj("sessionContext", |s| {
                        s.obj("sessionIssuer", |i| {
                            i.str("type", "Role")
                                .str("principalId", &role.id)
                                .str(
                                    "arn",
                                    &format!("arn:aws:iam::{acct}:role{}{}", role.path, role.name),
                                )
                                .str("accountId", acct)
                                .str("userName", &role.name);
                        })
                        .empty_obj("webIdFederationData")
                        .obj("attributes", |a| {
                            a.str("creationDate", &ids::iso(*created)).str(
                                "mfaAuthenticated",
                                if role.kind == RoleKind::CrossAccount {
                                    "true"
                                } else {
                                    "false"
                                },
                            );
                        });
                    });
                if let Some(svc) = invoked_by {
                    o.str("invokedBy", svc);
                }
            }
            Who::Service(svc) => {
                o.str("type", "AWSService").str("invokedBy", svc);
            }
            Who::Root => {
                o.str("type", "Root")
                    .str("principalId", acct)
                    .str("arn", &format!("arn:aws:iam::{acct}:root"))
                    .str("accountId", acct)
                    .str("accessKeyId", "");
            }
            Who::IdcUser { person, credential } => {
                o.str("type", "IdentityCenterUser")
                    .str("accountId", acct)
                    .obj("onBehalfOf", |b| {
                        b.str("userId", &person.user_id).str(
                            "identityStoreArn",
                            &format!(
                                "arn:aws:identitystore::{acct}:identitystore/{}",
                                w.identity_store
                            ),
                        );
                    })
                    .str("credentialId", credential);
            }
            Who::WebIdentity => {
                o.str("type", "WebIdentityUser")
                    .str(
                        "principalId",
                        &format!(
                            "arn:aws:iam::{acct}:oidc-provider/token.actions.githubusercontent.com:sts.amazonaws.com:{GITHUB_SUBJECT}"
                        ),
                    )
                    .str("userName", GITHUB_SUBJECT)
                    .str(
                        "identityProvider",
                        &format!("arn:aws:iam::{acct}:oidc-provider/token.actions.githubusercontent.com"),
                    );
            }
        }
    }

    /// The ARN error messages name (empty when the identity has none).
    pub fn arn(&self, w: &World) -> String {
        let acct = &w.account;
        match self {
            Who::User { user, .. } => format!("arn:aws:iam::{acct}:user/{}", user.name),
            Who::Role { role, session, .. } => {
                format!("arn:aws:sts::{acct}:assumed-role/{}/{session}", role.name)
            }
            Who::Root => format!("arn:aws:iam::{acct}:root"),
            _ => String::new(),
        }
    }

    /// An AWS service calling, for itself or on someone's behalf: the source
    /// address and user agent are then the service's name.
    pub fn via_service(&self) -> Option<&'static str> {
        match self {
            Who::Service(s) => Some(s),
            Who::Role { invoked_by, .. } => *invoked_by,
            _ => None,
        }
    }
}

/// A caller with where it calls from and with what.
#[derive(Clone)]
pub struct Caller<'w> {
    pub who: Who<'w>,
    pub ip: String,
    pub ua: String,
    /// Console credentials (`sessionCredentialFromConsole`).
    pub console: bool,
}

impl<'w> Caller<'w> {
    /// An AWS service calling: its name is the source and the agent.
    pub fn service(who: Who<'w>, svc: &'static str) -> Caller<'w> {
        Caller {
            who,
            ip: svc.to_owned(),
            ua: svc.to_owned(),
            console: false,
        }
    }
}

impl<'w> Gen<'w> {
    /// An IAM user with one of its access keys, or in a console session (whose
    /// key is temporary).
    pub fn iam_user(&mut self, console: bool) -> Who<'w> {
        let w = self.w;
        let user = one(&mut self.rng, &w.users);
        if console {
            return Who::User {
                user,
                key: ids::prefixed(&mut self.rng, "ASIA", BASE32, 16),
                console: Some(self.session_start()),
            };
        }
        let key = user.keys[usize::from(chance(&mut self.rng, 0.2))].clone();
        Who::User {
            user,
            key,
            console: None,
        }
    }

    /// When a session seen in this file began: before the file's window.
    fn session_start(&mut self) -> i64 {
        self.t0 - 900 - i64::from(self.rng.u32(30..4 * 3600))
    }

    /// Role `role`'s session `session`, with the key it keeps in this file.
    pub fn session(
        &mut self,
        role: usize,
        session: String,
        invoked_by: Option<&'static str>,
    ) -> Who<'w> {
        let created = self.session_start();
        let (key, created) = match self.sessions.get(&(role, session.clone())) {
            Some(v) => v.clone(),
            None => {
                let v = (ids::prefixed(&mut self.rng, "ASIA", BASE32, 16), created);
                self.sessions.insert((role, session.clone()), v.clone());
                v
            }
        };
        Who::Role {
            role: &self.w.roles[role],
            session,
            key,
            created,
            invoked_by,
        }
    }

    /// An application role's session (one of a few per role in a file).
    pub fn app_role(&mut self, invoked_by: Option<&'static str>) -> Who<'w> {
        let role = self.rng.usize(..self.w.app_roles);
        self.app_session(role, invoked_by)
    }

    pub fn app_session(&mut self, role: usize, invoked_by: Option<&'static str>) -> Who<'w> {
        if !self.pools.contains_key(&role) {
            let r = &self.w.roles[role];
            let pool = (0..5)
                .map(|_| match r.kind {
                    RoleKind::Ec2 => one(&mut self.rng, &self.w.instances).clone(),
                    RoleKind::Lambda => r.name.trim_end_matches("-lambda").to_owned(),
                    RoleKind::Ecs => ids::chars(&mut self.rng, HEX, 32),
                    RoleKind::Glue => "GlueJobRunnerSession".to_owned(),
                    RoleKind::GitHub => "GitHubActions".to_owned(),
                    _ => format!(
                        "botocore-session-{}",
                        self.rng.u32(1_740_000_000..1_746_000_000)
                    ),
                })
                .collect();
            self.pools.insert(role, pool);
        }
        let pool = &self.pools[&role];
        let session = pool[self.rng.usize(..pool.len())].clone();
        self.session(role, session, invoked_by)
    }

    /// A person's Identity Center session: role `AWSReservedSSO_<set>_<hex>`,
    /// session name their email.
    pub fn sso(&mut self, invoked_by: Option<&'static str>) -> Who<'w> {
        let p = self.rng.usize(..self.w.people.len());
        self.sso_person(p, invoked_by)
    }

    pub fn sso_person(&mut self, p: usize, invoked_by: Option<&'static str>) -> Who<'w> {
        let person = &self.w.people[p];
        let role = person.sso_roles[usize::from(self.rng.bool())];
        self.session(role, person.email.clone(), invoked_by)
    }

    pub fn idc_user(&mut self) -> Who<'w> {
        let w = self.w;
        Who::IdcUser {
            person: one(&mut self.rng, &w.people),
            credential: ids::chars(&mut self.rng, B64URL, 56),
        }
    }

    pub fn terraform(&mut self) -> Who<'w> {
        let session = format!("terraform-run-{}", self.rng.u32(10_000..99_999));
        self.session(self.w.terraform, session, None)
    }

    /// A client calling a management API (`source`'s `name`): a workload, a person
    /// on the CLI or in the console, an IAM user, or Terraform.
    pub fn caller(&mut self, source: &str, name: &str) -> Caller<'w> {
        let w = self.w;
        let rng = &mut self.rng;
        match pick(rng, &[(40, 0), (25, 1), (12, 2), (15, 3), (8, 4)]) {
            0 => {
                let ua = agents::sdk(rng);
                let ip = one(rng, &w.nat_ips).clone();
                Caller {
                    who: self.app_role(None),
                    ip,
                    ua,
                    console: false,
                }
            }
            1 => {
                let ua = agents::cli(rng, &agents::cli_command(source, name));
                let ip = w.public_ip(rng).to_owned();
                Caller {
                    who: self.sso(None),
                    ip,
                    ua,
                    console: false,
                }
            }
            2 => {
                let ua = if rng.bool() {
                    agents::browser(rng)
                } else {
                    agents::CONSOLE.to_owned()
                };
                let ip = w.public_ip(rng).to_owned();
                Caller {
                    who: self.sso(None),
                    ip,
                    ua,
                    console: true,
                }
            }
            // An IAM user: keys on the CLI or in a script, or (one in five) the
            // console, with a console session's temporary key.
            3 => {
                let console = chance(rng, 0.2);
                let ua = if console {
                    agents::browser(rng)
                } else if rng.bool() {
                    agents::cli(rng, &agents::cli_command(source, name))
                } else {
                    agents::sdk(rng)
                };
                let ip = w.public_ip(rng).to_owned();
                Caller {
                    who: self.iam_user(console),
                    ip,
                    ua,
                    console,
                }
            }
            _ => {
                let api = source.split('.').next().unwrap_or(source);
                let ua = agents::terraform(api);
                let ip = one(rng, &w.nat_ips).clone();
                Caller {
                    who: self.terraform(),
                    ip,
                    ua,
                    console: false,
                }
            }
        }
    }
}
