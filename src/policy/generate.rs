//! `policy generate`: the minimal documents for a keyless push, for given accounts,
//! region, repositories and GitHub subject. Every statement names its actions and its
//! resources exactly; the one `*` is `ecr:GetAuthorizationToken`'s, which has no other
//! resource, and it appears only when asked for (`--docker-login`, the puller).

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
    /// An ECR repository the push reads its image from (a promotion).
    pub source: Option<Source>,
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

/// Where a document goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// The trust (assume-role) policy of a role.
    Trust { role: String },
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
    /// The file name under docs/iam/policies.
    pub name: &'static str,
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
    /// tag conflict in an immutable repository names the image the tag holds.
    fn push_actions(&self) -> Vec<&'static str> {
        let mut actions = PUSH_ACTIONS.to_vec();
        actions.push("ecr:BatchGetImage");
        actions
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

    fn push(&self) -> Value {
        let mut statements = vec![json!({
            "Sid": "PushToRepository",
            "Effect": "Allow",
            "Action": self.push_actions(),
            "Resource": one_or_many(self.repository_arns()),
        })];
        if self.create_repository {
            // No tags or encryption settings are sent, so nothing else is needed.
            statements.push(json!({
                "Sid": "CreateRepository",
                "Effect": "Allow",
                "Action": "ecr:CreateRepository",
                "Resource": one_or_many(self.repository_arns()),
            }));
        }
        if let Some(profile) = &self.signing_profile {
            // Managed signing signs as the pusher (ECR user guide, "Managed signing").
            statements.push(json!({
                "Sid": "SignOnPush",
                "Effect": "Allow",
                "Action": "signer:SignPayload",
                "Resource": profile,
            }));
        }
        if let Some(source) = &self.source {
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
        if self.docker_login || self.registry_transport || self.source.is_some() {
            statements.push(authorization_token_statement("RegistryLogin"));
        }
        policy(Value::Array(statements))
    }
}

/// Generates every document the request calls for, in the order they are set up.
pub fn generate(request: &Request) -> Vec<Document> {
    let mut documents = vec![Document {
        name: "aws-github-oidc-trust.json",
        account: request.account.clone(),
        attach: Attach::Trust {
            role: request.role_name.clone(),
        },
        purpose: "lets only the chosen jobs of the GitHub repository assume the CI role with their OIDC token",
        body: request.trust(),
    }];
    let push_role = match (&request.registry_account, &request.publisher_role) {
        (Some(registry), Some(publisher)) => {
            let mut trust_actions = vec!["sts:AssumeRole"];
            let mut assume = json!({
                "Sid": "AssumeFromCiRole",
                "Effect": "Allow",
                "Principal": { "AWS": request.role_arn() },
                "Action": "sts:AssumeRole",
            });
            if let Some(external_id) = &request.external_id {
                assume["Condition"] = json!({ "StringEquals": { "sts:ExternalId": external_id } });
            }
            let mut statements = vec![assume];
            if request.session_tags {
                trust_actions.push("sts:TagSession");
                // Its own statement, as in AWS's session-tag examples: the external id
                // is a condition of the assume, and need not be in TagSession's context.
                statements.push(json!({
                    "Sid": "TagSessionFromCiRole",
                    "Effect": "Allow",
                    "Principal": { "AWS": request.role_arn() },
                    "Action": "sts:TagSession",
                }));
            }
            documents.push(Document {
                name: "aws-ecr-publisher-trust.json",
                account: registry.clone(),
                attach: Attach::Trust {
                    role: publisher.clone(),
                },
                purpose: "lets exactly the CI role assume the publisher role in the registry account",
                body: policy(Value::Array(statements)),
            });
            documents.push(Document {
                name: "aws-ecr-ci-assume-publisher.json",
                account: request.account.clone(),
                attach: Attach::RolePolicy {
                    role: request.role_name.clone(),
                    policy: "assume-ecr-publisher".into(),
                },
                purpose: "lets the CI role assume the publisher role, and nothing else",
                body: policy(json!([{
                    "Sid": "AssumePublisherRole",
                    "Effect": "Allow",
                    "Action": one_or_many(trust_actions),
                    "Resource": request.publisher_arn(publisher),
                }])),
            });
            (registry.clone(), publisher.clone())
        }
        (Some(registry), None) => {
            documents.push(Document {
                name: "aws-ecr-cross-account-repository-policy.json",
                account: registry.clone(),
                attach: Attach::RepositoryPolicy {
                    region: request.region.clone(),
                    repositories: request.repositories.clone(),
                },
                purpose: "lets exactly the CI role push to the repository from its own account",
                body: policy(json!([{
                    "Sid": "PushFromCiRole",
                    "Effect": "Allow",
                    "Principal": { "AWS": request.role_arn() },
                    "Action": request.push_actions(),
                }])),
            });
            (request.account.clone(), request.role_name.clone())
        }
        (None, _) => (request.account.clone(), request.role_name.clone()),
    };
    if let Some(source) = request.source.as_ref().filter(|s| s.account != push_role.0) {
        let pusher = format!(
            "arn:{}:iam::{}:role/{}",
            request.partition(),
            push_role.0,
            push_role.1
        );
        documents.push(Document {
            name: "aws-ecr-source-repository-policy.json",
            account: source.account.clone(),
            attach: Attach::RepositoryPolicy {
                region: source.region.clone(),
                repositories: vec![source.repository.clone()],
            },
            purpose: "lets exactly the pushing role read the repository images are promoted from",
            body: policy(json!([{
                "Sid": "PromoteToRegistryAccount",
                "Effect": "Allow",
                "Principal": { "AWS": pusher },
                "Action": PULL_ACTIONS,
            }])),
        });
    }
    documents.push(Document {
        name: "aws-ecr-ci-push.json",
        account: push_role.0,
        attach: Attach::RolePolicy {
            role: push_role.1,
            policy: "ecr-push".into(),
        },
        purpose: "the push, on the named repositories only",
        body: request.push(),
    });
    let arns = one_or_many(request.repository_arns());
    documents.push(Document {
        name: "aws-ecr-readonly-pull.json",
        account: request.registry_account().to_owned(),
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
    });
    documents.push(Document {
        name: "aws-ecr-scanner.json",
        account: request.registry_account().to_owned(),
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
    });
    documents
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{statements, strings};

    fn request() -> Request {
        Request {
            account: "111111111111".into(),
            region: "us-east-1".into(),
            repositories: vec!["secure-flask".into()],
            github_repo: "ORG/REPO".into(),
            github_ids: None,
            subjects: vec![Subject::Branch("main".into())],
            audience: "sts.amazonaws.com".into(),
            role_name: "ecr-ci-push-role".into(),
            registry_account: None,
            publisher_role: None,
            external_id: None,
            session_tags: false,
            docker_login: false,
            create_repository: false,
            signing_profile: None,
            registry_transport: false,
            source: None,
        }
    }

    #[test]
    fn a_promotion_reads_the_source_as_the_role_that_pushes() {
        let mut r = request();
        r.registry_account = Some("222222222222".into());
        r.publisher_role = Some("publisher".into());
        r.source = Some(Source {
            account: "333333333333".into(),
            region: "eu-west-1".into(),
            repository: "dev/app".into(),
        });
        let documents = generate(&r);
        let source = find(&documents, "aws-ecr-source-repository-policy.json");
        assert_eq!(source.account, "333333333333");
        assert_eq!(
            source.attach,
            Attach::RepositoryPolicy {
                region: "eu-west-1".into(),
                repositories: vec!["dev/app".into()]
            }
        );
        let statement = &statements(&source.body)[0];
        // The chained role pushes, so it is the one the source must let in.
        assert_eq!(
            statement["Principal"]["AWS"],
            "arn:aws:iam::222222222222:role/publisher"
        );
        assert_eq!(
            strings(statement.get("Action")),
            ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
        );
        let push = find(&documents, "aws-ecr-ci-push.json");
        let pull = statements(&push.body)
            .into_iter()
            .find(|s| s["Sid"] == "PullFromSource")
            .expect("the push policy reads the source");
        assert_eq!(
            pull["Resource"],
            "arn:aws:ecr:eu-west-1:333333333333:repository/dev/app"
        );
        assert!(
            statements(&push.body)
                .iter()
                .any(|s| s["Action"] == "ecr:GetAuthorizationToken")
        );

        // A source in the pushing role's own account needs no repository policy.
        r.source = Some(Source {
            account: "222222222222".into(),
            region: "us-east-1".into(),
            repository: "dev/app".into(),
        });
        assert!(
            generate(&r)
                .iter()
                .all(|d| d.name != "aws-ecr-source-repository-policy.json")
        );
    }

    fn find<'a>(documents: &'a [Document], name: &str) -> &'a Document {
        documents.iter().find(|d| d.name == name).expect(name)
    }

    #[test]
    fn default_push_policy_has_no_star_and_exactly_the_push_actions() {
        let documents = generate(&request());
        let push = &find(&documents, "aws-ecr-ci-push.json").body;
        assert_eq!(statements(push).len(), 1);
        let mut expected = PUSH_ACTIONS.to_vec();
        expected.push("ecr:BatchGetImage");
        assert_eq!(strings(statements(push)[0].get("Action")), expected);
        assert_eq!(
            statements(push)[0]["Resource"],
            "arn:aws:ecr:us-east-1:111111111111:repository/secure-flask"
        );
    }

    #[test]
    fn trust_uses_string_like_only_for_a_wildcard_subject() {
        let exact = generate(&request());
        let condition =
            &statements(&find(&exact, "aws-github-oidc-trust.json").body)[0]["Condition"];
        assert_eq!(
            condition["StringEquals"]["token.actions.githubusercontent.com:sub"],
            "repo:ORG/REPO:ref:refs/heads/main"
        );
        assert!(condition.get("StringLike").is_none());
        let mut tags = request();
        tags.subjects = vec![Subject::Tag("v*".into())];
        let wild = generate(&tags);
        let condition =
            &statements(&find(&wild, "aws-github-oidc-trust.json").body)[0]["Condition"];
        assert_eq!(
            condition["StringLike"]["token.actions.githubusercontent.com:sub"],
            "repo:ORG/REPO:ref:refs/tags/v*"
        );
        assert_eq!(
            condition["StringEquals"]["token.actions.githubusercontent.com:aud"],
            "sts.amazonaws.com"
        );
        assert!(
            condition["StringEquals"]
                .get("token.actions.githubusercontent.com:sub")
                .is_none()
        );
    }

    #[test]
    fn chaining_puts_the_push_on_the_publisher_in_the_registry_account() {
        let mut r = request();
        r.registry_account = Some("222222222222".into());
        r.publisher_role = Some("ecr-publisher".into());
        r.external_id = Some("EXTERNAL_ID".into());
        r.session_tags = true;
        let documents = generate(&r);
        let push = find(&documents, "aws-ecr-ci-push.json");
        assert_eq!(push.account, "222222222222");
        assert_eq!(
            push.attach,
            Attach::RolePolicy {
                role: "ecr-publisher".into(),
                policy: "ecr-push".into()
            }
        );
        let trust = statements(&find(&documents, "aws-ecr-publisher-trust.json").body);
        assert_eq!(
            trust[0]["Principal"]["AWS"],
            "arn:aws:iam::111111111111:role/ecr-ci-push-role"
        );
        assert_eq!(strings(trust[0].get("Action")), ["sts:AssumeRole"]);
        assert_eq!(
            trust[0]["Condition"]["StringEquals"]["sts:ExternalId"],
            "EXTERNAL_ID"
        );
        // sts:TagSession in a statement of its own, for the same principal.
        assert_eq!(trust[1]["Principal"], trust[0]["Principal"]);
        assert_eq!(strings(trust[1].get("Action")), ["sts:TagSession"]);
        let assume = &statements(&find(&documents, "aws-ecr-ci-assume-publisher.json").body)[0];
        assert_eq!(
            assume["Resource"],
            "arn:aws:iam::222222222222:role/ecr-publisher"
        );
        assert!(
            documents
                .iter()
                .all(|d| d.name != "aws-ecr-cross-account-repository-policy.json")
        );
    }

    #[test]
    fn direct_cross_account_push_gets_a_repository_policy_for_the_exact_role() {
        let mut r = request();
        r.registry_account = Some("222222222222".into());
        let documents = generate(&r);
        let repo =
            &statements(&find(&documents, "aws-ecr-cross-account-repository-policy.json").body)[0];
        assert_eq!(
            repo["Principal"]["AWS"],
            "arn:aws:iam::111111111111:role/ecr-ci-push-role"
        );
        assert!(
            repo.get("Resource").is_none(),
            "repository policies have no Resource"
        );
        let push = find(&documents, "aws-ecr-ci-push.json");
        assert_eq!(push.account, "111111111111");
        assert_eq!(
            statements(&push.body)[0]["Resource"],
            "arn:aws:ecr:us-east-1:222222222222:repository/secure-flask"
        );
    }

    /// Property: whatever the input, no statement has a wildcard action, and the only
    /// `*` resource is GetAuthorizationToken's.
    #[test]
    fn no_generated_statement_is_wider_than_needed() {
        let mut seed: u64 = 0x5eed;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let regions = [
            "us-east-1",
            "eu-west-3",
            "cn-north-1",
            "us-gov-west-1",
            "ap-south-2",
        ];
        for _ in 0..500 {
            let mut r = request();
            r.region = regions[next(regions.len() as u64) as usize].into();
            r.repositories = (0..=next(3))
                .map(|i| format!("team{i}/app-{}", next(100)))
                .collect();
            r.subjects = (0..=next(2))
                .map(|_| match next(4) {
                    0 => Subject::Branch(format!("release/{}", next(9))),
                    1 => Subject::Tag("v*".into()),
                    2 => Subject::Environment("prod".into()),
                    _ => Subject::PullRequest,
                })
                .collect();
            r.github_ids = (next(2) == 1).then(|| ("123456".into(), "456789".into()));
            r.create_repository = next(2) == 1;
            if next(2) == 1 {
                r.registry_account = Some("222222222222".into());
                if next(2) == 1 {
                    r.publisher_role = Some("publisher".into());
                    r.session_tags = next(2) == 1;
                    r.external_id = (next(2) == 1).then(|| "x-1".into());
                }
            }
            r.docker_login = next(2) == 1;
            r.registry_transport = next(2) == 1;
            r.source = (next(2) == 1).then(|| Source {
                account: "333333333333".into(),
                region: r.region.clone(),
                repository: format!("dev/app-{}", next(9)),
            });
            for document in generate(&r) {
                for statement in statements(&document.body) {
                    let actions = strings(statement.get("Action"));
                    assert!(!actions.is_empty() && statement.get("NotAction").is_none());
                    for action in &actions {
                        assert!(!action.contains('*'), "{}: {action}", document.name);
                    }
                    let resources = strings(statement.get("Resource"));
                    if resources.iter().any(|r| r.contains('*')) {
                        assert_eq!(resources, ["*"], "{}", document.name);
                        assert_eq!(actions, ["ecr:GetAuthorizationToken"], "{}", document.name);
                    }
                    for resource in &resources {
                        assert!(
                            resource == "*"
                                || resource.starts_with(&format!(
                                    "arn:{}:",
                                    crate::ecr_host::partition(&r.region)
                                )),
                            "{resource}"
                        );
                    }
                    if let Some(principal) = statement.get("Principal") {
                        assert_ne!(principal, "*");
                        let text = principal.to_string();
                        assert!(!text.contains(":root"), "{text}");
                    }
                }
                if document.name == "aws-ecr-ci-push.json"
                    && !r.create_repository
                    && !r.docker_login
                    && !r.registry_transport
                    && r.source.is_none()
                {
                    assert_eq!(
                        statements(&document.body).len(),
                        1,
                        "no * statement by default"
                    );
                }
            }
        }
    }
}
