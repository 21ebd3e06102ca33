//! ecr-push as a library: the modules the `ecr-push` binary is made of (src/main.rs
//! only calls `cli::main`), public so the fuzz targets under fuzz/ and the regression tests of
//! their findings can call the parsers directly. Not a stable API.

pub mod actions;
pub mod auth;
pub mod calls;
pub mod cli;
pub mod digest;
pub mod docker_config;
pub mod ecr_host;
pub mod flow;
pub mod fuzzing;
pub mod http;
pub mod image;
pub mod names;
pub mod policy;
pub mod progress;
pub mod push;
pub mod registry;
pub mod report;
pub mod scan;
pub mod sdk;
pub mod sub_claim;
pub mod targets;
pub mod units;
