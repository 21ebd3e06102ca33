//! The documents of a push to several targets (`--targets`), account by account: each
//! chained role's trust of exactly the CI role (with the line's external id) and its
//! push on exactly its targets' repositories, in their regions; a repository policy
//! where a repository's account is not the account of the role that pushes to it; the
//! CI role's leave to assume exactly the roles it chains into, beside its push on the
//! targets it pushes itself (those without `role=`); and each account's personas.
//!
//! Roles are told apart by ARN, as the push assumes each distinct role once. A target
//! on another registry than ECR is pushed with a Docker login and has no IAM side: it
//! is passed over here (the CLI says so). `Request::check_targets`, which the CLI runs
//! first, refuses what a list of lines cannot say alone: two external ids for one
//! role, two partitions, one repository twice.

use serde_json::json;

use super::{
    Attach, Document, Pusher, Request, ci_trust, cross_account, one_or_many, policy, readonly_pull,
    scanner,
};
use crate::ecr_host::EcrHost;
use crate::names::{Invalid, invalid};
use crate::targets::{Host, Target};

/// One ECR target: its registry and repository.
struct Destination<'a> {
    host: &'a EcrHost,
    repository: &'a str,
    /// Its line in `targets`.
    line: usize,
}

impl Destination<'_> {
    fn arn(&self) -> String {
        format!(
            "arn:{}:ecr:{}:{}:repository/{}",
            self.host.partition(),
            self.host.region,
            self.host.account,
            self.repository
        )
    }
}

/// A role that pushes: the CI role (to the targets without `role=`) or a target's role.
struct Role<'a> {
    arn: String,
    account: String,
    name: String,
    /// The IAM path of a role ARN that has one (`/team/`).
    path: Option<String>,
    external_id: Option<&'a str>,
    /// The targets it pushes to, in line order.
    pushes: Vec<Destination<'a>>,
}

impl<'a> Role<'a> {
    /// The role an ARN names, which targets::parse has checked.
    fn chained(arn: &str, external_id: Option<&'a str>) -> Self {
        let fields: Vec<&str> = arn.splitn(6, ':').collect();
        let account = fields.get(4).copied().unwrap_or_default();
        let resource = fields.get(5).copied().unwrap_or_default();
        let path_name = resource.strip_prefix("role/").unwrap_or(resource);
        let (path, name) = match path_name.rsplit_once('/') {
            Some((path, name)) => (Some(format!("/{path}/")), name),
            None => (None, path_name),
        };
        Self {
            arn: arn.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
            path,
            external_id,
            pushes: Vec::new(),
        }
    }

    fn ci(request: &Request) -> Self {
        Self {
            arn: request.role_arn(),
            account: request.account.clone(),
            name: request.role_name.clone(),
            path: None,
            external_id: None,
            pushes: Vec::new(),
        }
    }

    fn arns(&self) -> Vec<String> {
        self.pushes.iter().map(Destination::arn).collect()
    }

    /// Whether it signs: every role that pushes, as managed signing signs as the
    /// pusher and the profile's ARN does not say which registries sign with it (a
    /// profile can be shared with other accounts).
    fn signs(&self) -> bool {
        !self.pushes.is_empty()
    }
}

/// The CI role and the chained roles (in the order the lines first name them), each
/// with the targets it pushes to.
fn roles(request: &Request) -> (Role<'_>, Vec<Role<'_>>) {
    let mut ci = Role::ci(request);
    let mut chained: Vec<Role<'_>> = Vec::new();
    for target in &request.targets {
        let Target {
            host: Host::Ecr(host),
            repository,
            ..
        } = target
        else {
            continue;
        };
        let destination = Destination {
            host,
            repository,
            line: target.line,
        };
        let role = match &target.role {
            None => &mut ci,
            Some(arn) => match chained.iter().position(|r| r.arn == *arn) {
                Some(at) => &mut chained[at],
                None => {
                    chained.push(Role::chained(arn, target.external_id.as_deref()));
                    let last = chained.len() - 1;
                    &mut chained[last]
                }
            },
        };
        role.pushes.push(destination);
    }
    (ci, chained)
}

/// Every document, in the order they are set up: the CI account's first.
pub(super) fn documents(request: &Request) -> Vec<Document> {
    let (ci, chained) = roles(request);
    // The scan gate scans a release on its first ECR target only.
    let scanned: Option<String> = request
        .scan_gate
        .then(|| {
            std::iter::once(&ci)
                .chain(&chained)
                .flat_map(|r| &r.pushes)
                .min_by_key(|d| d.line)
                .map(Destination::arn)
        })
        .flatten();
    let scans = |role: &Role<'_>| -> Option<String> {
        scanned
            .clone()
            .filter(|arn| role.pushes.iter().any(|d| d.arn() == *arn))
    };
    let mut documents = vec![ci_trust(request)];
    if !chained.is_empty() {
        documents.push(Document {
            name: "aws-ecr-ci-assume-publisher.json".into(),
            account: request.account.clone(),
            attach: Attach::RolePolicy {
                role: request.role_name.clone(),
                policy: "assume-ecr-publisher".into(),
            },
            purpose: "lets the CI role assume exactly the targets' roles, and nothing else",
            body: cross_account::assume_publishers(
                request,
                chained.iter().map(|r| r.arn.clone()).collect(),
            ),
        });
    }
    // The source is read once for every target, with the first role's credentials.
    let reads_source = request.source.is_some();
    if !ci.pushes.is_empty() || reads_source {
        documents.push(Document {
            name: "aws-ecr-ci-push.json".into(),
            account: request.account.clone(),
            attach: Attach::RolePolicy {
                role: request.role_name.clone(),
                policy: "ecr-push".into(),
            },
            purpose: "the push to the targets without role=, on their repositories only",
            body: request.push_policy(ci.arns(), ci.signs(), reads_source, scans(&ci).as_deref()),
        });
    }
    for account in accounts(&ci, &chained) {
        for role in chained.iter().filter(|r| r.account == account) {
            documents.extend(chained_role(request, role, scans(role).as_deref()));
        }
        documents.extend(repository_policies(
            request,
            &account,
            &ci,
            &chained,
            scanned.as_deref(),
        ));
        let arns: Vec<String> = std::iter::once(&ci)
            .chain(&chained)
            .flat_map(|r| &r.pushes)
            .filter(|d| d.host.account == account)
            .map(Destination::arn)
            .collect();
        if !arns.is_empty() {
            let arns = one_or_many(arns);
            let pull = format!("aws-ecr-readonly-pull-{account}.json");
            documents.push(readonly_pull(pull, &account, &arns));
            documents.push(scanner(
                format!("aws-ecr-scanner-{account}.json"),
                &account,
                &arns,
            ));
        }
    }
    if let Some(source) = request
        .source
        .as_ref()
        .filter(|s| s.account != request.account)
    {
        let reader = Pusher::ci_role(request);
        documents.push(cross_account::source_repository_policy(
            request, source, &reader,
        ));
    }
    documents
}

/// The accounts that hold a chained role or a target's registry, the CI account first.
fn accounts(ci: &Role<'_>, chained: &[Role<'_>]) -> Vec<String> {
    let mut accounts = vec![ci.account.clone()];
    for role in std::iter::once(ci).chain(chained) {
        let here =
            std::iter::once(&role.account).chain(role.pushes.iter().map(|d| &d.host.account));
        for account in here {
            if !accounts.contains(account) {
                accounts.push(account.clone());
            }
        }
    }
    accounts
}

/// A chained role's trust of exactly the CI role, and its push.
fn chained_role(request: &Request, role: &Role<'_>, scanned: Option<&str>) -> [Document; 2] {
    let (account, name) = (&role.account, &role.name);
    [
        Document {
            name: format!("aws-ecr-publisher-trust-{account}-{name}.json"),
            account: account.clone(),
            attach: Attach::Trust {
                role: name.clone(),
                path: role.path.clone(),
            },
            purpose: "lets exactly the CI role assume this target's role",
            body: cross_account::publisher_trust(request, role.external_id),
        },
        Document {
            name: format!("aws-ecr-publisher-push-{account}-{name}.json"),
            account: account.clone(),
            attach: Attach::RolePolicy {
                role: name.clone(),
                policy: "ecr-push".into(),
            },
            purpose: "the push of this role's targets, on their repositories only",
            body: request.push_policy(role.arns(), role.signs(), false, scanned),
        },
    ]
}

/// The repository policies of `account`: one per region and role that pushes from
/// another account, on the repositories it pushes to. In the role's own account its
/// permissions are enough, and a repository policy (which `set-repository-policy`
/// replaces whole) is left as it is.
fn repository_policies(
    request: &Request,
    account: &str,
    ci: &Role<'_>,
    chained: &[Role<'_>],
    scanned: Option<&str>,
) -> Vec<Document> {
    let mut documents: Vec<Document> = Vec::new();
    for role in std::iter::once(ci).chain(chained) {
        // By region, and the repository the scan gate scans apart: only it lets the
        // role scan.
        let mut groups: Vec<(&str, bool, Vec<String>)> = Vec::new();
        for d in role.pushes.iter().filter(|d| d.host.account == account) {
            if role.account == account {
                continue;
            }
            let scans = scanned == Some(d.arn().as_str());
            match groups
                .iter_mut()
                .find(|(r, s, _)| *r == d.host.region && *s == scans)
            {
                Some((_, _, repositories)) => repositories.push(d.repository.to_owned()),
                None => groups.push((&d.host.region, scans, vec![d.repository.to_owned()])),
            }
        }
        for (region, scans, repositories) in groups {
            let base = format!("aws-ecr-cross-account-repository-policy-{account}-{region}");
            let mut name = format!("{base}.json");
            let mut n = 1;
            while documents.iter().any(|d| d.name == name) {
                n += 1;
                name = format!("{base}-{n}.json");
            }
            let sid = if role.arn == ci.arn {
                "PushFromCiRole"
            } else {
                "PushFromTargetRole"
            };
            let mut statements = vec![json!({
                "Sid": sid,
                "Effect": "Allow",
                "Principal": { "AWS": role.arn },
                "Action": request.push_actions(),
            })];
            if scans {
                let mut scan = Request::scan_statement("ScanGate", None);
                scan["Principal"] = json!({ "AWS": role.arn });
                statements.push(scan);
            }
            documents.push(Document {
                name,
                account: account.to_owned(),
                attach: Attach::RepositoryPolicy {
                    region: region.to_owned(),
                    repositories,
                },
                purpose: "lets exactly the role that pushes to the repository push from its own account",
                body: policy(serde_json::Value::Array(statements)),
            });
        }
    }
    documents
}

/// Why a list of targets has no IAM documents.
pub const NO_ECR_TARGET: &str = "lists no ECR target, and only ECR targets have IAM documents (another registry's login comes from the Docker config)";

fn ecr_host(target: &Target) -> Option<&EcrHost> {
    match &target.host {
        Host::Ecr(host) => Some(host),
        Host::Registry(_) => None,
    }
}

impl Request {
    /// What the lines of `--targets` cannot say one by one: that IAM can join them up.
    /// One partition (a role cannot be assumed across partitions), each repository once
    /// (two host forms of one registry are one repository), one external id per role
    /// (a role has one trust), and no line whose role is the CI role itself.
    pub fn check_targets(&self) -> Result<(), Invalid> {
        let at = |t: &Target, message: String| {
            invalid(
                "targets",
                format!("line {} `{}`: {message}", t.line, t.name()),
            )
        };
        let ecr: Vec<(&Target, &EcrHost)> = self
            .targets
            .iter()
            .filter_map(|t| Some((t, ecr_host(t)?)))
            .collect();
        if ecr.is_empty() {
            return Err(invalid("targets", NO_ECR_TARGET));
        }
        let partition = crate::ecr_host::partition(&self.region);
        for (index, &(target, host)) in ecr.iter().enumerate() {
            if host.partition() != partition {
                return Err(at(
                    target,
                    format!(
                        "is in partition {}, and the CI role (region {}) in {partition}; no role is assumed across partitions: push there in a step of its own",
                        host.partition(),
                        self.region
                    ),
                ));
            }
            let earlier = &ecr[..index];
            if let Some((first, _)) = earlier.iter().find(|(t, h)| {
                h.account == host.account
                    && h.region == host.region
                    && t.repository == target.repository
            }) {
                return Err(at(
                    target,
                    format!(
                        "is the repository of line {} again, through another host form; give each repository once",
                        first.line
                    ),
                ));
            }
            let Some(role) = &target.role else { continue };
            // Role names are unique in an account, whatever their paths.
            if crate::names::account_of_arn(role) == Some(self.account.as_str())
                && role.rsplit('/').next() == Some(self.role_name.as_str())
            {
                return Err(at(
                    target,
                    format!(
                        "role= is the CI role ({}), which pushes the lines without role=; leave role= out",
                        self.role_arn()
                    ),
                ));
            }
            if let Some((first, _)) = earlier
                .iter()
                .find(|(t, _)| t.role.as_ref() == Some(role) && t.external_id != target.external_id)
            {
                let id = |t: &Target| match &t.external_id {
                    Some(id) => format!("external-id={id}"),
                    None => "no external-id".to_owned(),
                };
                return Err(at(
                    target,
                    format!(
                        "gives {role} {}, and line {} {}; a role has one trust: give both lines the same external id",
                        id(target),
                        first.line,
                        id(first)
                    ),
                ));
            }
        }
        if self.session_tags && self.targets.iter().all(|t| t.role.is_none()) {
            return Err(invalid(
                "session-tags",
                "no target has role=; session tags are set on the chained hop, so give role= or leave --session-tags out",
            ));
        }
        Ok(())
    }
}
