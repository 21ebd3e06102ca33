//! The command line and the action's inputs, which are the same thing: every action
//! input is a long flag of the same name, and in action mode (`GITHUB_ACTIONS=true`, no
//! arguments) the `INPUT_*` variables the runner sets are turned into those flags. One
//! parser and one validation then serve both, and the names cannot drift apart.
//!
//! Everything that can be checked offline is checked here, before any network call, and
//! each message names the input that is wrong.

use std::ffi::OsString;

use clap::builder::BoolValueParser;
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::ecr_host::EcrHost;

/// ECR allows at most this many characters in a tag (PutImage `imageTag`).
const MAX_TAG_CHARS: usize = 300;
/// ECR repository names are 2 to 256 characters.
const REPOSITORY_NAME_CHARS: std::ops::RangeInclusive<usize> = 2..=256;
/// STS `RoleSessionName`: 2 to 64 characters of `[\w+=,.@-]`.
const SESSION_NAME_CHARS: std::ops::RangeInclusive<usize> = 2..=64;
/// STS `ExternalId`: 2 to 1224 characters of `[\w+=,.@:/-]`.
const EXTERNAL_ID_CHARS: std::ops::RangeInclusive<usize> = 2..=1224;
/// STS session durations: 15 minutes to 12 hours (the role's own maximum may be lower).
const DURATION_SECONDS: std::ops::RangeInclusive<i32> = 900..=43200;
/// Blobs uploaded at once; ECR's write quotas are shared by the whole account.
const CONCURRENCY: std::ops::RangeInclusive<usize> = 1..=16;

#[derive(Debug, thiserror::Error)]
#[error("{input}: {message}")]
pub struct Error {
    input: &'static str,
    message: String,
}

fn invalid(input: &'static str, message: impl Into<String>) -> Error {
    Error {
        input,
        message: message.into(),
    }
}

/// `push --help`'s examples, also shown by `-h`.
macro_rules! push_examples {
    () => {
        concat!(
            "  # An OCI layout from buildx, into your own account's registry\n",
            "  ecr-push push --image oci:build/image --repository team/app \\\n",
            "    --tags v1,latest --aws-region eu-west-1\n\n",
            "  # The Docker engine's image, into another account through a second role\n",
            "  ecr-push push --image app:v1 --repository team/app --aws-region us-east-1 \\\n",
            "    --role-to-assume arn:aws:iam::111111111111:role/ci \\\n",
            "    --cross-account-role arn:aws:iam::222222222222:role/publisher\n\n",
            "  # In a GitHub Actions job: the inputs come from INPUT_* (action.yml)\n",
            "  GITHUB_ACTIONS=true ecr-push"
        )
    };
}

macro_rules! exit_codes {
    () => {
        concat!(
            "  0  pushed\n",
            "  1  the push failed: the line names the call, the registry and the fix; no tag moved\n",
            "  2  an input is wrong: the line names it; nothing was sent"
        )
    };
}

macro_rules! environment {
    () => {
        concat!(
            "  AWS_REGION, AWS_DEFAULT_REGION     the region, when --aws-region is empty\n",
            "  AWS_PROFILE, AWS_ACCESS_KEY_ID, …  the default credential chain, without --role-to-assume\n",
            "  AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL_ECR   other endpoints (tests, proxies)\n",
            "  AWS_USE_FIPS_ENDPOINT, AWS_USE_DUALSTACK_ENDPOINT   FIPS or dual-stack API endpoints\n",
            "  DOCKER_HOST, DOCKER_CONFIG         the Docker engine, and the logins for docker:// sources\n",
            "  HTTPS_PROXY, SSL_CERT_FILE         a proxy and a CA bundle for registries\n",
            "  ECR_PUSH_REQUEST_TIMEOUT_SECONDS   one request's timeout (default 30)\n",
            "  GITHUB_ACTIONS, INPUT_*, ACTIONS_ID_TOKEN_REQUEST_URL, ACTIONS_ID_TOKEN_REQUEST_TOKEN,\n",
            "  GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, RUNNER_TEMP, RUNNER_DEBUG   the Actions runtime"
        )
    };
}

const PUSH_EXAMPLES: &str = concat!(
    "Examples:\n",
    push_examples!(),
    "\n\n--help also lists the exit codes and the environment variables read."
);

#[derive(Parser, Debug)]
#[command(
    name = "ecr-push",
    version,
    about = "Keyless, daemonless image pushes to Amazon ECR",
    long_about = "Keyless, daemonless image pushes to Amazon ECR.\n\n\
        In a GitHub Actions job it exchanges the job's OIDC token for a role (and optionally \
        a second role in the registry's account), then pushes an OCI image through ECR's \
        layer-upload API. With GITHUB_ACTIONS=true and no arguments it reads the action's \
        INPUT_* variables; every input is also a flag of the same name."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Push an image to an ECR repository
    Push(Box<PushArgs>),
    /// Write, check and lint the IAM documents a keyless push needs
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Print the minimal IAM documents: the GitHub OIDC trust, the push permissions,
    /// the pull and scan personas, and the cross-account pieces
    Generate(Box<GenerateArgs>),
    /// Evaluate a role's trust policy against a job's token claims, as STS would
    Check(CheckArgs),
    /// Find the usual mistakes in IAM and ECR policy documents
    Lint(LintArgs),
}

#[derive(Args, Debug)]
#[command(after_help = concat!(
    "Examples:\n",
    "  # The trust, push and persona documents for one repository, from main and version tags\n",
    "  ecr-push policy generate --account 123456789012 --region eu-west-1 --repository team/app \\\n",
    "    --github-repo my-org/app --github-owner-id 9876543 --github-repo-id 123456789 \\\n",
    "    --branch main --tag 'v*' --format aws-cli\n\n",
    "  # Publishing into another account's registry through a second role, as files\n",
    "  ecr-push policy generate --account 111111111111 --region us-east-1 --repository app \\\n",
    "    --github-repo my-org/app --github-owner-id 9876543 --github-repo-id 123456789 \\\n",
    "    --branch main --registry-account 222222222222 --publisher-role ecr-publisher --out-dir iam/\n\n",
    "The ids are the owner's and the repository's: gh api repos/ORG/REPO --jq '.owner.id, .id'.\n",
    "Exit codes: 0 written; 2 an option is wrong (the line names it)."
))]
#[command(group(clap::ArgGroup::new("subject").required(true).multiple(true)
    .args(["branch", "tag", "environment", "pull_request"])))]
pub struct GenerateArgs {
    /// The account of the CI role (and of the registry, unless --registry-account)
    #[arg(long, value_name = "ID")]
    pub account: String,
    /// The region of the repositories
    #[arg(long, value_name = "REGION")]
    pub region: String,
    /// A repository to push to; repeat for several
    #[arg(long = "repository", value_name = "NAME", required = true)]
    pub repositories: Vec<String>,
    /// The GitHub repository whose workflows may assume the role
    #[arg(long, value_name = "ORG/REPO")]
    pub github_repo: String,
    /// The numeric id of the repository's owner, for immutable subjects
    /// (`gh api repos/ORG/REPO --jq .owner.id`, or GITHUB_REPOSITORY_OWNER_ID in a run)
    #[arg(long, value_name = "ID", requires = "github_repo_id")]
    pub github_owner_id: Option<String>,
    /// The numeric id of the repository, for immutable subjects
    /// (`gh api repos/ORG/REPO --jq .id`, or GITHUB_REPOSITORY_ID in a run)
    #[arg(long, value_name = "ID", requires = "github_owner_id")]
    pub github_repo_id: Option<String>,
    /// Jobs running on this branch (a `*` makes it a pattern); repeat for several
    #[arg(long, value_name = "BRANCH")]
    pub branch: Vec<String>,
    /// Jobs running for this tag, e.g. 'v*'; repeat for several
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Jobs running in this GitHub environment; repeat for several
    #[arg(long, value_name = "NAME")]
    pub environment: Vec<String>,
    /// Jobs running for pull requests (code not yet reviewed: not for a role that publishes)
    #[arg(long)]
    pub pull_request: bool,
    /// The token audience the trust policy requires
    #[arg(long, value_name = "AUD", default_value = "sts.amazonaws.com")]
    pub audience: String,
    /// The name of the role the workflow assumes
    #[arg(long, value_name = "NAME", default_value = "ecr-ci-push-role")]
    pub role_name: String,
    /// The account that owns the registry, when it is another one
    #[arg(long, value_name = "ID")]
    pub registry_account: Option<String>,
    /// With --registry-account: a role there that the CI role assumes (role chaining);
    /// without it, the CI role pushes directly, allowed by a repository policy
    #[arg(long, value_name = "NAME", requires = "registry_account")]
    pub publisher_role: Option<String>,
    /// The sts:ExternalId the publisher role requires
    #[arg(long, value_name = "ID", requires = "publisher_role")]
    pub external_id: Option<String>,
    /// Allow sts:TagSession on the chained hop (for session-tags: true)
    #[arg(long, requires = "publisher_role")]
    pub session_tags: bool,
    /// Add ecr:GetAuthorizationToken (on "*", its only resource) for docker-login
    #[arg(long)]
    pub docker_login: bool,
    /// Add ecr:CreateRepository on the repositories, for create-repository: true
    #[arg(long)]
    pub create_repository: bool,
    /// The AWS Signer profile of the registry's managed signing: ECR signs each pushed
    /// image as the pusher, who then needs signer:SignPayload on it
    #[arg(long, value_name = "ARN")]
    pub signing_profile: Option<String>,
    /// The push's transport: registry needs ecr:GetAuthorizationToken for its login
    #[arg(long, value_enum, default_value = "api")]
    pub transport: TransportArg,
    /// An ECR repository the push reads from (`image: docker://HOST/REPO@sha256:…`), as
    /// HOST/REPO: adds its read permissions and, in another account, its repository policy
    #[arg(long, value_name = "ECR-HOST/REPO")]
    pub promote_from: Option<String>,
    #[arg(long, value_enum, default_value = "json")]
    pub format: crate::policy::render::Format,
    /// Also write each JSON document to DIR/NAME.json
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
#[command(after_help = concat!(
    "Examples:\n",
    "  aws iam get-role --role-name ci --query Role.AssumeRolePolicyDocument > trust.json\n",
    "  ecr-push policy check --trust trust.json --claims claims.json\n\n",
    "A job's claims: decode its token's middle part, or print them in a step with\n",
    "actions/github-script's core.getIDToken. The token is never printed.\n",
    "Exit codes: 0 allowed; 1 denied (each statement says why); 2 a file is not JSON."
))]
#[command(group(clap::ArgGroup::new("token_source").required(true).args(["claims", "token"])))]
pub struct CheckArgs {
    /// The role's trust policy (JSON)
    #[arg(long, value_name = "FILE")]
    pub trust: std::path::PathBuf,
    /// The token's claims as a JSON object
    #[arg(long, value_name = "FILE")]
    pub claims: Option<std::path::PathBuf>,
    /// A token (JWT); its claims are decoded, not verified, and it is never printed
    #[arg(long, value_name = "JWT")]
    pub token: Option<String>,
}

#[derive(Args, Debug)]
#[command(after_help = concat!(
    "Examples:\n",
    "  ecr-push policy lint iam/*.json\n",
    "  ecr-push policy lint --fail-on medium trust.json push.json   # a pull request gate\n\n",
    "Each finding: FILE: SEVERITY[RULE]: WHERE: what it allows; what to change. The rules\n",
    "are listed in docs/iam/lint.md.\n",
    "Exit codes: 0 no finding at --fail-on or worse; 1 one or more; 2 a file is not a policy."
))]
pub struct LintArgs {
    /// Policy documents (JSON)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,
    /// Exit 1 when a finding is at least this severe (0 otherwise; 2 for a file that
    /// is not a policy document)
    #[arg(long, value_enum, value_name = "SEVERITY", default_value = "high")]
    pub fail_on: crate::policy::lint::Severity,
}

impl GenerateArgs {
    pub fn validate(self) -> Result<crate::policy::generate::Request, Error> {
        use crate::policy::generate::{Request, Subject};
        check_account("account", &self.account)?;
        check_region(&self.region)?;
        for repository in &self.repositories {
            check_repository(repository)?;
        }
        check_github_repo(&self.github_repo)?;
        let github_ids = match (&self.github_owner_id, &self.github_repo_id) {
            (Some(owner), Some(repo)) => {
                for (input, id) in [("github-owner-id", owner), ("github-repo-id", repo)] {
                    if !crate::sub_claim::is_id(id) {
                        return Err(invalid(
                            input,
                            format!(
                                "`{id}` is not a GitHub id (digits, no leading zero, as `gh api repos/{}` shows it)",
                                self.github_repo
                            ),
                        ));
                    }
                }
                Some((owner.clone(), repo.clone()))
            }
            _ => None,
        };
        let mut subjects = Vec::new();
        for branch in self.branch {
            subjects.push(Subject::Branch(git_ref("branch", branch)?));
        }
        for tag in self.tag {
            subjects.push(Subject::Tag(git_ref("tag", tag)?));
        }
        for environment in self.environment {
            subjects.push(Subject::Environment(check_ref("environment", environment)?));
        }
        if self.pull_request {
            subjects.push(Subject::PullRequest);
        }
        if let Some(arn) = &self.signing_profile {
            check_signing_profile(arn)?;
        }
        check_chars("role-name", &self.role_name, 1..=64, "+=,.@-")?;
        if let Some(id) = &self.registry_account {
            check_account("registry-account", id)?;
            if *id == self.account {
                return Err(invalid(
                    "registry-account",
                    format!(
                        "{id} is --account itself; leave --registry-account out for a push within one account"
                    ),
                ));
            }
        }
        if let Some(name) = &self.publisher_role {
            check_chars("publisher-role", name, 1..=64, "+=,.@-")?;
        }
        if let Some(id) = &self.external_id {
            check_chars("external-id", id, EXTERNAL_ID_CHARS, "+=,.@:/-")?;
        }
        let source = match &self.promote_from {
            Some(from) => Some(promote_from(from)?),
            None => None,
        };
        Ok(Request {
            account: self.account,
            region: self.region,
            repositories: self.repositories,
            github_repo: self.github_repo,
            github_ids,
            subjects,
            audience: self.audience,
            role_name: self.role_name,
            registry_account: self.registry_account,
            publisher_role: self.publisher_role,
            external_id: self.external_id,
            session_tags: self.session_tags,
            docker_login: self.docker_login,
            create_repository: self.create_repository,
            signing_profile: self.signing_profile,
            registry_transport: self.transport == TransportArg::Registry,
            source,
        })
    }
}

/// `--promote-from ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO`.
fn promote_from(from: &str) -> Result<crate::policy::generate::Source, Error> {
    let wrong = || {
        invalid(
            "promote-from",
            format!("`{from}` is not ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY"),
        )
    };
    let (host, repository) = from.split_once('/').ok_or_else(wrong)?;
    let EcrHost {
        account, region, ..
    } = EcrHost::parse(host).ok_or_else(wrong)?;
    check_repository(repository)?;
    Ok(crate::policy::generate::Source {
        account,
        region,
        repository: repository.to_owned(),
    })
}

/// `transport` as `policy generate` takes it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportArg {
    Api,
    Registry,
}

/// `--github-repo`: ORG/REPO, as GitHub names them; a URL or `.git` is told apart.
fn check_github_repo(repo: &str) -> Result<(), Error> {
    let name_ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if repo
        .split_once('/')
        .is_some_and(|(org, name)| name_ok(org) && name_ok(name))
    {
        return Ok(());
    }
    let bare = repo
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_start_matches("git@")
        .trim_start_matches("github.com")
        .trim_start_matches([':', '/'])
        .trim_end_matches('/')
        .trim_end_matches(".git");
    let fix = match bare.split_once('/') {
        Some((org, name)) if bare != repo && name_ok(org) && name_ok(name) => {
            format!("; give it as `{bare}`")
        }
        _ => String::new(),
    };
    Err(invalid(
        "github-repo",
        format!("`{repo}` is not ORG/REPO{fix}"),
    ))
}

/// `--branch` and `--tag` take a name; a full ref of the same kind is shortened, one
/// of the other kind is refused (it would be written as `refs/heads/refs/tags/…`).
fn git_ref(input: &'static str, value: String) -> Result<String, Error> {
    let (own, other, other_flag) = if input == "branch" {
        ("refs/heads/", "refs/tags/", "tag")
    } else {
        ("refs/tags/", "refs/heads/", "branch")
    };
    if let Some(name) = value.strip_prefix(own) {
        return check_ref(input, name.to_owned());
    }
    if let Some(name) = value.strip_prefix(other) {
        return Err(invalid(
            input,
            format!("`{value}` is a {other_flag}, not a {input}: give --{other_flag} {name}"),
        ));
    }
    if value.starts_with("refs/") {
        return Err(invalid(
            input,
            format!("`{value}` is not a {input} name: give the name alone, without refs/…"),
        ));
    }
    check_ref(input, value)
}

/// `arn:PARTITION:signer:REGION:ACCOUNT:/signing-profiles/NAME`, as ECR's signing
/// configuration takes it.
fn check_signing_profile(arn: &str) -> Result<(), Error> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "signer"
        && !parts[3].is_empty()
        && crate::ecr_host::is_account_id(parts[4])
        && parts[5]
            .strip_prefix("/signing-profiles/")
            .is_some_and(|name| {
                name.len() >= 2 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "signing-profile",
            format!("`{arn}` is not arn:aws:signer:REGION:ACCOUNT:/signing-profiles/NAME"),
        ))
    }
}

/// A branch, tag or environment name as it goes into a `sub` claim: no spaces, quotes
/// or colons (the claim's separator).
fn check_ref(input: &'static str, value: String) -> Result<String, Error> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || "'\":\\".contains(c))
    {
        return Err(invalid(
            input,
            format!("`{value}` cannot be part of a `sub` claim (no spaces, quotes or colons)"),
        ));
    }
    Ok(value)
}

#[derive(Args, Debug)]
#[command(
    after_help = PUSH_EXAMPLES,
    after_long_help = concat!(
        "Examples:\n", push_examples!(), "\n\n", "Exit codes:\n", exit_codes!(),
        "\n\nEnvironment:\n", environment!()
    )
)]
pub struct PushArgs {
    /// The image, in skopeo's transport syntax: NAME[:TAG] or docker-daemon:NAME[:TAG]
    /// (the Docker engine's), oci:DIR[:REF] (an OCI layout), oci-archive:FILE[:REF],
    /// docker-archive:FILE[:NAME:TAG] (docker save), docker://HOST/REPO:TAG (a registry)
    #[arg(long, help_heading = "Image", value_name = "REFERENCE")]
    pub image: String,

    /// The ECR repository name, e.g. team/app
    #[arg(long, help_heading = "Destination", value_name = "NAME")]
    pub repository: String,

    /// Tags to set, separated by commas or newlines (when empty: the REF of the image,
    /// else latest)
    #[arg(long, help_heading = "Image", value_name = "TAGS")]
    pub tags: Option<String>,

    /// For a multi-platform image: the platforms to keep, as OS/ARCH[/VARIANT] separated
    /// by commas or newlines (when empty: the whole index, as it is)
    #[arg(long, help_heading = "Image", value_name = "PLATFORMS")]
    pub platforms: Option<String>,

    /// Layers as they are in the source (keep), or uncompressed layers compressed on the
    /// way (gzip, zstd), which rewrites the manifests that list them
    #[arg(
        long,
        help_heading = "Image",
        value_name = "KEEP|GZIP|ZSTD",
        default_value = "keep"
    )]
    pub compression: String,

    /// The level of compression: gzip 1-9 (when empty: 6), zstd 1-19 (when empty: 3)
    #[arg(long, help_heading = "Image", value_name = "N")]
    pub compression_level: Option<String>,

    /// AWS region of the registry (when empty: AWS_REGION, AWS_DEFAULT_REGION or the
    /// profile's)
    #[arg(long, help_heading = "Credentials", value_name = "REGION")]
    pub aws_region: Option<String>,

    /// IAM role to assume with the job's GitHub OIDC token. Without it, the default AWS
    /// credential chain is used (environment, profile, SSO, instance role).
    #[arg(long, help_heading = "Credentials", value_name = "ARN")]
    pub role_to_assume: Option<String>,

    /// Audience of the OIDC token; the role's trust policy checks it as
    /// token.actions.githubusercontent.com:aud
    #[arg(
        long,
        help_heading = "Credentials",
        value_name = "AUD",
        default_value = "sts.amazonaws.com"
    )]
    pub audience: String,

    /// Session name of the assumed roles, seen in CloudTrail
    #[arg(
        long,
        help_heading = "Credentials",
        value_name = "NAME",
        default_value = "GitHubActions"
    )]
    pub role_session_name: String,

    /// Lifetime of the role session in seconds (a chained second role is capped at 3600)
    #[arg(
        long,
        help_heading = "Credentials",
        allow_negative_numbers = true,
        value_name = "SECONDS",
        default_value_t = 3600
    )]
    pub role_duration_seconds: i32,

    /// A second role to assume with the first role's credentials, typically in the
    /// account that owns the registry (role chaining)
    #[arg(long, help_heading = "Credentials", value_name = "ARN")]
    pub cross_account_role: Option<String>,

    /// The sts:ExternalId the second role's trust policy requires
    #[arg(long, help_heading = "Credentials", value_name = "ID")]
    pub cross_account_external_id: Option<String>,

    /// Send session tags (Repository, Workflow, Actor, Commit, Branch, RunId) on the
    /// cross-account hop; its trust policy must then allow sts:TagSession
    #[arg(long, help_heading = "Credentials", value_name = "BOOL", num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = BoolValueParser::new())]
    pub session_tags: bool,

    /// Account id of the registry (when empty: the account of the final credentials)
    #[arg(long, help_heading = "Destination", value_name = "ACCOUNT")]
    pub registry_id: Option<String>,

    /// Create the repository when it does not exist
    #[arg(long, help_heading = "Destination", value_name = "BOOL", num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = BoolValueParser::new())]
    pub create_repository: bool,

    /// Write the registry's credentials into $DOCKER_CONFIG/config.json (default
    /// ~/.docker) so later steps can docker pull; needs ecr:GetAuthorizationToken
    #[arg(long, help_heading = "Destination", value_name = "BOOL", num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = BoolValueParser::new())]
    pub docker_login: bool,

    /// How the image travels: api (ECR's layer-upload API, repository-scoped permissions
    /// only) or registry (the OCI distribution API, with a registry login); when empty,
    /// api for ECR and registry for any other registry
    #[arg(long, help_heading = "Destination", value_name = "API|REGISTRY")]
    pub transport: Option<String>,

    /// The registry to push to, as a host: ECR's ACCOUNT.dkr.ecr.REGION.amazonaws.com (or
    /// its FIPS, dual-stack or China form), or any OCI registry (no AWS then; the login
    /// comes from the Docker config). When empty: the ECR registry of registry-id, else of
    /// the final credentials' account
    #[arg(long, help_heading = "Destination", value_name = "HOST")]
    pub registry: Option<String>,

    /// How many blobs to upload at once (1-16)
    #[arg(
        long,
        help_heading = "Limits",
        allow_negative_numbers = true,
        value_name = "N",
        default_value_t = 4
    )]
    pub concurrency: i64,

    /// Give up after this many minutes (decimals allowed): the push stops with an error,
    /// and a tag is only ever moved to a complete image
    #[arg(
        long,
        help_heading = "Limits",
        allow_negative_numbers = true,
        value_name = "MINUTES",
        default_value_t = 60.0
    )]
    pub timeout_minutes: f64,

    /// Log each API call and part (RUNNER_DEBUG=1 turns it on in Actions)
    #[arg(long, help_heading = "Output", short, value_name = "BOOL", num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = BoolValueParser::new())]
    pub verbose: bool,
}

/// A command-line parse error as an action's user reads it: every line that says
/// something (not the usage line or the `--help` hint), on one line for one
/// annotation, and with `as_inputs` (the arguments came from `INPUT_*`) flags named as
/// the inputs they are (`--image <REFERENCE>` is `image`).
pub fn for_actions(rendered: &str, as_inputs: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    for line in rendered.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("Usage:") || line.starts_with("For more information")
        {
            continue;
        }
        let line = line.trim_start_matches("error: ");
        if !as_inputs {
            parts.push(line.to_owned());
            continue;
        }
        let mut out = String::new();
        let mut rest = line;
        while let Some(start) = rest.find("--") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(after.len());
            out.push_str(&after[..end]);
            rest = &after[end..];
            // The value placeholder that follows a flag: ` <REFERENCE>`, ` [<BOOL>]`.
            for (open, close) in [(" <", ">"), (" [<", ">]")] {
                if let Some(placeholder) = rest.strip_prefix(open)
                    && let Some(end) = placeholder.find(close)
                {
                    rest = &placeholder[end + close.len()..];
                }
            }
        }
        out.push_str(rest);
        parts.push(
            out.replace("arguments were not provided", "inputs were not provided")
                .replace("unexpected argument", "unexpected input")
                .replace("similar argument exists", "similar input exists"),
        );
    }
    // "…not provided:" followed by the names, one a line: one list.
    let mut text = String::new();
    for part in parts {
        if text.is_empty() {
            text = part;
        } else if text.ends_with(':') {
            text = format!("{text} {part}");
        } else if text.contains("were not provided:") && !part.contains(' ') {
            text = format!("{text}, {part}");
        } else {
            text = format!("{text}; {part}");
        }
    }
    text
}

/// The arguments to parse: the process's own, or in action mode (`GITHUB_ACTIONS=true`
/// and no arguments) the `INPUT_*` variables as `push --NAME=VALUE` flags.
pub fn args(lookup: impl Fn(&str) -> Option<String>) -> Vec<OsString> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if from_inputs(args.len(), &lookup) {
        args.extend(action_args(&lookup));
    }
    args
}

/// Whether the arguments come from the action's `INPUT_*` variables: in Actions, with
/// no arguments of the process's own (`argc` counts the program).
pub fn from_inputs(argc: usize, lookup: &impl Fn(&str) -> Option<String>) -> bool {
    argc == 1 && lookup("GITHUB_ACTIONS").as_deref() == Some("true")
}

/// Every long flag of `push` whose `INPUT_NAME` variable is set. Empty inputs are left
/// out, as the runner passes every declared input, set or not.
fn action_args(lookup: &impl Fn(&str) -> Option<String>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["push".into()];
    let command = Cli::command();
    let names = command
        .find_subcommand("push")
        .into_iter()
        .flat_map(|push| push.get_arguments().filter_map(|a| a.get_long()));
    // A re-run with debug logging turns on verbose whatever the input says; the
    // runner always passes INPUT_VERBOSE, so the flag is replaced, not repeated.
    let debug = lookup("RUNNER_DEBUG").as_deref() == Some("1");
    for name in names {
        let value = match lookup(&format!("INPUT_{}", name.to_uppercase())) {
            _ if debug && name == "verbose" => Some("true".to_owned()),
            value => value,
        };
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            args.push(format!("--{name}={}", value.trim()).into());
        }
    }
    args
}

/// A validated push request.
#[derive(Debug)]
pub struct Push {
    pub image: String,
    pub repository: String,
    /// `None`: the default (the image reference's tag, else `latest`), known once the
    /// image is open.
    pub tags: Option<Vec<String>>,
    /// Empty: push every platform of an index.
    pub platforms: Vec<crate::image::Platform>,
    pub compression: crate::image::Compression,
    pub region: Option<String>,
    pub auth: Auth,
    pub registry_id: Option<String>,
    /// The ECR host the `registry` input named, in the form it was given (FIPS,
    /// dual-stack), for the endpoints it asks for and the URIs written out.
    pub ecr_host: Option<EcrHost>,
    pub create_repository: bool,
    pub docker_login: bool,
    pub concurrency: usize,
    pub destination: Destination,
    /// The whole push's deadline (`timeout-minutes`).
    pub deadline: std::time::Duration,
}

/// Where and how the image goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// ECR, through its layer-upload API or, with `registry: true`, its registry endpoint.
    Ecr { registry: bool },
    /// Any other OCI registry, by host.
    Registry(String),
}

/// How to get credentials.
#[derive(Debug, Clone)]
pub struct Auth {
    pub role_to_assume: Option<String>,
    pub audience: String,
    pub role_session_name: String,
    pub role_duration_seconds: i32,
    pub cross_account: Option<CrossAccount>,
}

#[derive(Debug, Clone)]
pub struct CrossAccount {
    pub role: String,
    pub external_id: Option<String>,
    pub session_tags: bool,
}

impl PushArgs {
    pub fn validate(self) -> Result<Push, Error> {
        if self.image.trim().is_empty() {
            return Err(invalid("image", "must not be empty"));
        }
        repository_is_not_a_uri(&self.repository)?;
        check_repository(&self.repository)?;
        // An empty `tags` is the default, as the help says (the runner passes every input,
        // set or not, so an empty INPUT_TAGS never arrives here).
        let tags = self
            .tags
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(parse_tags)
            .transpose()?;
        let platforms = self.platforms.as_deref().map(parse_platforms).transpose()?;
        let compression = parse_compression(&self.compression, self.compression_level.as_deref())?;
        let region = self.aws_region.filter(|r| !r.is_empty());
        if let Some(region) = &region {
            check_region(region)?;
        }
        if let Some(arn) = &self.role_to_assume {
            check_role_arn("role-to-assume", arn, region.as_deref())?;
        }
        if self.audience.trim().is_empty() {
            return Err(invalid("audience", "must not be empty"));
        }
        check_chars(
            "role-session-name",
            &self.role_session_name,
            SESSION_NAME_CHARS,
            "+=,.@-",
        )?;
        if !DURATION_SECONDS.contains(&self.role_duration_seconds) {
            return Err(invalid(
                "role-duration-seconds",
                format!(
                    "{} is out of range; STS accepts {} to {}",
                    self.role_duration_seconds,
                    DURATION_SECONDS.start(),
                    DURATION_SECONDS.end()
                ),
            ));
        }
        let cross_account = match self.cross_account_role {
            Some(role) => {
                check_role_arn("cross-account-role", &role, region.as_deref())?;
                if let Some(id) = &self.cross_account_external_id {
                    check_chars(
                        "cross-account-external-id",
                        id,
                        EXTERNAL_ID_CHARS,
                        "+=,.@:/-",
                    )?;
                }
                Some(CrossAccount {
                    role,
                    external_id: self.cross_account_external_id,
                    session_tags: self.session_tags,
                })
            }
            None if self.cross_account_external_id.is_some() => {
                return Err(invalid(
                    "cross-account-external-id",
                    "is set but cross-account-role is not; set both or neither",
                ));
            }
            None if self.session_tags => {
                return Err(invalid(
                    "session-tags",
                    "tags are sent on the cross-account hop only; set cross-account-role",
                ));
            }
            None => None,
        };
        if let Some(id) = &self.registry_id {
            check_account("registry-id", id)?;
        }
        let registry = self
            .registry
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if let Some(host) = registry
            && host.eq_ignore_ascii_case(crate::ecr_host::ECR_PUBLIC)
        {
            return Err(invalid(
                "registry",
                format!(
                    "{host} is ECR Public, whose own API (ecr-public, in us-east-1) ecr-push does not speak yet; push there with docker push or crane after aws ecr-public get-login-password --region us-east-1 | docker login --username AWS --password-stdin {host}"
                ),
            ));
        }
        let ecr_host = registry.and_then(EcrHost::parse);
        let mut registry_id = self.registry_id;
        let mut region = region;
        if let Some(EcrHost {
            account,
            region: host_region,
            ..
        }) = &ecr_host
        {
            if registry_id.as_ref().is_some_and(|id| id != account) {
                return Err(invalid(
                    "registry-id",
                    format!(
                        "is not {account}, the account of registry {}",
                        registry.unwrap_or_default()
                    ),
                ));
            }
            if region.as_ref().is_some_and(|r| r != host_region) {
                return Err(invalid(
                    "aws-region",
                    format!(
                        "is not {host_region}, the region of registry {}",
                        registry.unwrap_or_default()
                    ),
                ));
            }
            registry_id = Some(account.clone());
            region = Some(host_region.clone());
        }
        let transport = self
            .transport
            .as_deref()
            .map(|t| t.trim().to_ascii_lowercase());
        let destination = match (registry, &ecr_host, transport.as_deref()) {
            (_, _, Some(other)) if !matches!(other, "" | "api" | "registry") => {
                return Err(invalid(
                    "transport",
                    format!("`{other}` is not api or registry"),
                ));
            }
            (Some(host), None, transport) => {
                if transport == Some("api") {
                    return Err(invalid(
                        "transport",
                        format!(
                            "api is ECR's layer-upload API, and {host} is not ECR; leave transport empty or set registry"
                        ),
                    ));
                }
                check_host(host)?;
                for (input, set) in [
                    ("role-to-assume", self.role_to_assume.is_some()),
                    ("cross-account-role", cross_account.is_some()),
                    ("registry-id", registry_id.is_some()),
                    ("create-repository", self.create_repository),
                    ("docker-login", self.docker_login),
                ] {
                    if set {
                        return Err(invalid(
                            input,
                            format!("is for ECR, and the registry {host} is not ECR; remove it"),
                        ));
                    }
                }
                Destination::Registry(host.to_owned())
            }
            (_, _, transport) => {
                let registry = transport == Some("registry");
                if registry && self.create_repository {
                    return Err(invalid(
                        "create-repository",
                        "needs ECR's API (CreateRepository); with transport: registry, create the repository beforehand",
                    ));
                }
                Destination::Ecr { registry }
            }
        };
        // Read as a signed number so that `-1` is out of range rather than "unexpected".
        let concurrency = usize::try_from(self.concurrency)
            .ok()
            .filter(|c| CONCURRENCY.contains(c))
            .ok_or_else(|| {
                invalid(
                    "concurrency",
                    format!(
                        "{} is out of range; use {} to {}",
                        self.concurrency,
                        CONCURRENCY.start(),
                        CONCURRENCY.end()
                    ),
                )
            })?;
        // GitHub stops any job after 6 hours.
        if !(self.timeout_minutes > 0.0 && self.timeout_minutes <= 360.0) {
            return Err(invalid(
                "timeout-minutes",
                format!(
                    "{} is out of range; use more than 0 and at most 360 minutes",
                    self.timeout_minutes
                ),
            ));
        }
        Ok(Push {
            image: self.image,
            repository: self.repository,
            tags,
            platforms: platforms.unwrap_or_default(),
            compression,
            region,
            auth: Auth {
                role_to_assume: self.role_to_assume,
                audience: self.audience.trim().to_owned(),
                role_session_name: self.role_session_name,
                role_duration_seconds: self.role_duration_seconds,
                cross_account,
            },
            registry_id,
            ecr_host,
            create_repository: self.create_repository,
            docker_login: self.docker_login,
            concurrency,
            destination,
            deadline: std::time::Duration::from_secs_f64(self.timeout_minutes * 60.0),
        })
    }
}

/// A `repository` that is a whole image URI (`HOST/NAME[:TAG]`) or a URL: say which
/// inputs its parts belong to rather than take the host as part of the name (with
/// create-repository it would create a repository named so).
fn repository_is_not_a_uri(repository: &str) -> Result<(), Error> {
    let bare = repository
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_start_matches("docker://");
    let Some((first, rest)) = bare.split_once('/') else {
        return Ok(());
    };
    let host = EcrHost::parse(first).is_some()
        || first.eq_ignore_ascii_case(crate::ecr_host::ECR_PUBLIC)
        || first.contains(':')
        || first == "localhost"
        || bare != repository;
    if !host {
        return Ok(());
    }
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    Err(invalid(
        "repository",
        format!(
            "`{repository}` is a registry and a repository; give repository: {name} and registry: {first}{}",
            tag.map(|t| format!(", and the tag as tags: {t}"))
                .unwrap_or_default()
        ),
    ))
}

/// Splits `tags` on commas and newlines, dropping blanks and repeats.
fn parse_tags(text: &str) -> Result<Vec<String>, Error> {
    let mut tags: Vec<String> = Vec::new();
    for tag in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        check_tag(tag)?;
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    if tags.is_empty() {
        return Err(invalid("tags", "lists no tag"));
    }
    if tags.len() > MAX_TAGS {
        return Err(invalid(
            "tags",
            format!(
                "lists {} tags; ECR allows at most {MAX_TAGS} on one image",
                tags.len()
            ),
        ));
    }
    Ok(tags)
}

/// ECR's hard limit of tags on one image.
const MAX_TAGS: usize = 1000;

/// `localhost`, `127.x.x.x` and `[::1]`, with or without a port: registries spoken to
/// over plain HTTP, as Docker does.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A registry host: a name or address, maybe a port; no scheme, no path.
fn check_host(host: &str) -> Result<(), Error> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || host.starts_with('[') => (name, Some(port)),
        _ => (host, None),
    };
    let name_ok = !name.is_empty()
        && (name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
            || (name.starts_with('[') && name.ends_with(']')));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    if name_ok && port_ok {
        Ok(())
    } else {
        Err(invalid(
            "registry",
            format!("`{host}` is not a registry host (HOST or HOST:PORT, no scheme or path)"),
        ))
    }
}

/// `compression` and `compression-level`, together.
fn parse_compression(name: &str, level: Option<&str>) -> Result<crate::image::Compression, Error> {
    use crate::image::Compression;
    let level = level.map(str::trim).filter(|l| !l.is_empty());
    let number = |range: std::ops::RangeInclusive<i64>| -> Result<Option<i64>, Error> {
        level
            .map(|l| {
                l.parse::<i64>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        invalid(
                            "compression-level",
                            format!(
                                "`{l}` is not a level of {name}; use {} to {}",
                                range.start(),
                                range.end()
                            ),
                        )
                    })
            })
            .transpose()
    };
    match name.trim().to_ascii_lowercase().as_str() {
        "keep" if level.is_some() => Err(invalid(
            "compression-level",
            "is set but compression is keep; set compression to gzip or zstd",
        )),
        "keep" => Ok(Compression::Keep),
        "gzip" => Ok(Compression::Gzip {
            level: number(1..=9)?.unwrap_or(6) as u32,
        }),
        "zstd" => Ok(Compression::Zstd {
            level: number(1..=19)?.unwrap_or(3) as i32,
        }),
        other => Err(invalid(
            "compression",
            format!("`{other}` is not keep, gzip or zstd"),
        )),
    }
}

/// Splits `platforms` on commas and newlines into OS/ARCH[/VARIANT], dropping blanks
/// and repeats.
fn parse_platforms(text: &str) -> Result<Vec<crate::image::Platform>, Error> {
    let mut platforms: Vec<crate::image::Platform> = Vec::new();
    for item in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let platform = crate::image::Platform::parse(item).map_err(|_| {
            invalid(
                "platforms",
                format!("`{item}` is not OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8"),
            )
        })?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    if platforms.is_empty() {
        return Err(invalid("platforms", "lists no platform"));
    }
    Ok(platforms)
}

/// The tag when `tags` is empty: the image reference's REF, else `latest`.
pub fn default_tag(reference_tag: Option<&str>) -> Result<String, Error> {
    match reference_tag {
        None => Ok("latest".to_owned()),
        Some(tag) => match check_tag(tag) {
            Ok(()) => Ok(tag.to_owned()),
            Err(_) => Err(invalid(
                "image",
                format!(
                    "its REF `{tag}` is not a valid tag, so it cannot be the default; set tags"
                ),
            )),
        },
    }
}

/// An image tag as ECR and the distribution spec accept it: a letter, digit or
/// underscore, then letters, digits, `_`, `.` and `-`.
pub fn check_tag(tag: &str) -> Result<(), Error> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !(first_ok && rest_ok) || tag.len() > MAX_TAG_CHARS {
        return Err(invalid(
            "tags",
            format!(
                "`{tag}` is not a valid tag: up to {MAX_TAG_CHARS} letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
            ),
        ));
    }
    Ok(())
}

/// ECR's repository name pattern, `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`:
/// components of lowercase letters and digits with single `.`, `_` or `-` between them,
/// separated by `/`.
fn check_repository(name: &str) -> Result<(), Error> {
    let separator = |b: u8| b"._-".contains(&b);
    let component_ok = |c: &str| {
        let bytes = c.as_bytes();
        bytes.first().is_some_and(|b| !separator(*b))
            && bytes.last().is_some_and(|b| !separator(*b))
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || separator(*b))
            && !bytes.windows(2).any(|w| separator(w[0]) && separator(w[1]))
    };
    if !REPOSITORY_NAME_CHARS.contains(&name.len()) || !name.split('/').all(component_ok) {
        return Err(invalid(
            "repository",
            format!(
                "`{name}` is not a valid ECR repository name: 2 to 256 characters, lowercase letters and digits separated by `.`, `_`, `-` or `/` (e.g. team/app)"
            ),
        ));
    }
    Ok(())
}

/// A region code like `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`.
fn check_region(region: &str) -> Result<(), Error> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[parts.len() - 1].len() <= 2
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()));
    if !ok {
        return Err(invalid(
            "aws-region",
            format!("`{region}` is not an AWS region code (e.g. us-east-1)"),
        ));
    }
    // The geographic prefixes of every partition's region pattern (the SDKs' partition
    // data); a region outside all of them exists nowhere.
    const PREFIXES: [&str; 11] = [
        "us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx", "cn", "eusc",
    ];
    if !PREFIXES.contains(&parts[0]) {
        return Err(invalid(
            "aws-region",
            format!(
                "`{region}` is in no AWS partition (regions start with {}); check the region code",
                PREFIXES.join(", ")
            ),
        ));
    }
    Ok(())
}

fn check_account(input: &'static str, id: &str) -> Result<(), Error> {
    if !crate::ecr_host::is_account_id(id) {
        return Err(invalid(
            input,
            format!("`{id}` is not an AWS account id (12 digits)"),
        ));
    }
    Ok(())
}

/// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, in the region's partition.
fn check_role_arn(input: &'static str, arn: &str, region: Option<&str>) -> Result<(), Error> {
    let not_role = || {
        invalid(
            input,
            format!("`{arn}` is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"),
        )
    };
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let [
        prefix,
        arn_partition,
        service,
        region_field,
        account,
        resource,
    ] = fields[..]
    else {
        return Err(not_role());
    };
    let name_ok = resource.strip_prefix("role/").is_some_and(|path_name| {
        let name = path_name.rsplit('/').next().unwrap_or_default();
        (1..=64).contains(&name.len())
            && path_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
    });
    if prefix != "arn"
        || !["aws", "aws-cn", "aws-us-gov", "aws-eusc"].contains(&arn_partition)
        || service != "iam"
        || !region_field.is_empty()
        || !name_ok
    {
        return Err(not_role());
    }
    check_account(input, account).map_err(|_| not_role())?;
    if let Some(region) = region {
        let expected = crate::ecr_host::partition(region);
        if arn_partition != expected {
            return Err(invalid(
                input,
                format!(
                    "`{arn}` is in partition {arn_partition} but region {region} is in {expected}"
                ),
            ));
        }
    }
    Ok(())
}

/// The account id inside a role or assumed-role ARN.
pub fn account_of_arn(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| a.len() == 12)
}

fn check_chars(
    input: &'static str,
    value: &str,
    lengths: std::ops::RangeInclusive<usize>,
    punctuation: &str,
) -> Result<(), Error> {
    let ok = lengths.contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || punctuation.contains(c));
    if !ok {
        return Err(invalid(
            input,
            format!(
                "`{value}` is not valid: {} to {} characters of letters, digits and `_{punctuation}`",
                lengths.start(),
                lengths.end()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked_with_their_partition() {
        assert!(check_role_arn("r", "arn:aws:iam::111111111111:role/ci", None).is_ok());
        assert!(check_role_arn("r", "arn:aws:iam::111111111111:role/path/to/ci", None).is_ok());
        for bad in [
            "arn:aws:iam::111111111111:user/ci",
            "arn:aws:iam::1111:role/ci",
            "arn:aws:sts::111111111111:role/ci",
            "arn:aws:iam:us-east-1:111111111111:role/ci",
            "111111111111",
            "arn:aws:iam::111111111111:role/",
        ] {
            let err = check_role_arn("role-to-assume", bad, None).unwrap_err();
            assert!(err.to_string().starts_with("role-to-assume: `"), "{err}");
        }
        let err = check_role_arn("r", "arn:aws:iam::111111111111:role/ci", Some("cn-north-1"))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("partition aws but region cn-north-1 is in aws-cn")
        );
    }

    #[test]
    fn repository_names_follow_ecr() {
        for good in ["ab", "team/app", "a.b_c-d/e1", "9/x-y"] {
            assert!(check_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "a",
            "App",
            "team//app",
            "-app",
            "app-",
            "/app",
            "a..b",
            &"a".repeat(257),
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_hosts_are_checked() {
        for good in ["ghcr.io", "localhost:5000", "127.0.0.1:5000", "[::1]:5000"] {
            assert!(check_host(good).is_ok(), "{good}");
        }
        for bad in ["https://ghcr.io", "ghcr.io/org", "host:port", ""] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compression_levels_belong_to_their_algorithm() {
        use crate::image::Compression;
        assert_eq!(parse_compression("keep", None).unwrap(), Compression::Keep);
        assert_eq!(
            parse_compression("gzip", Some("")).unwrap(),
            Compression::Gzip { level: 6 }
        );
        assert_eq!(
            parse_compression("ZSTD", None).unwrap(),
            Compression::Zstd { level: 3 }
        );
        assert_eq!(
            parse_compression("zstd", Some("19")).unwrap(),
            Compression::Zstd { level: 19 }
        );
        for (name, level, input) in [
            ("gzip", Some("10"), "compression-level"),
            ("zstd", Some("x"), "compression-level"),
            ("keep", Some("6"), "compression-level"),
            ("brotli", None, "compression"),
        ] {
            let err = parse_compression(name, level).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{input}: ")),
                "{name} {level:?}: {err}"
            );
        }
    }

    #[test]
    fn platforms_split_like_tags_and_must_name_os_and_arch() {
        let parsed = parse_platforms("linux/amd64, linux/arm64/v8\nlinux/amd64").unwrap();
        let shown: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["linux/amd64", "linux/arm64/v8"]);
        for bad in ["amd64", "linux/", "linux/amd64/v8/x", "linux amd64", " , "] {
            let err = parse_platforms(bad).unwrap_err().to_string();
            assert!(err.starts_with("platforms: "), "{bad}: {err}");
        }
    }

    #[test]
    fn tags_split_on_commas_and_newlines_once_each() {
        assert_eq!(
            parse_tags("v1, latest\nabc123,\n,v1").unwrap(),
            ["v1", "latest", "abc123"]
        );
        assert!(parse_tags(" , ").is_err());
        assert!(parse_tags("-bad").is_err());
        assert!(parse_tags("has space").is_err());
        assert!(parse_tags(&"a".repeat(301)).is_err());
        assert!(parse_tags(&"a".repeat(300)).is_ok());
    }

    #[test]
    fn regions_look_like_regions() {
        for good in ["us-east-1", "eu-central-2", "us-gov-west-1", "cn-north-1"] {
            assert!(check_region(good).is_ok(), "{good}");
        }
        for bad in ["useast1", "US-EAST-1", "us-east", "us-east-1a", ""] {
            assert!(check_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_errors_name_inputs_in_actions() {
        let missing = "error: the following required arguments were not provided:\n  --image <REFERENCE>\n  --repository <NAME>\n\nUsage: ecr-push push --image <REFERENCE> --repository <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            for_actions(missing, true),
            "the following required inputs were not provided: image, repository"
        );
        let typo = "error: unexpected argument '--repostory' found\n\n  tip: a similar argument exists: '--repository'\n\nUsage: ecr-push push --image <REFERENCE> --repository <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            for_actions(typo, true),
            "unexpected input 'repostory' found; tip: a similar input exists: 'repository'"
        );
        let value = "error: invalid value 'soon' for '--timeout-minutes <MINUTES>': invalid float literal\n\nFor more information, try '--help'.\n";
        assert_eq!(
            for_actions(value, true),
            "invalid value 'soon' for 'timeout-minutes': invalid float literal"
        );
        // Flags a `run:` step typed stay flags.
        assert_eq!(
            for_actions(typo, false),
            "unexpected argument '--repostory' found; tip: a similar argument exists: '--repository'"
        );
    }

    #[test]
    fn every_flag_reads_its_input_variable() {
        let env = |name: &str| match name {
            "GITHUB_ACTIONS" => Some("true".to_owned()),
            "INPUT_ROLE-TO-ASSUME" => Some(" arn:aws:iam::111111111111:role/ci ".to_owned()),
            "INPUT_IMAGE" => Some("oci:dir".to_owned()),
            "INPUT_TAGS" => Some(String::new()),
            "INPUT_DOCKER-LOGIN" => Some("false".to_owned()),
            "INPUT_VERBOSE" => Some("false".to_owned()),
            "RUNNER_DEBUG" => Some("1".to_owned()),
            _ => None,
        };
        let args = action_args(&env);
        assert_eq!(
            args,
            [
                "push",
                "--image=oci:dir",
                "--role-to-assume=arn:aws:iam::111111111111:role/ci",
                "--docker-login=false",
                "--verbose=true"
            ]
        );
    }
}
