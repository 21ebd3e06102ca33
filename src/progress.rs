//! How a push shows its progress while blobs upload. In a log (the Actions log, a file,
//! a pipe) a line every [`EVERY`] with the running total: no terminal control codes,
//! and a quiet minute would look like a hang. On a terminal, a bar that redraws in
//! place, with the log's lines (a blob pushed, a throttle) printed above it.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a log gets a line.
const EVERY: Duration = Duration::from_secs(10);
/// How often the bar takes the running total.
const REDRAW: Duration = Duration::from_millis(100);

/// The bar being drawn, if any, so that log lines are written above it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// A line every [`EVERY`].
    Lines,
    /// A bar redrawn in place: only when stderr is a terminal, and not in Actions.
    Bar,
}

/// The bytes of a push's blobs sent so far, shared by its uploads: a destination adds a
/// part once the part is sent. Each upload attempt of one blob counts on a [`Sent::attempt`]
/// of it, which can take its bytes back when the blob is sent again from its start.
#[derive(Clone, Default)]
pub struct Sent {
    total: Arc<AtomicU64>,
    /// What this attempt added to `total`.
    mine: Arc<AtomicU64>,
}

impl Sent {
    pub fn add(&self, bytes: usize) {
        self.total.fetch_add(bytes as u64, Ordering::Relaxed);
        self.mine.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A count for one attempt at one blob, adding to the same total.
    pub fn attempt(&self) -> Sent {
        Sent {
            total: self.total.clone(),
            mine: Arc::default(),
        }
    }

    /// Takes back what this attempt added: its bytes will be sent again.
    pub fn take_back(&self) {
        let mine = self.mine.swap(0, Ordering::Relaxed);
        self.total.fetch_sub(mine, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Shows the progress of `sent` towards `total` bytes until dropped.
pub struct Shown {
    task: tokio::task::JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Style {
    pub fn show(self, sent: Sent, total: u64) -> Shown {
        match self {
            Style::Lines => Shown {
                task: tokio::spawn(lines(sent, total)),
                bar: None,
            },
            Style::Bar => {
                let bar = ProgressBar::new(total);
                // The template is a constant; were it refused, the default bar is shown.
                if let Ok(style) = ProgressStyle::with_template(
                    "{bar:40} {binary_bytes}/{binary_total_bytes}  {binary_bytes_per_sec}  {eta} left",
                ) {
                    bar.set_style(style);
                }
                if let Ok(mut shown) = BAR.lock() {
                    *shown = Some(bar.clone());
                }
                let drawn = bar.clone();
                Shown {
                    task: tokio::spawn(async move {
                        let mut interval = tokio::time::interval(REDRAW);
                        loop {
                            interval.tick().await;
                            drawn.set_position(sent.total().min(total));
                        }
                    }),
                    bar: Some(bar),
                }
            }
        }
    }
}

async fn lines(sent: Sent, total: u64) {
    let started = Instant::now();
    let mut interval = tokio::time::interval(EVERY);
    interval.tick().await;
    loop {
        interval.tick().await;
        let done = sent.total().min(total);
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            "{} of {} ({:.0} %) sent, {:.1} MB/s",
            crate::units::human_bytes(done),
            crate::units::human_bytes(total),
            done as f64 * 100.0 / total.max(1) as f64,
            done as f64 / 1e6 / seconds.max(1e-3)
        );
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(bar) = self.bar.take() {
            if let Ok(mut shown) = BAR.lock() {
                *shown = None;
            }
            bar.finish_and_clear();
        }
    }
}

/// The log's writer outside Actions: stderr, above the bar when one is drawn.
pub struct Stderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line
    }
}

pub struct Line;

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = BAR.lock().ok().and_then(|shown| shown.clone());
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write(buf)),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::Sent;

    #[test]
    fn an_attempt_taken_back_leaves_the_total_as_before_it() {
        let sent = Sent::default();
        sent.add(10);
        let attempt = sent.attempt();
        attempt.add(5);
        assert_eq!(sent.total(), 15);
        attempt.take_back();
        assert_eq!(sent.total(), 10);
        let again = sent.attempt();
        again.add(7);
        assert_eq!(sent.total(), 17);
    }
}
