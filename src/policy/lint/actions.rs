//! The actions the rules grade a statement by, from the service authorization
//! reference's access levels: those that change a registry (with sts:AssumeRole, which
//! hands over whatever the role may do), those that read one, and what replication
//! needs; and how a message names a list of them.

/// ECR and ECR Public actions that change a registry (the service authorization
/// reference's Write, Tagging and Permissions management levels), but for the scans and
/// lifecycle previews, which change no image, and BatchImportUpstreamImage, with which a
/// pull fills a pull-through cache from its configured upstream (AWS's own PullOnly
/// policy grants it on `*`): it brings in no content of the caller's.
pub(super) const WRITE: [&str; 44] = [
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchDeleteImage",
    "ecr:CreateRepository",
    "ecr:DeleteRepository",
    "ecr:SetRepositoryPolicy",
    "ecr:DeleteRepositoryPolicy",
    "ecr:PutImageTagMutability",
    "ecr:PutImageScanningConfiguration",
    "ecr:PutLifecyclePolicy",
    "ecr:DeleteLifecyclePolicy",
    "ecr:TagResource",
    "ecr:UntagResource",
    "ecr:ReplicateImage",
    "ecr:PutRegistryPolicy",
    "ecr:DeleteRegistryPolicy",
    "ecr:PutReplicationConfiguration",
    "ecr:PutRegistryScanningConfiguration",
    "ecr:CreatePullThroughCacheRule",
    "ecr:UpdatePullThroughCacheRule",
    "ecr:DeletePullThroughCacheRule",
    "ecr:CreateRepositoryCreationTemplate",
    "ecr:UpdateRepositoryCreationTemplate",
    "ecr:DeleteRepositoryCreationTemplate",
    "ecr:PutAccountSetting",
    "ecr:PutSigningConfiguration",
    "ecr:DeleteSigningConfiguration",
    "ecr:UpdateImageStorageClass",
    "ecr-public:InitiateLayerUpload",
    "ecr-public:UploadLayerPart",
    "ecr-public:CompleteLayerUpload",
    "ecr-public:PutImage",
    "ecr-public:BatchDeleteImage",
    "ecr-public:CreateRepository",
    "ecr-public:DeleteRepository",
    "ecr-public:SetRepositoryPolicy",
    "ecr-public:DeleteRepositoryPolicy",
    "ecr-public:PutRepositoryCatalogData",
    "ecr-public:PutRegistryCatalogData",
    "ecr-public:TagResource",
    "ecr-public:UntagResource",
    "sts:AssumeRole",
];

/// ECR and ECR Public actions that read a repository.
pub(super) const READ: [&str; 16] = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:DescribeImages",
    "ecr:DescribeRepositories",
    "ecr:ListImages",
    "ecr:DescribeImageScanFindings",
    "ecr:GetRepositoryPolicy",
    "ecr:GetLifecyclePolicy",
    "ecr:ListTagsForResource",
    "ecr:ListImageReferrers",
    "ecr:DescribeImageReplicationStatus",
    "ecr-public:BatchCheckLayerAvailability",
    "ecr-public:DescribeImages",
    "ecr-public:DescribeImageTags",
    "ecr-public:DescribeRepositories",
];

/// What a registry policy grants a source account for replication: there the account
/// itself is the principal ECR requires, and the resource covers repositories to come.
pub(super) const REPLICATION: [&str; 2] = ["ecr:ReplicateImage", "ecr:CreateRepository"];

/// Up to four actions by name, then how many more.
pub(super) fn summary(actions: &[&str]) -> String {
    match actions.len() {
        0 => "nothing".into(),
        n if n <= 4 => actions.join(", "),
        n => format!("{} and {} more", actions[..3].join(", "), n - 3),
    }
}
