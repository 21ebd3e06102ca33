//! The local stack the integration tests run against, each part real, on a free
//! loopback port (or in a temporary folder), started by the test that needs it and
//! stopped on drop, so that tests running at once in this one process share nothing.
//! One module per thing started:
//! - `moto`: moto, as STS and ECR;
//! - `proxy`: the recorder between the tool and moto, which keeps what the tool sent
//!   and injects faults;
//! - `quota`: one account's ECR request quotas, shared by the processes pushing
//!   through it (`scripts/lib/quota_sim.py`);
//! - `oidc`: the GitHub Actions ID-token endpoint;
//! - `action`: the binary under test, run as the Actions runner runs it;
//! - `images` and `docker`: test images, as OCI layouts and as `docker save` archives;
//! - `registry`, `token`, `tls`: distribution registries (plain, with a token service,
//!   over TLS) and the CA they use;
//! - `daemon` and `container`: a Docker Engine API (podman), and the action's image
//!   run in it;
//! - `http`: the hand-written HTTP the servers here speak, and small servers of it.

mod action;
mod container;
mod daemon;
mod docker;
mod http;
mod images;
mod moto;
mod oidc;
mod proxy;
mod quota;
mod registry;
mod tls;
mod token;

pub use action::*;
pub use container::*;
pub use daemon::*;
pub use docker::*;
pub use http::*;
pub use images::*;
pub use moto::*;
pub use oidc::*;
pub use proxy::*;
pub use quota::*;
pub use registry::*;
pub use tls::*;
pub use token::*;

use std::net::TcpListener;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

pub const REGION: &str = "us-east-1";
pub const CI_ACCOUNT: &str = "111111111111";
pub const REGISTRY_ACCOUNT: &str = "222222222222";
pub const PUSH_ROLE: &str = "arn:aws:iam::111111111111:role/ecr-ci-push-role";
pub const PUBLISHER_ROLE: &str = "arn:aws:iam::222222222222:role/ecr-publisher";
/// A disaster-recovery account in another region, reached through a role of its own:
/// the third of a release's `targets`.
pub const DR_ACCOUNT: &str = "333333333333";
pub const DR_REGION: &str = "us-west-2";
pub const DR_ROLE: &str = "arn:aws:iam::333333333333:role/ecr-publisher-dr";
pub const REQUEST_TOKEN: &str = "ghs_requestTokenForTheIdTokenEndpoint0001";
/// The ids github.com gives octo-org and octo-repo (GITHUB_REPOSITORY_OWNER_ID,
/// GITHUB_REPOSITORY_ID; the `repository_owner_id` and `repository_id` claims).
pub const OWNER_ID: &str = "190583734";
pub const REPO_ID: &str = "873419205";
/// What a repository created since 2026-07-15 gets: the immutable subject.
pub const SUB: &str = "repo:octo-org@190583734/octo-repo@873419205:ref:refs/heads/main";
/// What an older repository that has not opted in still gets (and GitHub Enterprise
/// Server): the classic subject.
pub const SUB_CLASSIC: &str = "repo:octo-org/octo-repo:ref:refs/heads/main";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// moto, the recorder in front of it, and the token endpoint: one per test.
pub struct Stack {
    pub moto: Moto,
    pub recorder: Recorder,
    pub oidc: OidcEndpoint,
}

impl Stack {
    pub fn start() -> Self {
        let moto = Moto::start();
        let recorder = Recorder::start(moto.port);
        Self {
            recorder,
            moto,
            oidc: OidcEndpoint::start(),
        }
    }

    pub fn action(&self) -> Action {
        Action::new(&self.recorder, &self.oidc)
    }
}
