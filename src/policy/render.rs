//! The generated documents in the forms people apply them: plain JSON documents, the
//! `aws` commands that create them, a CloudFormation template or Terraform resources
//! per account, or Markdown for a README. Every form holds the same JSON documents.

use serde_json::{Map, Value, json};

use super::GITHUB_OIDC_HOST;
use super::generate::{Attach, Document, Request};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object: file name → document
    Json,
    /// The `aws` CLI commands that create everything, account by account
    AwsCli,
    /// A CloudFormation template per account
    Cloudformation,
    /// Terraform resources (a provider alias `registry` for the registry account; with
    /// --targets, `account_ACCOUNT` for each account and the AWS provider 6.0 or later)
    Terraform,
    /// Markdown with the aws commands, for a README
    Markdown,
}

pub fn render(format: Format, request: &Request, documents: &[Document]) -> String {
    match format {
        Format::Json => {
            let map: Map<String, Value> = documents
                .iter()
                .map(|d| (d.name.to_owned(), d.body.clone()))
                .collect();
            pretty(&Value::Object(map)) + "\n"
        }
        Format::AwsCli => aws_cli(request, documents, false),
        Format::Markdown => aws_cli(request, documents, true),
        Format::Cloudformation => cloudformation(request, documents),
        Format::Terraform => terraform(request, documents),
    }
}

pub fn pretty(value: &Value) -> String {
    // Serialising a Value cannot fail: its keys are strings.
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Accounts in the order they are set up: the CI account first.
fn accounts(documents: &[Document]) -> Vec<&str> {
    let mut accounts: Vec<&str> = Vec::new();
    for d in documents {
        if !accounts.contains(&d.account.as_str()) {
            accounts.push(&d.account);
        }
    }
    accounts
}

fn aws_cli(request: &Request, documents: &[Document], markdown: bool) -> String {
    let mut out = String::new();
    for account in accounts(documents) {
        if markdown {
            out.push_str(&format!("#### In account {account}\n\n"));
        } else {
            out.push_str(&format!(
                "# ── In account {account} (run with its credentials) ──\n\n"
            ));
        }
        let mut step = |purpose: &str, command: String| {
            if markdown {
                out.push_str(&format!(
                    "{}:\n\n```sh\n{command}\n```\n\n",
                    capitalise(purpose)
                ));
            } else {
                out.push_str(&format!("# {purpose}\n{command}\n\n"));
            }
        };
        if account == request.account {
            step(
                "the GitHub OIDC provider, once per account",
                format!(
                    "aws iam create-open-id-connect-provider \\\n  --url https://{GITHUB_OIDC_HOST} \\\n  --client-id-list {}",
                    request.audience
                ),
            );
        }
        for d in documents.iter().filter(|d| d.account == account) {
            let body = pretty(&d.body);
            let command = match &d.attach {
                Attach::Trust { role, path } => {
                    let path = path
                        .as_ref()
                        .map(|p| format!(" --path {p}"))
                        .unwrap_or_default();
                    format!(
                        "aws iam create-role --role-name {role}{path} \\\n  --assume-role-policy-document '{body}'"
                    )
                }
                Attach::RolePolicy { role, policy } => format!(
                    "aws iam put-role-policy --role-name {role} --policy-name {policy} \\\n  --policy-document '{body}'"
                ),
                Attach::ManagedPolicy { policy } => format!(
                    "aws iam create-policy --policy-name {policy} \\\n  --policy-document '{body}'"
                ),
                Attach::RepositoryPolicy {
                    region,
                    repositories,
                } => repositories
                    .iter()
                    .map(|r| {
                        format!(
                            "aws ecr set-repository-policy --region {region} --registry-id {account} --repository-name {r} \\\n  --policy-text '{body}'"
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            step(&format!("{} ({})", d.purpose, d.name), command);
        }
    }
    out.trim_end().to_owned() + "\n"
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A CloudFormation logical id from a name: letters and digits, camel-cased.
fn logical_id(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .map(capitalise)
        .collect()
}

fn cloudformation(request: &Request, documents: &[Document]) -> String {
    let mut out = String::new();
    for account in accounts(documents) {
        let stacks = stacks(documents, account);
        let split = stacks.len() > 1;
        for (index, (region, here)) in stacks.into_iter().enumerate() {
            let mut resources = Map::new();
            if account == request.account && index == 0 {
                resources.insert(
                    "GitHubOidcProvider".into(),
                    json!({
                        "Type": "AWS::IAM::OIDCProvider",
                        "Properties": {
                            "Url": format!("https://{GITHUB_OIDC_HOST}"),
                            "ClientIdList": [request.audience],
                        }
                    }),
                );
            }
            for d in &here {
                stack_resources(&mut resources, d, &here);
            }
            let template = json!({
                "AWSTemplateFormatVersion": "2010-09-09",
                "Description": description(request, account),
                "Resources": resources,
            });
            let region = match region {
                Some(region) if split || !request.targets.is_empty() => format!(" in {region}"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "--- # stack for account {account}{region}\n{}\n",
                pretty(&template)
            ));
        }
    }
    out
}

/// An account's stacks, each with the region its repositories are in: a stack lives
/// in one region. The first holds the IAM resources (global) and the repositories of
/// the first region; each other region of a repository policy has a stack of its own.
fn stacks<'a>(
    documents: &'a [Document],
    account: &str,
) -> Vec<(Option<&'a str>, Vec<&'a Document>)> {
    let here: Vec<&Document> = documents.iter().filter(|d| d.account == account).collect();
    let mut stacks: Vec<(Option<&str>, Vec<&Document>)> = vec![(None, Vec::new())];
    for d in here {
        let Attach::RepositoryPolicy { region, .. } = &d.attach else {
            stacks[0].1.push(d);
            continue;
        };
        if stacks[0].0.is_none() {
            stacks[0].0 = Some(region);
        }
        match stacks.iter_mut().find(|(r, _)| *r == Some(region.as_str())) {
            Some((_, stack)) => stack.push(d),
            None => stacks.push((Some(region), vec![d])),
        }
    }
    stacks
}

/// A stack's description: what is pushed to the account.
fn description(request: &Request, account: &str) -> String {
    let mut repositories: Vec<&str> = Vec::new();
    if request.targets.is_empty() {
        repositories.extend(request.repositories.iter().map(String::as_str));
    }
    // The same repository in several regions of the account is named once.
    for target in request
        .targets
        .iter()
        .filter(|t| t.account() == Some(account))
    {
        if !repositories.contains(&target.repository.as_str()) {
            repositories.push(&target.repository);
        }
    }
    if repositories.is_empty() {
        format!("ecr-push: the CI role of a keyless push ({account})")
    } else {
        format!(
            "ecr-push: keyless push to {} ({account})",
            repositories.join(", ")
        )
    }
}

/// The resources of one document in a stack that holds `here`: a role with its inline
/// policies, a policy of a role made elsewhere, a managed policy, or repositories.
fn stack_resources(resources: &mut Map<String, Value>, d: &Document, here: &[&Document]) {
    match &d.attach {
        Attach::Trust { role, path } => {
            let policies: Vec<Value> = here
                .iter()
                .filter_map(|p| match &p.attach {
                    Attach::RolePolicy { role: r, policy } if r == role => {
                        Some(json!({ "PolicyName": policy, "PolicyDocument": p.body }))
                    }
                    _ => None,
                })
                .collect();
            let id = logical_id(role);
            let id = if id.ends_with("Role") {
                id
            } else {
                id + "Role"
            };
            let mut properties = json!({
                "RoleName": role,
                "AssumeRolePolicyDocument": d.body,
                "Policies": policies,
            });
            if let Some(path) = path {
                properties["Path"] = path.as_str().into();
            }
            resources.insert(
                id,
                json!({ "Type": "AWS::IAM::Role", "Properties": properties }),
            );
        }
        Attach::RolePolicy { role, policy } => {
            let role_in_template = here
                .iter()
                .any(|t| matches!(&t.attach, Attach::Trust { role: r, .. } if r == role));
            if !role_in_template {
                resources.insert(
                    logical_id(policy) + "Policy",
                    json!({
                        "Type": "AWS::IAM::RolePolicy",
                        "Properties": { "RoleName": role, "PolicyName": policy, "PolicyDocument": d.body }
                    }),
                );
            }
        }
        Attach::ManagedPolicy { policy } => {
            resources.insert(
                logical_id(policy),
                json!({
                    "Type": "AWS::IAM::ManagedPolicy",
                    "Properties": { "ManagedPolicyName": policy, "PolicyDocument": d.body }
                }),
            );
        }
        Attach::RepositoryPolicy { repositories, .. } => {
            for repository in repositories {
                resources.insert(
                    logical_id(repository) + "Repository",
                    json!({
                        "Type": "AWS::ECR::Repository",
                        "Properties": { "RepositoryName": repository, "RepositoryPolicyText": d.body }
                    }),
                );
            }
        }
    }
}

/// A Terraform identifier from a name.
fn tf_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn heredoc(value: &Value) -> String {
    let body: Vec<String> = pretty(value).lines().map(|l| format!("    {l}")).collect();
    format!("<<-EOT\n{}\n  EOT", body.join("\n"))
}

/// With `--targets`, the AWS provider 6.0's `region` on a repository policy puts it in
/// its target's region, and each account other than the CI role's has a provider alias
/// of its own; resource names carry the account (and a repository's region), as the
/// same role or repository name is usual in every account of a release.
const TARGETS_PROVIDERS: &str = "# Needs the AWS provider 6.0 or later (a repository policy's `region`), and for each\n# account other than the CI role's a provider alias account_ACCOUNT with its credentials.\n\n";

fn terraform(request: &Request, documents: &[Document]) -> String {
    let targets = !request.targets.is_empty();
    let mut out = String::new();
    if targets {
        out.push_str(TARGETS_PROVIDERS);
    }
    for account in accounts(documents) {
        let names = TfNames {
            account,
            suffix: targets && account != request.account,
            regions: targets,
        };
        let provider = match (account == request.account, targets) {
            (true, _) => String::new(),
            (false, false) => "  provider = aws.registry\n".to_owned(),
            (false, true) => format!("  provider = aws.account_{account}\n"),
        };
        out.push_str(&format!("# ── account {account} ──\n\n"));
        if account == request.account {
            out.push_str(&format!(
                "resource \"aws_iam_openid_connect_provider\" \"github\" {{\n  url            = \"https://{GITHUB_OIDC_HOST}\"\n  client_id_list = [\"{}\"]\n}}\n\n",
                request.audience
            ));
        }
        for d in documents.iter().filter(|d| d.account == account) {
            let block = terraform_block(d, documents, &names, &provider);
            out.push_str(&format!("# {} ({})\n{block}\n", d.purpose, d.name));
        }
    }
    out.trim_end().to_owned() + "\n"
}

/// How resources of one account are named: unique across accounts and regions.
struct TfNames<'a> {
    account: &'a str,
    /// The account's id after each name (every account but the CI role's, with targets).
    suffix: bool,
    /// A repository policy's region after its name, and as its `region` (targets).
    regions: bool,
}

impl TfNames<'_> {
    fn name(&self, base: &str) -> String {
        if self.suffix {
            format!("{}_{}", tf_id(base), self.account)
        } else {
            tf_id(base)
        }
    }
}

/// One document as Terraform resources.
fn terraform_block(
    d: &Document,
    documents: &[Document],
    names: &TfNames<'_>,
    provider: &str,
) -> String {
    match &d.attach {
        Attach::Trust { role, path } => {
            let path = path
                .as_ref()
                .map(|p| format!("  path               = \"{p}\"\n"))
                .unwrap_or_default();
            format!(
                "resource \"aws_iam_role\" \"{}\" {{\n{provider}  name               = \"{role}\"\n{path}  assume_role_policy = {}\n}}\n",
                names.name(role),
                heredoc(&d.body)
            )
        }
        Attach::RolePolicy { role, policy } => {
            // A reference, when the role is made here too, orders the two.
            let created_here = documents.iter().any(|t| {
                t.account == names.account
                    && matches!(&t.attach, Attach::Trust { role: r, .. } if r == role)
            });
            let role_ref = if created_here {
                format!("aws_iam_role.{}.name", names.name(role))
            } else {
                format!("\"{role}\"")
            };
            format!(
                "resource \"aws_iam_role_policy\" \"{}_{}\" {{\n{provider}  role   = {role_ref}\n  name   = \"{policy}\"\n  policy = {}\n}}\n",
                names.name(role),
                tf_id(policy),
                heredoc(&d.body)
            )
        }
        Attach::ManagedPolicy { policy } => format!(
            "resource \"aws_iam_policy\" \"{}\" {{\n{provider}  name   = \"{policy}\"\n  policy = {}\n}}\n",
            names.name(policy),
            heredoc(&d.body)
        ),
        Attach::RepositoryPolicy {
            region,
            repositories,
        } => repositories
            .iter()
            .map(|r| {
                let (name, region) = if names.regions {
                    (
                        names.name(&format!("{r}_{region}")),
                        format!("  region     = \"{region}\"\n"),
                    )
                } else {
                    (names.name(r), String::new())
                };
                format!(
                    "resource \"aws_ecr_repository_policy\" \"{name}\" {{\n{provider}{region}  repository = \"{r}\"\n  policy     = {}\n}}\n",
                    heredoc(&d.body)
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}
