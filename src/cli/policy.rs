//! `ecr-push policy generate | check | lint`: the flags, their validation into
//! `policy::generate::Request`, and what each prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::ecr_host::{self, EcrHost};
use crate::names::{
    EXTERNAL_ID_CHARS, Invalid, check_account, check_chars, check_region, check_repository, invalid,
};
use crate::policy::lint::Severity;
use crate::policy::{evaluate, generate, lint, render};
use crate::targets::Host;

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
    "  # A release to three accounts, the lines of the push's targets: every account's documents\n",
    "  ecr-push policy generate --account 111111111111 --github-repo my-org/app \\\n",
    "    --github-owner-id 9876543 --github-repo-id 123456789 --tag 'v*' --targets '\n",
    "      111111111111.dkr.ecr.us-east-1.amazonaws.com/app\n",
    "      222222222222.dkr.ecr.us-east-1.amazonaws.com/app,role=arn:aws:iam::222222222222:role/ecr-publisher\n",
    "      333333333333.dkr.ecr.eu-west-1.amazonaws.com/app,role=arn:aws:iam::333333333333:role/ecr-publisher,external-id=release'\n\n",
    "The ids are the owner's and the repository's: gh api repos/ORG/REPO --jq '.owner.id, .id'.\n",
    "Exit codes: 0 written; 2 an option is wrong (the line names it)."
))]
#[command(group(clap::ArgGroup::new("subject").required(true).multiple(true)
    .args(["branch", "tag", "environment", "pull_request"])))]
#[command(group(clap::ArgGroup::new("chained").multiple(true)
    .args(["publisher_role", "targets"])))]
pub struct GenerateArgs {
    /// The account of the CI role (and of the registry, unless --registry-account)
    #[arg(long, value_name = "ID")]
    pub account: String,
    /// The region of the repositories (with --targets: of the CI role's STS calls, by
    /// default the first ECR target's)
    #[arg(long, value_name = "REGION", required_unless_present = "targets")]
    pub region: Option<String>,
    /// A repository to push to; repeat for several
    #[arg(
        long = "repository",
        value_name = "NAME",
        required_unless_present = "targets"
    )]
    pub repositories: Vec<String>,
    /// The push's targets, one HOST/REPOSITORY[,role=ROLE_ARN][,external-id=ID] per
    /// line (repeat, or give several lines): every account's documents for them
    /// (docs/iam/targets.md), in place of --repository, --registry-account,
    /// --publisher-role and --external-id
    #[arg(long, value_name = "LINE", conflicts_with_all = ["repositories", "registry_account", "publisher_role", "external_id"])]
    pub targets: Vec<String>,
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
    #[arg(long, requires = "chained")]
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
    /// Add ecr:StartImageScan and ecr:DescribeImageScanFindings for scan-fail-on: on the
    /// repositories, or with --targets on the first ECR target's, the one a release scans
    #[arg(long)]
    pub scan_gate: bool,
    /// The push's transport: registry needs ecr:GetAuthorizationToken for its login
    #[arg(long, value_enum, default_value = "api")]
    pub transport: TransportArg,
    /// An ECR repository the push reads from (`image: docker://HOST/REPO@sha256:…`), as
    /// HOST/REPO: adds its read permissions and, in another account, its repository policy
    #[arg(long, value_name = "ECR-HOST/REPO")]
    pub promote_from: Option<String>,
    #[arg(long, value_enum, default_value = "json")]
    pub format: render::Format,
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
    pub fail_on: Severity,
}

impl GenerateArgs {
    pub fn validate(self) -> Result<generate::Request, Invalid> {
        use generate::Request;
        check_account("account", &self.account)?;
        let targets = if self.targets.is_empty() {
            Vec::new()
        } else {
            crate::targets::parse(self.targets.iter().map(String::as_str))?
        };
        // With targets the step's region defaults as the push's does: the first ECR
        // target's. Without, clap has required --region.
        let region = self
            .region
            .clone()
            .or_else(|| {
                targets.iter().find_map(|t| match &t.host {
                    Host::Ecr(host) => Some(host.region.clone()),
                    Host::Registry(_) => None,
                })
            })
            .ok_or_else(|| invalid("targets", generate::NO_ECR_TARGET))?;
        check_region(&region)?;
        for repository in &self.repositories {
            check_repository(repository)?;
        }
        check_github_repo(&self.github_repo)?;
        let github_ids = self.github_ids()?;
        let subjects = self.subjects()?;
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
        if self.scan_gate && self.transport == TransportArg::Registry {
            return Err(invalid(
                "scan-gate",
                "the scan gate needs ECR's API, and --transport registry pushes through the registry endpoint; use one or the other",
            ));
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
        let request = Request {
            account: self.account,
            region,
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
            scan_gate: self.scan_gate,
            source,
            targets,
        };
        if !request.targets.is_empty() {
            request.check_targets()?;
        }
        Ok(request)
    }

    /// `--github-owner-id` and `--github-repo-id`, both or neither (clap's `requires`).
    fn github_ids(&self) -> Result<Option<(String, String)>, Invalid> {
        let (Some(owner), Some(repo)) = (&self.github_owner_id, &self.github_repo_id) else {
            return Ok(None);
        };
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
        Ok(Some((owner.clone(), repo.clone())))
    }

    /// The jobs the trust lets in, in the order of the flags' kinds.
    fn subjects(&self) -> Result<Vec<generate::Subject>, Invalid> {
        use generate::Subject;
        let mut subjects = Vec::new();
        for branch in &self.branch {
            subjects.push(Subject::Branch(git_ref("branch", branch.clone())?));
        }
        for tag in &self.tag {
            subjects.push(Subject::Tag(git_ref("tag", tag.clone())?));
        }
        for environment in &self.environment {
            subjects.push(Subject::Environment(check_ref(
                "environment",
                environment.clone(),
            )?));
        }
        if self.pull_request {
            subjects.push(Subject::PullRequest);
        }
        Ok(subjects)
    }
}

/// `--promote-from ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO`.
fn promote_from(from: &str) -> Result<generate::Source, Invalid> {
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
    Ok(generate::Source {
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
fn check_github_repo(repo: &str) -> Result<(), Invalid> {
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
fn git_ref(input: &'static str, value: String) -> Result<String, Invalid> {
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
fn check_signing_profile(arn: &str) -> Result<(), Invalid> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "signer"
        && !parts[3].is_empty()
        && ecr_host::is_account_id(parts[4])
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
fn check_ref(input: &'static str, value: String) -> Result<String, Invalid> {
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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Input(#[from] Invalid),
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Claims(String),
    #[error("{path}: {source}")]
    NotAPolicy {
        path: PathBuf,
        source: lint::NotAPolicy,
    },
    #[error("out-dir: {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs `policy generate|check|lint`; the exit code says allowed/clean (0) or not (1).
pub fn run(command: PolicyCommand) -> Result<ExitCode, Error> {
    match command {
        PolicyCommand::Generate(args) => generate_documents(*args),
        PolicyCommand::Check(args) => check_claims(&args),
        PolicyCommand::Lint(args) => lint_files(&args),
    }
}

/// `policy generate`: the documents, printed in `--format` and written to `--out-dir`.
fn generate_documents(args: GenerateArgs) -> Result<ExitCode, Error> {
    let format = args.format;
    let out_dir = args.out_dir.clone();
    let request = args.validate()?;
    if request.github_ids.is_none() {
        eprintln!(
            "note: the trust allows only classic subjects (repo:{repo}:…); a repository created, renamed or transferred on github.com since 2026-07-15, or opted in, has immutable ones (repo:OWNER@OWNER_ID/REPO@REPO_ID:…): add --github-owner-id and --github-repo-id (gh api repos/{repo} --jq '.owner.id, .id', or GITHUB_REPOSITORY_OWNER_ID and GITHUB_REPOSITORY_ID in any workflow run)",
            repo = request.github_repo
        );
    }
    for target in &request.targets {
        if let Host::Registry(host) = &target.host {
            eprintln!(
                "note: targets line {} `{}`: {host} is not ECR; its login comes from the Docker config, and no IAM document is written for it",
                target.line,
                target.name()
            );
        }
    }
    let documents = generate::generate(&request);
    if let Some(dir) = out_dir {
        write_documents(&dir, &documents)?;
    }
    print!("{}", render::render(format, &request, &documents));
    Ok(ExitCode::SUCCESS)
}

/// `policy check`: the trust policy's verdict on the job's claims, and why.
fn check_claims(args: &CheckArgs) -> Result<ExitCode, Error> {
    let trust = read_json(&args.trust)?;
    let claims = match (&args.claims, &args.token) {
        (Some(path), _) => read_json(path)?.as_object().cloned().ok_or_else(|| {
            Error::Claims(format!("claims: {} is not a JSON object", path.display()))
        })?,
        (None, Some(token)) => crate::auth::jwt_claims(token).ok_or_else(|| {
            Error::Claims("token: not a JWT whose middle part is base64url JSON".into())
        })?,
        (None, None) => {
            return Err(Error::Claims("give --claims FILE or --token JWT".into()));
        }
    };
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or("(no sub claim)");
    match evaluate::check_trust(&trust, &claims) {
        evaluate::Verdict::Allowed {
            statement,
            requires,
        } if requires.is_empty() => {
            println!("allowed: {statement} lets a token with sub `{sub}` assume the role");
            Ok(ExitCode::SUCCESS)
        }
        evaluate::Verdict::Allowed {
            statement,
            requires,
        } => {
            println!(
                "allowed if the request meets what the token cannot tell: {statement} lets a token with sub `{sub}` assume the role when"
            );
            for requirement in requires {
                println!("  - {requirement}");
            }
            Ok(ExitCode::SUCCESS)
        }
        evaluate::Verdict::Denied { reasons } => {
            println!("denied: no statement lets a token with sub `{sub}` assume the role");
            for reason in reasons {
                println!("  - {reason}");
            }
            if let Some(hint) = evaluate::immutable_subject_hint(&trust, &claims) {
                println!("  {hint}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `policy lint`: each file's findings, a count, and whether one is at `--fail-on`.
fn lint_files(args: &LintArgs) -> Result<ExitCode, Error> {
    // Every file is read before anything is said: a file that is not a policy
    // is one error line and nothing else.
    let mut documents = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let findings = lint::lint(&text).map_err(|source| Error::NotAPolicy {
            path: path.clone(),
            source,
        })?;
        documents.push((path, findings));
    }
    let mut worst = None;
    let mut total = 0;
    for (path, findings) in documents {
        if findings.is_empty() {
            println!("{}: no findings", path.display());
        }
        for f in &findings {
            println!(
                "{}: {}[{}]: {}: {}",
                path.display(),
                f.severity,
                f.rule,
                f.location,
                f.message
            );
            worst = Some(worst.map_or(f.severity, |w: Severity| w.min(f.severity)));
        }
        total += findings.len();
    }
    println!(
        "{total} finding{} in {} document{}",
        if total == 1 { "" } else { "s" },
        args.files.len(),
        if args.files.len() == 1 { "" } else { "s" }
    );
    Ok(match worst {
        Some(severity) if severity <= args.fail_on => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

fn read_json(path: &Path) -> Result<Value, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

fn write_documents(dir: &Path, documents: &[generate::Document]) -> Result<(), Error> {
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    for d in documents {
        let path = dir.join(&d.name);
        std::fs::write(&path, render::pretty(&d.body) + "\n").map_err(write_err(&path))?;
    }
    Ok(())
}
