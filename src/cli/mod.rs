//! The command line and the action's inputs, which are the same thing: every action
//! input is a long flag of the same name, and in action mode (`GITHUB_ACTIONS=true`, no
//! arguments) the `INPUT_*` variables the runner sets are turned into those flags. One
//! parser and one validation then serve both, and the names cannot drift apart.
//!
//! Everything that can be checked offline is checked here, before any network call, and
//! each message names the input that is wrong. This is the top of the crate: nothing
//! else imports it (tests/it/architecture.rs checks), so the clap types stay here and
//! what the flow needs is handed down as plain values.

use clap::{Parser, Subcommand};

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

mod action;
mod policy;
mod push;
mod run;
mod values;

pub use action::{args, for_actions, from_inputs};
pub use policy::PolicyCommand;
pub use push::PushArgs;
pub use run::main;

pub(crate) const PUSH_EXAMPLES: &str = concat!(
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
