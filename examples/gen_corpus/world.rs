//! The fixed cast of one seed: the account, its IAM users, roles, Identity Center
//! people, buckets, keys, instances and networks.
//!
//! Real trails are repetitive: the same few hundred principals call the same APIs
//! on the same resources all day. Rules that group or count (thresholds, distinct
//! keys, suppression) only behave as they do in production when the corpus has
//! that shape, so every file draws its actors and resources from this one world,
//! built from the seed alone, instead of inventing new ones per record.

use fastrand::Rng;

use super::ids::{self, BASE32, DIGITS, HEX, LETTERS, one};

pub const REGIONS: [&str; 5] = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
];

/// An IAM user with two long-term access keys.
pub struct User {
    pub name: &'static str,
    pub id: String,
    pub keys: [String; 2],
}

/// Who assumes a role, which decides its session names and callers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// An instance profile: sessions named after instance IDs.
    Ec2,
    Lambda,
    /// ECS tasks: sessions named after the task ID.
    Ecs,
    Glue,
    /// GitHub Actions through OIDC.
    GitHub,
    /// Assumed from another account (administration, a vendor's integration).
    CrossAccount,
    /// An IAM Identity Center permission set (`AWSReservedSSO_<set>_<hex>`).
    Sso,
    Terraform,
}

pub struct Role {
    pub name: String,
    pub id: String,
    /// `/`, `/service-role/` or `/aws-reserved/sso.amazonaws.com/<region>/`.
    pub path: String,
    pub kind: RoleKind,
}

impl Role {
    pub fn service(&self) -> Option<&'static str> {
        match self.kind {
            RoleKind::Ec2 => Some("ec2.amazonaws.com"),
            RoleKind::Lambda => Some("lambda.amazonaws.com"),
            RoleKind::Ecs => Some("ecs-tasks.amazonaws.com"),
            RoleKind::Glue => Some("glue.amazonaws.com"),
            _ => None,
        }
    }
}

/// A person in Identity Center, with the two permission sets assigned to them.
pub struct Person {
    pub email: String,
    pub user_id: String,
    pub sso_roles: [usize; 2],
}

/// What a bucket holds, which decides its keys' shapes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BucketKind {
    DataLake,
    Uploads,
    Assets,
    Backups,
    CloudTrail,
    Config,
    Athena,
    TfState,
    Reports,
    Artifacts,
}

pub struct Bucket {
    pub name: String,
    pub kind: BucketKind,
}

pub struct World {
    pub account: String,
    pub other_accounts: Vec<String>,
    pub identity_store: String,
    pub users: Vec<User>,
    /// Application roles, then the SSO permission-set roles, then Terraform's.
    pub roles: Vec<Role>,
    pub app_roles: usize,
    pub terraform: usize,
    pub people: Vec<Person>,
    pub buckets: Vec<Bucket>,
    pub kms_keys: Vec<String>,
    /// Offices and VPN egress (documentation ranges).
    pub office_ips: Vec<String>,
    /// People working from elsewhere.
    pub remote_ips: Vec<String>,
    /// Private addresses of workloads reaching S3 through an endpoint.
    pub vpc_ips: Vec<String>,
    /// NAT gateways' public addresses: the workloads' calls to public endpoints.
    pub nat_ips: Vec<String>,
    /// Addresses nobody in the company uses: where leaked keys get tried from.
    pub foreign_ips: Vec<String>,
    pub vpce: String,
    pub instances: Vec<String>,
    pub security_groups: Vec<String>,
    pub vpcs: Vec<String>,
    pub volumes: Vec<String>,
    pub params: Vec<&'static str>,
    /// Secret names with their fixed six-letter ARN suffix.
    pub secrets: Vec<(&'static str, String)>,
}

const USERS: [&str; 10] = [
    "j.doe",
    "ops-breakglass",
    "ci-deploy",
    "backup-agent",
    "etl-loader",
    "legacy-billing",
    "reporting-bot",
    "k.ito",
    "datadog-ro",
    "s.patel",
];

const APP_ROLES: [(&str, RoleKind); 12] = [
    ("web-frontend-ec2", RoleKind::Ec2),
    ("analytics-emr-ec2", RoleKind::Ec2),
    ("eks-node-workers", RoleKind::Ec2),
    ("orders-api-task", RoleKind::Ecs),
    ("payments-worker-task", RoleKind::Ecs),
    ("ingest-events-lambda", RoleKind::Lambda),
    ("thumbnail-lambda", RoleKind::Lambda),
    ("nightly-etl-glue", RoleKind::Glue),
    ("gha-deploy", RoleKind::GitHub),
    ("OrganizationAccountAccessRole", RoleKind::CrossAccount),
    ("vendor-monitoring-readonly", RoleKind::CrossAccount),
    ("data-science-notebooks", RoleKind::Ec2),
];

const PERMISSION_SETS: [&str; 7] = [
    "AdministratorAccess",
    "ReadOnlyAccess",
    "PowerUserAccess",
    "DataScientist",
    "SecurityAuditor",
    "S3DataAdmins",
    "BillingViewer",
];

const FIRST: [&str; 24] = [
    "amara", "bruno", "chen", "dalia", "emeka", "fatima", "goran", "hana", "ines", "jonas",
    "keiko", "lars", "mei", "nadia", "oscar", "priya", "quentin", "rosa", "sven", "tariq", "ugo",
    "vera", "wen", "yusuf",
];
const LAST: [&str; 12] = [
    "almeida",
    "brandt",
    "castillo",
    "dubois",
    "eriksen",
    "fujita",
    "haddad",
    "ivanova",
    "jensen",
    "kowalczyk",
    "lindqvist",
    "moreau",
];

impl World {
    pub fn new(seed: u64) -> World {
        let rng = &mut Rng::with_seed(seed);
        let digits = |rng: &mut Rng| {
            // Account IDs never start with 0 in practice.
            let mut s = ids::chars(rng, b"123456789", 1);
            ids::push_chars(&mut s, rng, DIGITS, 11);
            s
        };
        let account = digits(rng);
        let other_accounts = (0..4).map(|_| digits(rng)).collect();
        let identity_store = ids::prefixed(rng, "d-", HEX, 10);
        // Identity Center's home region, in its roles' paths.
        let sso_region = "us-east-1";

        let users = USERS
            .iter()
            .map(|&name| User {
                name,
                id: ids::prefixed(rng, "AIDA", BASE32, 17),
                keys: [
                    ids::prefixed(rng, "AKIA", BASE32, 16),
                    ids::prefixed(rng, "AKIA", BASE32, 16),
                ],
            })
            .collect();

        let mut roles: Vec<Role> = APP_ROLES
            .iter()
            .map(|&(name, kind)| Role {
                name: name.to_owned(),
                id: ids::prefixed(rng, "AROA", BASE32, 17),
                path: match kind {
                    RoleKind::Lambda | RoleKind::Glue => "/service-role/".to_owned(),
                    _ => "/".to_owned(),
                },
                kind,
            })
            .collect();
        let app_roles = roles.len();
        for ps in PERMISSION_SETS {
            roles.push(Role {
                name: format!("AWSReservedSSO_{ps}_{}", ids::chars(rng, HEX, 16)),
                id: ids::prefixed(rng, "AROA", BASE32, 17),
                path: format!("/aws-reserved/sso.amazonaws.com/{sso_region}/"),
                kind: RoleKind::Sso,
            });
        }
        let terraform = roles.len();
        roles.push(Role {
            name: "terraform-apply".to_owned(),
            id: ids::prefixed(rng, "AROA", BASE32, 17),
            path: "/automation/".to_owned(),
            kind: RoleKind::Terraform,
        });

        let people = (0..28)
            .map(|_| {
                let (f, l) = (*one(rng, &FIRST), *one(rng, &LAST));
                let a = app_roles + rng.usize(..PERMISSION_SETS.len());
                let mut b = app_roles + rng.usize(..PERMISSION_SETS.len());
                if b == a {
                    b = app_roles + (b - app_roles + 1) % PERMISSION_SETS.len();
                }
                Person {
                    email: format!("{f}.{l}@nimbus-retail.example"),
                    user_id: format!(
                        "{}-{}-{}-{}-{}",
                        ids::chars(rng, HEX, 8),
                        ids::chars(rng, HEX, 4),
                        ids::chars(rng, HEX, 4),
                        ids::chars(rng, HEX, 4),
                        ids::chars(rng, HEX, 12)
                    ),
                    sso_roles: [a, b],
                }
            })
            .collect();

        let a = &account;
        let trail_suffix = ids::chars(rng, HEX, 8);
        let buckets = [
            (format!("nimbus-datalake-raw-{a}"), BucketKind::DataLake),
            (format!("nimbus-datalake-curated-{a}"), BucketKind::DataLake),
            (
                "nimbus-customer-uploads-prod".to_owned(),
                BucketKind::Uploads,
            ),
            ("nimbus-web-assets-prod".to_owned(), BucketKind::Assets),
            (format!("nimbus-db-backups-{a}"), BucketKind::Backups),
            (
                format!("aws-cloudtrail-logs-{a}-{trail_suffix}"),
                BucketKind::CloudTrail,
            ),
            (format!("config-bucket-{a}"), BucketKind::Config),
            (
                format!("aws-athena-query-results-{a}-us-east-1"),
                BucketKind::Athena,
            ),
            ("nimbus-ml-features".to_owned(), BucketKind::DataLake),
            (format!("nimbus-terraform-state-{a}"), BucketKind::TfState),
            ("nimbus-finance-reports".to_owned(), BucketKind::Reports),
            ("nimbus-build-artifacts".to_owned(), BucketKind::Artifacts),
        ]
        .into_iter()
        .map(|(name, kind)| Bucket { name, kind })
        .collect();

        let kms_keys = (0..6).map(|_| ids::uuid(rng)).collect();
        let octet = |rng: &mut Rng| rng.u32(2..=250);
        let office_ips = (0..6)
            .map(|_| format!("198.51.100.{}", octet(rng)))
            .collect();
        let mut remote_ips: Vec<String> = (0..8)
            .map(|_| format!("203.0.113.{}", octet(rng)))
            .collect();
        for _ in 0..3 {
            remote_ips.push(format!(
                "2001:db8:{:x}:{:x}::{:x}",
                rng.u32(..0x10000),
                rng.u32(..0x10000),
                rng.u32(1..0x1000)
            ));
        }
        let vpc_ips = (0..12)
            .map(|_| format!("10.{}.{}.{}", rng.u32(..256), rng.u32(..256), octet(rng)))
            .collect();
        let nat_ips = (0..4)
            .map(|_| format!("203.0.113.{}", octet(rng)))
            .collect();
        let foreign_ips = (0..4).map(|_| format!("192.0.2.{}", octet(rng))).collect();
        let many = |rng: &mut Rng, prefix: &str, n: usize| -> Vec<String> {
            (0..n)
                .map(|_| ids::prefixed(rng, prefix, HEX, 17))
                .collect()
        };
        World {
            vpce: ids::prefixed(rng, "vpce-", HEX, 17),
            instances: many(rng, "i-", 40),
            security_groups: many(rng, "sg-", 10),
            vpcs: many(rng, "vpc-", 3),
            volumes: many(rng, "vol-", 30),
            params: vec![
                "/prod/orders/db-url",
                "/prod/payments/api-endpoint",
                "/prod/shared/feature-flags",
                "/staging/orders/db-url",
                "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
            ],
            secrets: [
                "prod/orders/db",
                "prod/payments/stripe-key",
                "ci/github-token",
                "prod/ml/api-key",
            ]
            .into_iter()
            .map(|s| (s, ids::chars(rng, LETTERS, 6)))
            .collect(),
            account,
            other_accounts,
            identity_store,
            users,
            roles,
            app_roles,
            terraform,
            people,
            buckets,
            kms_keys,
            office_ips,
            remote_ips,
            vpc_ips,
            nat_ips,
            foreign_ips,
        }
    }

    /// The first bucket of a kind.
    pub fn bucket_of(&self, kind: BucketKind) -> usize {
        self.buckets.iter().position(|b| b.kind == kind).unwrap()
    }

    /// A public address a person or an on-premises job calls from.
    pub fn public_ip(&self, rng: &mut Rng) -> &str {
        if rng.u32(..10) < 6 {
            one(rng, &self.office_ips).as_str()
        } else {
            one(rng, &self.remote_ips).as_str()
        }
    }

    pub fn secret_arn(&self, region: &str, i: usize) -> String {
        let (name, suffix) = &self.secrets[i];
        format!(
            "arn:aws:secretsmanager:{region}:{}:secret:{name}-{suffix}",
            self.account
        )
    }

    pub fn kms_arn(&self, region: &str, i: usize) -> String {
        format!(
            "arn:aws:kms:{region}:{}:key/{}",
            self.account, self.kms_keys[i]
        )
    }
}

impl Bucket {
    /// An object key of the shape this bucket holds.
    pub fn key(&self, rng: &mut Rng, w: &World, region: &str) -> String {
        let a = &w.account;
        match self.kind {
            BucketKind::CloudTrail => format!(
                "AWSLogs/{a}/CloudTrail/{region}/2025/04/30/{a}_CloudTrail_{region}_20250430T{:02}{:02}Z_{}.json.gz",
                rng.u32(..24),
                rng.u32(..12) * 5,
                ids::chars(rng, ids::ALNUM, 16)
            ),
            BucketKind::Config => format!(
                "AWSLogs/{a}/Config/{region}/2025/4/30/ConfigHistory/{a}_Config_{region}_ConfigHistory_AWS::{}_20250430T{:02}{:02}{:02}Z_20250430T{:02}{:02}{:02}Z_1.json.gz",
                one(
                    rng,
                    &[
                        "EC2::Instance",
                        "S3::Bucket",
                        "IAM::Role",
                        "EC2::SecurityGroup"
                    ]
                ),
                rng.u32(..12),
                rng.u32(..60),
                rng.u32(..60),
                rng.u32(12..24),
                rng.u32(..60),
                rng.u32(..60)
            ),
            BucketKind::Athena => format!(
                "{}/{}.{}",
                one(
                    rng,
                    &["adhoc", "scheduled/daily-revenue", "scheduled/churn"]
                ),
                ids::uuid(rng),
                one(rng, &["csv", "csv.metadata", "txt"])
            ),
            BucketKind::TfState => format!(
                "env:/{}/{}/terraform.tfstate",
                one(rng, &["prod", "staging", "dev"]),
                one(
                    rng,
                    &[
                        "network",
                        "iam",
                        "data-platform",
                        "apps/orders",
                        "apps/payments"
                    ]
                )
            ),
            BucketKind::DataLake => format!(
                "{}/{}/dt=2025-04-{:02}/hour={:02}/part-{:05}-{}-c000.snappy.parquet",
                one(
                    rng,
                    &[
                        "events",
                        "orders",
                        "clickstream",
                        "inventory",
                        "features/customer"
                    ]
                ),
                one(rng, &["v1", "v2", "v3"]),
                rng.u32(1..=30),
                rng.u32(..24),
                rng.u32(..256),
                ids::uuid(rng)
            ),
            BucketKind::Uploads => format!(
                "tenants/{}/users/{}/{}/{}.{}",
                rng.u32(1000..9999),
                rng.u32(100_000..999_999),
                ids::uuid(rng),
                one(
                    rng,
                    &[
                        "avatar", "receipt", "id-scan", "export", "photo", "contract"
                    ]
                ),
                one(rng, &["jpg", "png", "pdf", "csv", "heic", "docx"])
            ),
            BucketKind::Backups => format!(
                "rds/{}/2025-04-{:02}/{}-{:06}.sql.gz",
                one(rng, &["orders-db", "payments-db", "catalog-db"]),
                rng.u32(1..=30),
                one(rng, &["full", "incremental"]),
                rng.u32(..1_000_000)
            ),
            BucketKind::Reports => format!(
                "{}/2025/{}/{}.{}",
                one(rng, &["revenue", "payroll", "forecast", "audit"]),
                one(rng, &["q1", "q2", "04", "03"]),
                one(rng, &["summary", "by-region", "detail", "board-pack"]),
                one(rng, &["xlsx", "pdf", "csv"])
            ),
            BucketKind::Artifacts => format!(
                "builds/{}/{}/{}",
                one(
                    rng,
                    &["orders-api", "payments-worker", "web-frontend", "ingest"]
                ),
                ids::chars(rng, HEX, 40),
                one(
                    rng,
                    &[
                        "app.zip",
                        "image-manifest.json",
                        "sbom.spdx.json",
                        "coverage.tar.gz"
                    ]
                )
            ),
            BucketKind::Assets => format!(
                "static/{}/{}.{}.{}",
                one(rng, &["js", "css", "img", "fonts"]),
                one(
                    rng,
                    &["main", "vendor", "runtime", "styles", "logo", "hero"]
                ),
                ids::chars(rng, HEX, 8),
                one(rng, &["js", "css", "svg", "woff2", "webp"])
            ),
        }
    }
}
