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
    /// Terraform resources (a provider alias `registry` for the registry account)
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
                Attach::Trust { role } => format!(
                    "aws iam create-role --role-name {role} \\\n  --assume-role-policy-document '{body}'"
                ),
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
        let mut resources = Map::new();
        if account == request.account {
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
        let here: Vec<&Document> = documents.iter().filter(|d| d.account == account).collect();
        for d in &here {
            match &d.attach {
                Attach::Trust { role } => {
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
                    resources.insert(
                        id,
                        json!({
                            "Type": "AWS::IAM::Role",
                            "Properties": {
                                "RoleName": role,
                                "AssumeRolePolicyDocument": d.body,
                                "Policies": policies,
                            }
                        }),
                    );
                }
                Attach::RolePolicy { role, policy } => {
                    let role_in_template = here
                        .iter()
                        .any(|t| matches!(&t.attach, Attach::Trust { role: r } if r == role));
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
        let template = json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": format!("ecr-push: keyless push to {} ({account})", request.repositories.join(", ")),
            "Resources": resources,
        });
        out.push_str(&format!(
            "--- # stack for account {account}\n{}\n",
            pretty(&template)
        ));
    }
    out
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

fn terraform(request: &Request, documents: &[Document]) -> String {
    let mut out = String::new();
    for account in accounts(documents) {
        let provider = if account == request.account {
            String::new()
        } else {
            "  provider = aws.registry\n".to_owned()
        };
        out.push_str(&format!("# ── account {account} ──\n\n"));
        if account == request.account {
            out.push_str(&format!(
                "resource \"aws_iam_openid_connect_provider\" \"github\" {{\n  url            = \"https://{GITHUB_OIDC_HOST}\"\n  client_id_list = [\"{}\"]\n}}\n\n",
                request.audience
            ));
        }
        for d in documents.iter().filter(|d| d.account == account) {
            let block = match &d.attach {
                Attach::Trust { role } => format!(
                    "resource \"aws_iam_role\" \"{}\" {{\n{provider}  name               = \"{role}\"\n  assume_role_policy = {}\n}}\n",
                    tf_id(role),
                    heredoc(&d.body)
                ),
                Attach::RolePolicy { role, policy } => {
                    // A reference, when the role is made here too, orders the two.
                    let created_here = documents.iter().any(|t| {
                        t.account == account && matches!(&t.attach, Attach::Trust { role: r } if r == role)
                    });
                    let role_ref = if created_here {
                        format!("aws_iam_role.{}.name", tf_id(role))
                    } else {
                        format!("\"{role}\"")
                    };
                    format!(
                        "resource \"aws_iam_role_policy\" \"{}_{}\" {{\n{provider}  role   = {role_ref}\n  name   = \"{policy}\"\n  policy = {}\n}}\n",
                        tf_id(role),
                        tf_id(policy),
                        heredoc(&d.body)
                    )
                }
                Attach::ManagedPolicy { policy } => format!(
                    "resource \"aws_iam_policy\" \"{}\" {{\n{provider}  name   = \"{policy}\"\n  policy = {}\n}}\n",
                    tf_id(policy),
                    heredoc(&d.body)
                ),
                Attach::RepositoryPolicy { repositories, .. } => repositories
                    .iter()
                    .map(|r| {
                        format!(
                            "resource \"aws_ecr_repository_policy\" \"{}\" {{\n{provider}  repository = \"{r}\"\n  policy     = {}\n}}\n",
                            tf_id(r),
                            heredoc(&d.body)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            out.push_str(&format!("# {} ({})\n{block}\n", d.purpose, d.name));
        }
    }
    out.trim_end().to_owned() + "\n"
}
