//! `policy generate`: the minimal documents for a keyless push, for given accounts,
//! region, repositories and GitHub subject. Every statement names its actions and its
//! resources exactly; the one `*` is `ecr:GetAuthorizationToken`'s, which has no other
//! resource, and it appears only when asked for (`--docker-login`, the puller).
//!
//! This file holds the request, the CI role's trust and push documents and the two
//! personas (puller, scanner); cross_account.rs the pieces a second account needs;
//! targets.rs the documents of a push to several targets (`--targets`), per account.

mod cross_account;
mod targets;

pub use targets::NO_ECR_TARGET;
#[cfg(test)]
mod tests;

use serde_json::{Value, json};

use super::{GITHUB_OIDC_HOST, PUSH_ACTIONS};

/// Which jobs of the GitHub repository may assume the role: the `sub` claim's shape.
#[derive(Debug, Clone)]
pub enum Subject {
    Branch(String),
    Tag(String),
    Environment(String),
    PullRequest,
}

impl Subject {
    /// What follows the repository in such a job's `sub` claim.
    fn context(&self) -> String {
        match self {
            Self::Branch(b) => format!("ref:refs/heads/{b}"),
            Self::Tag(t) => format!("ref:refs/tags/{t}"),
            Self::Environment(e) => format!("environment:{e}"),
            Self::PullRequest => "pull_request".into(),
        }
    }
}

/// What to generate for.
#[derive(Debug, Clone)]
pub struct Request {
    pub account: String,
    pub region: String,
    pub repositories: Vec<String>,
    pub github_repo: String,
    /// The owner's and the repository's numeric ids: with them the trust also allows
    /// the immutable subjects, `repo:OWNER@OWNER_ID/REPO@REPO_ID:…`.
    pub github_ids: Option<(String, String)>,
    /// The jobs that may assume the role; at least one.
    pub subjects: Vec<Subject>,
    pub audience: String,
    pub role_name: String,
    /// The account that owns the registry, when it is not `account`.
    pub registry_account: Option<String>,
    /// Chaining: the role in the registry account that the first role assumes.
    pub publisher_role: Option<String>,
    pub external_id: Option<String>,
    pub session_tags: bool,
    pub docker_login: bool,
    /// `create-repository: true`: ecr:CreateRepository on the repositories.
    pub create_repository: bool,
    /// The AWS Signer profile of the registry's managed signing, if it has one.
    pub signing_profile: Option<String>,
    /// `transport: registry`: the registry endpoint, reached with the login that
    /// GetAuthorizationToken gives.
    pub registry_transport: bool,
    /// `scan-fail-on` (`--scan-gate`): the gate's two scan actions on the repositories.
    pub scan_gate: bool,
    /// An ECR repository the push reads its image from (a promotion).
    pub source: Option<Source>,
    /// The push's `targets`, in line order. When there are any they name every
    /// repository, registry and chained role, and `repositories`, `registry_account`,
    /// `publisher_role` and `external_id` are empty; `region` is then the step's (STS's),
    /// which sets the CI role's partition. A target on another registry than ECR has no
    /// IAM side and is passed over.
    pub targets: Vec<crate::targets::Target>,
}

/// A repository in another ECR registry that images are promoted from.
#[derive(Debug, Clone)]
pub struct Source {
    pub account: String,
    pub region: String,
    pub repository: String,
}

/// What reading an image from ECR through its registry endpoint takes: manifests, then
/// layers (a blob GET is answered with a redirect GetDownloadUrlForLayer authorises).
const PULL_ACTIONS: [&str; 2] = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"];

/// What the scan gate (`scan-fail-on`) calls, on the repository it pushes to.
const SCAN_GATE_ACTIONS: [&str; 2] = ["ecr:StartImageScan", "ecr:DescribeImageScanFindings"];

/// Where a document goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// The trust (assume-role) policy of a role, created at this IAM path (`/` if none).
    Trust { role: String, path: Option<String> },
    /// An inline permissions policy of a role.
    RolePolicy { role: String, policy: String },
    /// A managed policy, for roles this tool does not create (the personas).
    ManagedPolicy { policy: String },
    /// The repository policy of each of these repositories, in this region.
    RepositoryPolicy {
        region: String,
        repositories: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Document {
    /// The file name under docs/iam/policies (or `--out-dir`).
    pub name: String,
    pub account: String,
    pub attach: Attach,
    /// One sentence on what it is for.
    pub purpose: &'static str,
    pub body: Value,
}

impl Request {
    fn partition(&self) -> &'static str {
        crate::ecr_host::partition(&self.region)
    }

    fn registry_account(&self) -> &str {
        self.registry_account.as_deref().unwrap_or(&self.account)
    }

    pub fn role_arn(&self) -> String {
        format!(
            "arn:{}:iam::{}:role/{}",
            self.partition(),
            self.account,
            self.role_name
        )
    }

    fn publisher_arn(&self, name: &str) -> String {
        format!(
            "arn:{}:iam::{}:role/{name}",
            self.partition(),
            self.registry_account()
        )
    }

    fn repository_arns(&self) -> Vec<String> {
        self.repositories
            .iter()
            .map(|r| {
                format!(
                    "arn:{}:ecr:{}:{}:repository/{r}",
                    self.partition(),
                    self.region,
                    self.registry_account()
                )
            })
            .collect()
    }

    /// What ecr-push calls, and BatchGetImage (which AWS's own push policy holds too):
    /// with it a re-push of an unchanged image asks once which tags are already set
    /// rather than spend a PutImage (10 a second, shared by the account) on each, and a
    /// tag conflict in an immutable repository names the image the tag holds. With the
    /// scan gate, its two calls: whether a scan exists is StartImageScan's answer, so no
    /// registry-wide GetRegistryScanningConfiguration is needed.
    fn push_actions(&self) -> Vec<&'static str> {
        let mut actions = PUSH_ACTIONS.to_vec();
        actions.push("ecr:BatchGetImage");
        // With targets, only the one repository the gate scans gets them (`scan_statement`).
        if self.scan_gate && self.targets.is_empty() {
            actions.extend(SCAN_GATE_ACTIONS);
        }
        actions
    }

    /// The scan gate's calls on the one repository a release scans (its first ECR
    /// target), for the role that pushes there.
    fn scan_statement(sid: &str, resource: Option<&str>) -> Value {
        let mut statement = json!({
            "Sid": sid,
            "Effect": "Allow",
            "Action": SCAN_GATE_ACTIONS,
        });
        if let Some(resource) = resource {
            statement["Resource"] = resource.into();
        }
        statement
    }

    pub fn oidc_provider_arn(&self) -> String {
        format!(
            "arn:{}:iam::{}:oidc-provider/{GITHUB_OIDC_HOST}",
            self.partition(),
            self.account
        )
    }

    /// Every `sub` the trust allows: each subject in the classic form and, with the
    /// ids, in the immutable form, which names exactly this owner and repository (a
    /// renamed or recycled name with other ids does not match).
    pub fn subs(&self) -> Vec<String> {
        let (owner, repo) = self
            .github_repo
            .split_once('/')
            .unwrap_or((self.github_repo.as_str(), ""));
        let mut subs = Vec::new();
        for subject in &self.subjects {
            let context = subject.context();
            subs.push(crate::sub_claim::subject(owner, None, repo, Some(&context)));
            if let Some((owner_id, repo_id)) = &self.github_ids {
                subs.push(crate::sub_claim::subject(
                    owner,
                    Some((owner_id, repo_id)),
                    repo,
                    Some(&context),
                ));
            }
        }
        subs
    }

    fn trust(&self) -> Value {
        let subs = self.subs();
        let aud_key = format!("{GITHUB_OIDC_HOST}:aud");
        let sub_key = format!("{GITHUB_OIDC_HOST}:sub");
        // StringLike only where a wildcard was asked for: with StringEquals a `*` is a
        // literal character, and with StringLike everywhere a stray `*` would widen it.
        // Git refs cannot hold `*` or `?`, so under StringLike the other subjects still
        // match exactly; the two operators cannot be split, as IAM ANDs them.
        let sub = one_or_many(subs.clone());
        let condition = if subs.iter().any(|s| s.contains(['*', '?'])) {
            json!({
                "StringEquals": { aud_key: self.audience },
                "StringLike": { sub_key: sub },
            })
        } else {
            json!({ "StringEquals": { aud_key: self.audience, sub_key: sub } })
        };
        policy(json!([{
            "Sid": "GitHubActionsOidc",
            "Effect": "Allow",
            "Principal": { "Federated": self.oidc_provider_arn() },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }]))
    }

    /// The permissions of a role that pushes to `arns` (none for a CI role that only
    /// chains and reads the source), signs as the pusher when `signs`, and reads the
    /// promotion's source when `reads_source`.
    /// `scanned`: the repository a release's scan gate scans, when this role pushes it.
    fn push_policy(
        &self,
        arns: Vec<String>,
        signs: bool,
        reads_source: bool,
        scanned: Option<&str>,
    ) -> Value {
        let mut statements = Vec::new();
        let pushes = !arns.is_empty();
        if pushes {
            let arns = one_or_many(arns);
            statements.push(json!({
                "Sid": "PushToRepository",
                "Effect": "Allow",
                "Action": self.push_actions(),
                "Resource": arns,
            }));
            if self.create_repository {
                // No tags or encryption settings are sent, so nothing else is needed.
                statements.push(json!({
                    "Sid": "CreateRepository",
                    "Effect": "Allow",
                    "Action": "ecr:CreateRepository",
                    "Resource": arns,
                }));
            }
        }
        if let Some(scanned) = scanned {
            statements.push(Self::scan_statement("ScanGate", Some(scanned)));
        }
        if let Some(profile) = self.signing_profile.as_ref().filter(|_| signs) {
            // Managed signing signs as the pusher (ECR user guide, "Managed signing").
            statements.push(json!({
                "Sid": "SignOnPush",
                "Effect": "Allow",
                "Action": "signer:SignPayload",
                "Resource": profile,
            }));
        }
        if let Some(source) = self.source.as_ref().filter(|_| reads_source) {
            statements.push(json!({
                "Sid": "PullFromSource",
                "Effect": "Allow",
                "Action": PULL_ACTIONS,
                "Resource": format!(
                    "arn:{}:ecr:{}:{}:repository/{}",
                    crate::ecr_host::partition(&source.region),
                    source.region,
                    source.account,
                    source.repository
                ),
            }));
        }
        if (pushes && (self.docker_login || self.registry_transport)) || reads_source {
            statements.push(authorization_token_statement("RegistryLogin"));
        }
        policy(Value::Array(statements))
    }
}

/// Generates every document the request calls for, in the order they are set up.
pub fn generate(request: &Request) -> Vec<Document> {
    if !request.targets.is_empty() {
        return targets::documents(request);
    }
    let mut documents = vec![ci_trust(request)];
    let pusher = match (&request.registry_account, &request.publisher_role) {
        (Some(registry), Some(publisher)) => {
            documents.extend(cross_account::publisher(request, registry, publisher));
            Pusher {
                account: registry.clone(),
                role: publisher.clone(),
            }
        }
        (Some(registry), None) => {
            documents.push(cross_account::repository_policy(request, registry));
            Pusher::ci_role(request)
        }
        (None, _) => Pusher::ci_role(request),
    };
    if let Some(source) = request
        .source
        .as_ref()
        .filter(|s| s.account != pusher.account)
    {
        documents.push(cross_account::source_repository_policy(
            request, source, &pusher,
        ));
    }
    documents.push(push(request, pusher));
    let arns = one_or_many(request.repository_arns());
    let registry = request.registry_account();
    documents.push(readonly_pull(
        "aws-ecr-readonly-pull.json".into(),
        registry,
        &arns,
    ));
    documents.push(scanner("aws-ecr-scanner.json".into(), registry, &arns));
    documents
}

/// The role that pushes, and its account: the CI role, or with chaining the publisher.
struct Pusher {
    account: String,
    role: String,
}

impl Pusher {
    fn ci_role(request: &Request) -> Self {
        Self {
            account: request.account.clone(),
            role: request.role_name.clone(),
        }
    }
}

fn ci_trust(request: &Request) -> Document {
    Document {
        name: "aws-github-oidc-trust.json".into(),
        account: request.account.clone(),
        attach: Attach::Trust {
            role: request.role_name.clone(),
            path: None,
        },
        purpose: "lets only the chosen jobs of the GitHub repository assume the CI role with their OIDC token",
        body: request.trust(),
    }
}

fn push(request: &Request, pusher: Pusher) -> Document {
    Document {
        name: "aws-ecr-ci-push.json".into(),
        account: pusher.account,
        attach: Attach::RolePolicy {
            role: pusher.role,
            policy: "ecr-push".into(),
        },
        purpose: "the push, on the named repositories only",
        body: request.push_policy(
            request.repository_arns(),
            request.signing_profile.is_some(),
            request.source.is_some(),
            None,
        ),
    }
}

/// The persona for runtimes that pull.
fn readonly_pull(name: String, account: &str, arns: &Value) -> Document {
    Document {
        name,
        account: account.to_owned(),
        attach: Attach::ManagedPolicy {
            policy: "ecr-readonly-pull".into(),
        },
        purpose: "for runtimes that pull the images (attach it to their role)",
        body: policy(json!([
            {
                "Sid": "PullFromRepository",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                "Resource": arns,
            },
            authorization_token_statement("RegistryLogin"),
        ])),
    }
}

/// The persona for tools that inspect images and their scans.
fn scanner(name: String, account: &str, arns: &Value) -> Document {
    Document {
        name,
        account: account.to_owned(),
        attach: Attach::ManagedPolicy {
            policy: "ecr-scanner".into(),
        },
        purpose: "for tools that list and inspect images and their scan findings, read-only",
        body: policy(json!([{
            "Sid": "InspectRepository",
            "Effect": "Allow",
            "Action": [
                "ecr:DescribeRepositories",
                "ecr:DescribeImages",
                "ecr:ListImages",
                "ecr:DescribeImageScanFindings",
                "ecr:BatchGetImage",
            ],
            "Resource": arns,
        }])),
    }
}

/// `ecr:GetAuthorizationToken` exists only on `*`: the registry login.
fn authorization_token_statement(sid: &str) -> Value {
    json!({
        "Sid": sid,
        "Effect": "Allow",
        "Action": "ecr:GetAuthorizationToken",
        "Resource": "*",
    })
}

fn policy(statements: Value) -> Value {
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// One value as a string, several as a list: how people write IAM documents.
fn one_or_many<T: Into<Value>>(mut items: Vec<T>) -> Value {
    if items.len() == 1 {
        items.remove(0).into()
    } else {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}
