//! One account's ECR request quotas, shared by every process pushing through it:
//! `scripts/lib/quota_sim.py` (also used by `scripts/bench quota`) in front of an
//! upstream (the recorder, and moto behind it). Each ECR action has a token bucket at
//! ECR's published rate times `scale`; a call beyond it gets ECR's ThrottlingException.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::root;

pub struct Quota {
    child: Child,
    pub port: u16,
}

/// What the simulator counted for one action.
#[derive(Debug, Default)]
pub struct Counted {
    /// Calls a second the bucket refills at.
    pub quota: f64,
    pub admitted: usize,
    pub refused: usize,
    /// When each admitted call came, in seconds since the simulator started.
    pub times: Vec<f64>,
}

impl Quota {
    /// In front of `upstream`, with every quota at `scale` times ECR's.
    pub fn start(upstream: u16, scale: f64) -> Self {
        let python = root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/test, which makes .venv",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(root().join("scripts/lib/quota_sim.py"))
            .args(["--upstream", &upstream.to_string()])
            .args(["--scale", &scale.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("quota_sim.py starts");
        // It binds a port of its own and says which once it listens: no race for a
        // port freed by someone else.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("quota_sim.py says where it listens");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("quota_sim.py said {line:?}"));
        Self { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What it counted for `action` so far.
    pub fn counted(&self, action: &str) -> Counted {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
            .write_all(b"GET /__quota__ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .expect("ask");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        let body = answer.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        let report: serde_json::Value = serde_json::from_str(body).expect("JSON counts");
        let counts = &report["actions"][action];
        Counted {
            quota: counts["quota"].as_f64().unwrap_or_default(),
            admitted: counts["admitted"].as_u64().unwrap_or_default() as usize,
            refused: counts["refused"].as_u64().unwrap_or_default() as usize,
            times: counts["times"]
                .as_array()
                .map(|t| t.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default(),
        }
    }
}

impl Drop for Quota {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
