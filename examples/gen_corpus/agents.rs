//! User agents as CloudTrail records them: long, versioned, and different per
//! client (the CLI names the command it runs, SDKs their runtime and execution
//! environment, the console a browser).
//!
//! They are a good part of a real record's size and of what rules match on
//! (`userAgent` suffixes, prefixes), so they are copied from the shapes real trails
//! carry rather than shortened.

use fastrand::Rng;

use super::ids::one;

/// AWS CLI v2 agents; `{cmd}` becomes the command (`s3.cp`, `iam.list-users`).
const CLI: [&str; 4] = [
    "aws-cli/2.15.30 Python/3.11.8 Linux/5.10.210-201.852.amzn2.x86_64 exe/x86_64.amzn.2 prompt/off command/{cmd}",
    "aws-cli/2.22.35 md/awscrt#0.23.8 ua/2.0 os/macos#23.6.0 md/arch#arm64 lang/python#3.12.6 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/prompt#off md/command#{cmd}",
    "aws-cli/2.27.2 md/awscrt#0.25.4 ua/2.1 os/linux#6.1.132-147.221.amzn2023.x86_64 md/arch#x86_64 lang/python#3.13.2 md/pyimpl#CPython exec-env/CloudShell m/G,b cfg/retry-mode#standard md/installer#exe md/distrib#amzn.2023 md/prompt#off md/command#{cmd}",
    "aws-cli/2.18.4 md/awscrt#0.22.0 ua/2.0 os/windows#10 md/arch#amd64 lang/python#3.12.6 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/prompt#off md/command#{cmd}",
];

/// SDKs in the workloads (Lambda, ECS, EMR, Go and Node services).
const SDK: [&str; 8] = [
    "Boto3/1.35.99 md/Botocore#1.35.99 ua/2.0 os/linux#5.10.233-244.911.amzn2.x86_64 md/arch#x86_64 lang/python#3.12.8 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.35.99",
    "Boto3/1.37.4 md/Botocore#1.37.4 ua/2.1 os/linux#6.1.128-136.201.amzn2023.x86_64 md/arch#x86_64 lang/python#3.11.11 md/pyimpl#CPython m/b,Z,D cfg/retry-mode#legacy Botocore/1.37.4 Resource",
    "aws-sdk-java/2.29.52 Linux/5.10.234-225.910.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/21.0.6+7-LTS Java/21.0.6 vendor/Amazon.com_Inc. md/internal exec-env/AWS_ECS_FARGATE io/sync http/Apache cfg/retry-mode/standard m/D,N",
    "aws-sdk-java/1.12.780 Linux/5.10.228-219.884.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.13+11-LTS java/17.0.13 scala/2.12.18 vendor/Amazon.com_Inc. cfg/retry-mode/standard emr/7.5.0 spark/3.5.2",
    "aws-sdk-go-v2/1.36.3 ua/2.1 os/linux lang/go#1.23.6 md/GOOS#linux md/GOARCH#amd64 api/s3#1.78.0 m/E,Z,g",
    "aws-sdk-js/3.744.0 ua/2.1 os/linux#5.10.234-225.910.amzn2.x86_64 lang/js md/nodejs#20.18.3 api/s3#3.744.0 m/E,N,e",
    "aws-sdk-rust/1.3.6 ua/2.1 api/s3/1.77.0 os/linux lang/rust/1.84.1 m/E,b",
    "aws-sdk-dotnet-coreclr/3.7.400.62 aws-sdk-dotnet-core/3.7.400.62 .NET_Core/8.0.12 OS/Linux_5.10.233-224.894.amzn2.x86_64 ClientAsync md/ClientAsync ft/s3-transfer",
];

const BROWSERS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/135.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.3.1 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:137.0) Gecko/20100101 Firefox/137.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36 Edg/134.0.3124.85",
];

/// What the S3 console calls with (the brackets are part of it).
pub const S3_CONSOLE: &str = "[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.750 Linux/5.10.223-190.873.amzn2int.x86_64 OpenJDK_64-Bit_Server_VM/25.412-b09 java/1.8.0_412 vendor/Oracle_Corporation cfg/retry-mode/standard]";

/// What the other consoles call with, for management events made from a browser.
pub const CONSOLE: &str = "AWS Internal";

/// GitHub Actions' OIDC exchange.
pub const GITHUB_OIDC: &str = "aws-sdk-js/3.758.0 ua/2.1 os/linux#6.8.0-1021-azure lang/js md/nodejs#20.18.3 api/sts#3.758.0 m/E,e";

/// What an attacker's tooling says about itself with a stolen key.
pub const PROBING: [&str; 3] = [
    "Boto3/1.34.11 md/Botocore#1.34.11 ua/2.0 os/linux#6.5.0-kali3-amd64 md/arch#x86_64 lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.11",
    "aws-cli/1.32.15 Python/3.11.8 Linux/6.5.0-kali3-amd64 botocore/1.34.15",
    "python-requests/2.31.0",
];

pub fn cli(rng: &mut Rng, cmd: &str) -> String {
    cli_with(cli_index(rng), cmd)
}

/// One of the CLI agents, to call [`cli_with`] with for each command of a session.
pub fn cli_index(rng: &mut Rng) -> usize {
    rng.usize(..CLI.len())
}

pub fn cli_with(i: usize, cmd: &str) -> String {
    CLI[i].replace("{cmd}", cmd)
}

pub fn sdk(rng: &mut Rng) -> String {
    (*one(rng, &SDK)).to_owned()
}

pub fn browser(rng: &mut Rng) -> String {
    (*one(rng, &BROWSERS)).to_owned()
}

/// Terraform's AWS provider, calling `api` (`iam`, `s3`, `ec2`).
pub fn terraform(api: &str) -> String {
    format!(
        "APN/1.0 HashiCorp/1.0 Terraform/1.11.3 (+https://www.terraform.io) terraform-provider-aws/5.94.1 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.36.3 ua/2.1 os/linux lang/go#1.23.7 md/GOOS#linux md/GOARCH#amd64 api/{api}#1.41.0 m/C,g"
    )
}

/// The CLI command an API call comes from (`GetObject` → `s3.cp`).
pub fn cli_command(source: &str, name: &str) -> String {
    let service = source.split('.').next().unwrap_or(source);
    if service == "s3" {
        return match name {
            "GetObject" | "PutObject" => "s3.cp",
            "ListObjects" => "s3.ls",
            "DeleteObject" | "DeleteObjects" => "s3.rm",
            "HeadObject" => "s3api.head-object",
            "GetObjectTagging" => "s3api.get-object-tagging",
            _ => "s3api.get-object-acl",
        }
        .to_owned();
    }
    // GetCallerIdentity → sts.get-caller-identity
    let mut cmd = format!("{service}.");
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                cmd.push('-');
            }
            cmd.push(c.to_ascii_lowercase());
        } else {
            cmd.push(c);
        }
    }
    cmd
}
