//! The integration tests, as one binary: the crate, the support code and the test
//! harness are compiled and linked once, not once per file (ripgrep's layout). Each
//! module proves one area end to end, mostly by running the built binary against the
//! local stack `support` starts; every server, folder and variable a test uses is its
//! own, so the modules share a process and nothing else.

mod support;

mod action_yml;
mod architecture;
mod compress;
mod container;
mod daemon;
mod faults;
mod fuzz_regressions;
mod hostile;
mod index;
mod policy;
mod push;
mod quota;
mod races;
mod referrers;
mod registry;
mod registry_token;
mod scan;
mod secrets;
mod sources;
mod targets;
