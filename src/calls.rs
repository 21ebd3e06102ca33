//! Requests made, counted by API action: what a push cost against the quotas of the
//! registry or of ECR's API. A leaf: the ECR destination counts through an SDK
//! interceptor, the registry client per attempt.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default)]
pub struct Calls(Arc<Mutex<BTreeMap<String, u64>>>);

impl Calls {
    pub fn count(&self, action: &str) {
        if let Ok(mut calls) = self.0.lock() {
            *calls.entry(action.to_owned()).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.0
            .lock()
            .map(|calls| calls.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }
}
