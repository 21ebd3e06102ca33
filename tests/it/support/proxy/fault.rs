//! What the recorder does to a call instead of relaying it: the kinds of fault, the
//! answer AWS would give for each, and the seeded schedule that picks them.

use super::STS_ACTIONS;

/// A kind of fault the recorder injects on a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// HTTP 400 ThrottlingException (ECR) or Throttling (STS).
    Throttle,
    /// HTTP 500.
    Internal,
    /// HTTP 503.
    Unavailable,
    /// The connection closed before the request reached moto.
    ResetBefore,
    /// The request reached moto; the connection closed before its answer.
    ResetAfter,
    /// No answer at all: the connection is held open until the client gives up.
    Stall,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Throttle,
        Kind::Internal,
        Kind::Unavailable,
        Kind::ResetBefore,
        Kind::ResetAfter,
        Kind::Stall,
    ];
}

/// A seeded schedule: each call of one of `actions` (all when empty) fails with
/// probability `percent`, with a kind drawn from `kinds`.
pub(super) struct Chaos {
    state: u64,
    percent: u64,
    actions: Vec<String>,
    kinds: Vec<Kind>,
    /// How many faults are left to inject; `None`: no limit.
    remaining: Option<u32>,
}

impl Chaos {
    /// Each call of one of `actions` (every call when empty) fails with probability
    /// `percent` %, with a kind drawn from `kinds`, reproducibly from `seed`.
    pub(super) fn seeded(seed: u64, percent: u64, actions: &[&str], kinds: &[Kind]) -> Self {
        Self {
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            percent,
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            kinds: kinds.to_vec(),
            remaining: None,
        }
    }

    /// The next `times` calls of `action` fail with `kind`.
    pub(super) fn next_calls(action: &str, kind: Kind, times: u32) -> Self {
        Self {
            state: 1,
            percent: 100,
            actions: vec![action.to_owned()],
            kinds: vec![kind],
            remaining: Some(times),
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: reproducible from the seed, no crate needed.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn draw(&mut self, action: &str) -> Option<Kind> {
        if !self.actions.is_empty() && !self.actions.iter().any(|a| a == action) {
            return None;
        }
        if self.remaining == Some(0) || self.next() % 100 >= self.percent {
            return None;
        }
        if let Some(left) = self.remaining.as_mut() {
            *left -= 1;
        }
        let pick = (self.next() % self.kinds.len() as u64) as usize;
        Some(self.kinds[pick])
    }
}

/// What AWS answers for `kind` to `action`, or the connection-level fault.
pub(super) fn fault_for(kind: Kind, action: &str) -> Fault {
    let sts = STS_ACTIONS.contains(&action);
    let answer = |status: &'static str, json_code: &str, xml_code: &str, message: &str| {
        if sts {
            Fault::Answer {
                status,
                content_type: "text/xml",
                body: format!(
                    "<ErrorResponse><Error><Type>Receiver</Type><Code>{xml_code}</Code><Message>{message}</Message></Error><RequestId>chaos</RequestId></ErrorResponse>"
                ),
            }
        } else {
            Fault::Answer {
                status,
                content_type: "application/x-amz-json-1.1",
                body: serde_json::json!({"__type": json_code, "message": message}).to_string(),
            }
        }
    };
    match kind {
        Kind::Throttle => answer(
            "400 Bad Request",
            "ThrottlingException",
            "Throttling",
            "Rate exceeded",
        ),
        Kind::Internal => answer(
            "500 Internal Server Error",
            "ServerException",
            "InternalFailure",
            "We encountered an internal error. Please try again.",
        ),
        Kind::Unavailable => answer(
            "503 Service Unavailable",
            "ServiceUnavailableException",
            "ServiceUnavailable",
            "Service is unavailable. Please try again.",
        ),
        Kind::ResetBefore => Fault::Reset,
        Kind::ResetAfter => Fault::LoseAnswer,
        Kind::Stall => Fault::Stall,
    }
}

/// What the recorder does to the next call of one action.
#[derive(Clone)]
pub(super) enum Fault {
    /// Forward it, then drop moto's answer.
    LoseAnswer,
    /// Close the connection without forwarding it.
    Reset,
    /// Neither forward nor answer; hold the connection until the client closes it.
    Stall,
    /// Answer it without moto: an HTTP status and a body, as AWS would.
    Answer {
        status: &'static str,
        content_type: &'static str,
        body: String,
    },
    /// Answer it 200 without moto, with a `Link` to the `next` page, as a registry
    /// answers one page of a list.
    Page {
        content_type: &'static str,
        body: String,
        next: String,
    },
}
