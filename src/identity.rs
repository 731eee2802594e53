//! Who made a call: the `actor.*` fields, normalised from CloudTrail's `userIdentity`.
//!
//! CloudTrail names the same human in different places depending on how they signed
//! in. An IAM Identity Center (SSO) user arrives as an `AssumedRole` of a role named
//! `AWSReservedSSO_<PermissionSet>_<16 hex>` whose *session name* is the user (usually
//! an e-mail address); `userName` is never theirs. Since 2025 some calls are logged as
//! `IdentityCenterUser` instead. `actor.name` always holds the human (or service) so a
//! rule can say "who" without knowing which form a record took.

use serde_json::Value;

/// The kind of principal behind a call (`actor.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Root,
    IamUser,
    SsoUser,
    AssumedRole,
    IdentityCenterUser,
    AwsService,
    FederatedUser,
    WebIdentityUser,
    AwsAccount,
    Unknown,
}

impl ActorKind {
    pub const ALL: [ActorKind; 10] = [
        ActorKind::Root,
        ActorKind::IamUser,
        ActorKind::SsoUser,
        ActorKind::AssumedRole,
        ActorKind::IdentityCenterUser,
        ActorKind::AwsService,
        ActorKind::FederatedUser,
        ActorKind::WebIdentityUser,
        ActorKind::AwsAccount,
        ActorKind::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Root => "root",
            ActorKind::IamUser => "iam_user",
            ActorKind::SsoUser => "sso_user",
            ActorKind::AssumedRole => "assumed_role",
            ActorKind::IdentityCenterUser => "identity_center_user",
            ActorKind::AwsService => "aws_service",
            ActorKind::FederatedUser => "federated_user",
            ActorKind::WebIdentityUser => "web_identity_user",
            ActorKind::AwsAccount => "aws_account",
            ActorKind::Unknown => "unknown",
        }
    }
}

/// The normalised principal of one record. Absent values are `None`, never "".
/// Serialised as the `actor` object of alerts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub name: Option<String>,
    pub arn: Option<String>,
    pub account: Option<String>,
    pub principal_id: Option<String>,
    pub role: Option<String>,
    pub session: Option<String>,
    pub permission_set: Option<String>,
    pub user_id: Option<String>,
    pub via_console: Option<bool>,
    pub mfa: Option<bool>,
}

/// The prefix IAM Identity Center gives the roles it provisions for permission sets.
const SSO_ROLE_PREFIX: &str = "AWSReservedSSO_";

/// A scalar at a path of object keys in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf<'a> {
    Str(&'a str),
    Bool(bool),
    /// A number, an object or an array: nothing identity reads.
    Other,
}

/// How identity reads a record. A record read from a file answers from its text
/// (no tree is built for `userIdentity`, which every alert normalises); a tree
/// answers from the tree.
pub trait Fields<'a> {
    /// The value at `path` (object keys, starting at the top level; arrays are not
    /// crossed), `None` when absent or `null`.
    fn leaf(&self, path: &[&str]) -> Option<Leaf<'a>>;
    /// A top-level field as a tree, for the rare reads that need one.
    fn tree(&self, key: &str) -> Option<&'a Value>;
}

impl<'a> Fields<'a> for &'a Value {
    fn leaf(&self, path: &[&str]) -> Option<Leaf<'a>> {
        let mut cur: &'a Value = self;
        for k in path {
            cur = cur.get(k)?;
        }
        Some(match cur {
            Value::Null => return None,
            Value::String(s) => Leaf::Str(s),
            Value::Bool(b) => Leaf::Bool(*b),
            _ => Leaf::Other,
        })
    }

    fn tree(&self, key: &str) -> Option<&'a Value> {
        self.get(key)
    }
}

fn s<'a>(r: &dyn Fields<'a>, path: &[&str]) -> Option<&'a str> {
    match r.leaf(path)? {
        Leaf::Str(x) if !x.is_empty() => Some(x),
        _ => None,
    }
}

/// `"true"`/`true` → true, `"false"`/`false` → false (CloudTrail uses both forms).
fn flag(v: Option<Leaf<'_>>) -> Option<bool> {
    match v? {
        Leaf::Bool(b) => Some(b),
        Leaf::Str(s) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("yes") => {
            Some(true)
        }
        Leaf::Str(s) if s.eq_ignore_ascii_case("false") || s.eq_ignore_ascii_case("no") => {
            Some(false)
        }
        _ => None,
    }
}

/// Splits `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION` into (account, role, session).
fn parse_assumed_role_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (_arn, _partition, _service, _region) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let account = parts.next()?;
    let resource = parts.next()?;
    let rest = resource.strip_prefix("assumed-role/")?;
    let (role, session) = rest.split_once('/')?;
    Some((account, role, session))
}

/// The account field of any ARN (`arn:partition:service:region:account:resource`).
fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// The permission set of an SSO role: `AWSReservedSSO_<set>_<16 hex>` → `<set>`.
/// Permission set names may themselves contain underscores, so only the last `_` and
/// a 16-hex-digit suffix are removed.
pub fn permission_set(role: &str) -> Option<&str> {
    let rest = role.strip_prefix(SSO_ROLE_PREFIX)?;
    match rest.rsplit_once('_') {
        Some((set, hex))
            if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !set.is_empty() =>
        {
            Some(set)
        }
        _ => Some(rest).filter(|r| !r.is_empty()),
    }
}

/// The user name of an `IdentityCenterUser` call, which AWS places in
/// `additionalEventData` (the key's capitalisation has varied).
fn identity_center_user_name<'a>(r: &dyn Fields<'a>) -> Option<&'a str> {
    let extra = r.tree("additionalEventData")?.as_object()?;
    extra
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("userName"))
        .and_then(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Normalises the principal of one CloudTrail record. Never fails: what cannot be
/// determined stays `None`, and an unrecognised `type` is `unknown`.
pub fn actor(record: &Value) -> Actor {
    actor_with(&record)
}

/// [`actor`] over a record however it is stored.
pub fn actor_with<'a>(r: &dyn Fields<'a>) -> Actor {
    const UI: &str = "userIdentity";
    let ty = s(r, &[UI, "type"]);
    let arn = s(r, &[UI, "arn"]).map(str::to_owned);
    let principal_id = s(r, &[UI, "principalId"]).map(str::to_owned);
    let account = s(r, &[UI, "accountId"])
        .or_else(|| arn.as_deref().and_then(arn_account))
        .map(str::to_owned);
    let user_name = s(r, &[UI, "userName"]);
    let via_console = flag(r.leaf(&["sessionCredentialFromConsole"]));
    let mfa = flag(r.leaf(&[UI, "sessionContext", "attributes", "mfaAuthenticated"]))
        .or_else(|| flag(r.leaf(&["additionalEventData", "MFAUsed"])));

    let mut a = Actor {
        kind: ActorKind::Unknown,
        name: None,
        arn,
        account,
        principal_id,
        role: None,
        session: None,
        permission_set: None,
        user_id: None,
        via_console,
        mfa,
    };
    let after_last_slash = |arn: &Option<String>| {
        arn.as_deref()
            .and_then(|x| x.rsplit_once('/'))
            .map(|(_, n)| n.to_owned())
    };
    let after_colon = |p: &Option<String>| {
        p.as_deref()
            .and_then(|x| x.split_once(':'))
            .map(|(_, n)| n.to_owned())
    };

    match ty {
        Some("Root") => {
            a.kind = ActorKind::Root;
            a.name = Some("root".into());
        }
        Some("IAMUser") => {
            a.kind = ActorKind::IamUser;
            a.name = user_name
                .map(str::to_owned)
                .or_else(|| after_last_slash(&a.arn));
        }
        Some("AssumedRole") => {
            let from_arn = a.arn.as_deref().and_then(parse_assumed_role_arn);
            let role = s(r, &[UI, "sessionContext", "sessionIssuer", "userName"])
                .or(from_arn.map(|(_, r, _)| r))
                .map(str::to_owned);
            let session = from_arn
                .map(|(_, _, s)| s.to_owned())
                .or_else(|| after_colon(&a.principal_id));
            a.permission_set = role.as_deref().and_then(permission_set).map(str::to_owned);
            if a.permission_set.is_some() {
                a.kind = ActorKind::SsoUser;
                a.name = session.clone();
            } else {
                a.kind = ActorKind::AssumedRole;
                a.name = match (&role, &session) {
                    (Some(r), Some(s)) => Some(format!("{r}/{s}")),
                    (Some(r), None) => Some(r.clone()),
                    (None, Some(s)) => Some(s.clone()),
                    (None, None) => None,
                };
            }
            a.role = role;
            a.session = session;
        }
        Some("IdentityCenterUser") => {
            a.kind = ActorKind::IdentityCenterUser;
            a.user_id = s(r, &[UI, "onBehalfOf", "userId"]).map(str::to_owned);
            a.name = identity_center_user_name(r)
                .map(str::to_owned)
                .or_else(|| a.user_id.clone());
        }
        Some("AWSService") => {
            a.kind = ActorKind::AwsService;
            a.name = s(r, &[UI, "invokedBy"])
                .or(s(r, &["sourceIPAddress"]))
                .map(str::to_owned);
        }
        Some("FederatedUser") | Some("SAMLUser") => {
            a.kind = ActorKind::FederatedUser;
            a.name = user_name
                .map(str::to_owned)
                .or_else(|| after_last_slash(&a.arn))
                .or_else(|| after_colon(&a.principal_id));
        }
        Some("WebIdentityUser") => {
            a.kind = ActorKind::WebIdentityUser;
            a.name = user_name
                .map(str::to_owned)
                .or_else(|| after_colon(&a.principal_id))
                .or_else(|| a.principal_id.clone());
        }
        Some("AWSAccount") => {
            a.kind = ActorKind::AwsAccount;
            a.name = a.principal_id.clone().or_else(|| a.account.clone());
        }
        _ => {
            a.name = user_name
                .map(str::to_owned)
                .or_else(|| a.principal_id.clone());
        }
    }
    a
}

/// The principal of an S3 server access log line, from its `requester` field: an
/// IAM or STS ARN, a canonical user ID, an AWS service (`svc:...`), or absent for an
/// anonymous request (`actor.kind = "unknown"`, `actor.name = "anonymous"`).
pub fn actor_from_requester(requester: Option<&str>) -> Actor {
    let Some(req) = requester.filter(|r| !r.is_empty() && *r != "-") else {
        let mut a = actor(&serde_json::json!({}));
        a.name = Some("anonymous".into());
        return a;
    };
    let ty = if req.contains(":assumed-role/") {
        "AssumedRole"
    } else if req.contains(":federated-user/") {
        "FederatedUser"
    } else if req.starts_with("arn:") && req.ends_with(":root") {
        "Root"
    } else if req.starts_with("arn:") && req.contains(":user/") {
        "IAMUser"
    } else if let Some(svc) = req.strip_prefix("svc:") {
        return actor(
            &serde_json::json!({"userIdentity": {"type": "AWSService", "invokedBy": svc}}),
        );
    } else {
        return actor(&serde_json::json!({"userIdentity": {"principalId": req}}));
    };
    actor(&serde_json::json!({"userIdentity": {"type": ty, "arn": req}}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_serialise_as_their_names() {
        for k in ActorKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn permission_set_names_keep_their_own_underscores() {
        let cases = [
            (
                "AWSReservedSSO_AdministratorAccess_5c1f2a3b4d5e6f70",
                Some("AdministratorAccess"),
            ),
            (
                "AWSReservedSSO_Data_Eng_ReadOnly_0123456789abcdef",
                Some("Data_Eng_ReadOnly"),
            ),
            ("AWSReservedSSO_Odd", Some("Odd")),
            ("AWSReservedSSO_", None),
            ("MyRole", None),
        ];
        for (role, want) in cases {
            assert_eq!(permission_set(role), want, "role {role}");
        }
    }

    #[test]
    fn sso_user_is_the_session_name_not_user_name() {
        let r = json!({"userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE:jane.doe@example.com",
            "arn": "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_S3Admins_0a1b2c3d4e5f6789/jane.doe@example.com",
            "accountId": "111122223333",
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "userName": "AWSReservedSSO_S3Admins_0a1b2c3d4e5f6789"},
                "attributes": {"mfaAuthenticated": "false"}
            }
        }, "sessionCredentialFromConsole": "true"});
        let a = actor(&r);
        assert_eq!(a.kind, ActorKind::SsoUser);
        assert_eq!(a.name.as_deref(), Some("jane.doe@example.com"));
        assert_eq!(a.permission_set.as_deref(), Some("S3Admins"));
        assert_eq!(
            a.role.as_deref(),
            Some("AWSReservedSSO_S3Admins_0a1b2c3d4e5f6789")
        );
        assert_eq!(a.account.as_deref(), Some("111122223333"));
        assert_eq!(a.via_console, Some(true));
        assert_eq!(a.mfa, Some(false));
    }

    #[test]
    fn other_assumed_roles_are_role_slash_session() {
        let r = json!({"userIdentity": {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/etl-runner/i-0abc",
        }});
        let a = actor(&r);
        assert_eq!(a.kind, ActorKind::AssumedRole);
        assert_eq!(a.name.as_deref(), Some("etl-runner/i-0abc"));
        assert_eq!(
            a.account.as_deref(),
            Some("111122223333"),
            "account falls back to the ARN"
        );
        assert_eq!(a.permission_set, None);
    }

    #[test]
    fn identity_center_user_prefers_the_user_name() {
        let mut r = json!({"userIdentity": {
            "type": "IdentityCenterUser", "accountId": "111122223333",
            "onBehalfOf": {"userId": "94482488-3041-7026-18f3-be45837cd0e4",
                           "identityStoreArn": "arn:aws:identitystore::111122223333:identitystore/d-1234567890"}
        }});
        let a = actor(&r);
        assert_eq!(a.kind, ActorKind::IdentityCenterUser);
        assert_eq!(
            a.name.as_deref(),
            Some("94482488-3041-7026-18f3-be45837cd0e4")
        );
        r["additionalEventData"] = json!({"UserName": "jane"});
        let a = actor(&r);
        assert_eq!(a.name.as_deref(), Some("jane"));
        assert_eq!(
            a.user_id.as_deref(),
            Some("94482488-3041-7026-18f3-be45837cd0e4")
        );
    }

    #[test]
    fn simple_kinds() {
        let cases = [
            (
                json!({"type": "Root", "arn": "arn:aws:iam::1:root"}),
                ActorKind::Root,
                Some("root"),
            ),
            (
                json!({"type": "IAMUser", "userName": "alice"}),
                ActorKind::IamUser,
                Some("alice"),
            ),
            (
                json!({"type": "IAMUser", "arn": "arn:aws:iam::1:user/ops/bob"}),
                ActorKind::IamUser,
                Some("bob"),
            ),
            (
                json!({"type": "AWSService", "invokedBy": "cloudtrail.amazonaws.com"}),
                ActorKind::AwsService,
                Some("cloudtrail.amazonaws.com"),
            ),
            (
                json!({"type": "FederatedUser", "arn": "arn:aws:sts::1:federated-user/carol"}),
                ActorKind::FederatedUser,
                Some("carol"),
            ),
            (
                json!({"type": "WebIdentityUser", "userName": "sub-123"}),
                ActorKind::WebIdentityUser,
                Some("sub-123"),
            ),
            (
                json!({"type": "AWSAccount", "principalId": "AROAX:s", "accountId": "2"}),
                ActorKind::AwsAccount,
                Some("AROAX:s"),
            ),
            (
                json!({"type": "Unknown", "userName": "victim"}),
                ActorKind::Unknown,
                Some("victim"),
            ),
            (json!({}), ActorKind::Unknown, None),
        ];
        for (ui, kind, name) in cases {
            let a = actor(&json!({ "userIdentity": ui }));
            assert_eq!(
                (a.kind, a.name.as_deref()),
                (kind, name),
                "userIdentity {ui}"
            );
        }
    }

    #[test]
    fn access_log_requesters() {
        let sso = actor_from_requester(Some(
            "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_S3DataAdmins_0a1b2c3d4e5f6789/jane.doe@example.com",
        ));
        assert_eq!(
            (sso.kind, sso.name.as_deref()),
            (ActorKind::SsoUser, Some("jane.doe@example.com"))
        );
        assert_eq!(sso.account.as_deref(), Some("111122223333"));
        let user = actor_from_requester(Some("arn:aws:iam::111122223333:user/ci-deployer"));
        assert_eq!(
            (user.kind, user.name.as_deref()),
            (ActorKind::IamUser, Some("ci-deployer"))
        );
        assert_eq!(
            actor_from_requester(Some("arn:aws:iam::111122223333:root")).kind,
            ActorKind::Root
        );
        assert_eq!(
            actor_from_requester(Some("svc:logging.s3.amazonaws.com")).kind,
            ActorKind::AwsService
        );
        let canon = actor_from_requester(Some(
            "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be",
        ));
        assert_eq!(canon.kind, ActorKind::Unknown);
        assert_eq!(
            canon.principal_id.as_deref(),
            Some("79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be")
        );
        let anon = actor_from_requester(None);
        assert_eq!(
            (anon.kind, anon.name.as_deref()),
            (ActorKind::Unknown, Some("anonymous"))
        );
    }

    #[test]
    fn missing_or_null_user_identity_is_unknown() {
        assert_eq!(
            actor(&json!({"userIdentity": null})).kind,
            ActorKind::Unknown
        );
        assert_eq!(actor(&json!({"eventName": "x"})).kind, ActorKind::Unknown);
    }
}
