//! The binary's front: the panic hook, the parse (flags or `INPUT_*`), the log, and
//! the dispatch to the push flow or the policy commands, each ending in an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser as _;

use super::{Cli, Command};
use crate::actions::Runtime;
use crate::flow;

pub fn main() -> ExitCode {
    return_large_buffers_to_the_system();
    let runtime = Runtime::detect();
    let in_actions = runtime.in_actions();
    std::panic::set_hook(Box::new(move |info| {
        let message = format!("internal error: {info}; please report it");
        if in_actions {
            println!("::error title=ecr-push::{}", message.replace('\n', " "));
        } else {
            eprintln!("error: {message}");
        }
    }));
    let env = |name: &str| std::env::var(name).ok();
    let cli = match Cli::try_parse_from(super::args(env)) {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) if runtime.in_actions() => {
            let as_inputs = super::from_inputs(std::env::args_os().len(), &env);
            runtime.error(&super::for_actions(&err.render().to_string(), as_inputs));
            return ExitCode::from(2);
        }
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(2);
        }
    };
    let args = match cli.command {
        Command::Push(args) => args,
        Command::Policy(command) => {
            init_logging(false, &runtime);
            return match super::policy::run(command) {
                Ok(code) => code,
                Err(err) => {
                    runtime.error(&err.to_string());
                    ExitCode::from(2)
                }
            };
        }
    };
    init_logging(args.verbose, &runtime);
    let result = args
        .validate()
        .map_err(flow::Error::from)
        .and_then(|push| flow::push(push, &runtime, &env));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            runtime.error(&err.to_string());
            err.exit_code()
        }
    }
}

/// Part buffers (10 MiB parts of a registry upload) are allocated and freed by many
/// threads. By default glibc raises its mmap threshold to the largest block freed, after
/// which such buffers stay in per-thread arenas: peak memory grew with the threads that
/// had touched a part (73 to 106 MiB for one 1 GiB layer after a daemon export, against
/// 62 MiB from an archive). A fixed 1 MiB threshold maps every large buffer and unmaps it
/// when freed, and memory stays at what is in flight. That costs a page fault per 4 KiB
/// mapped; a 32 MiB threshold, which reuses heap memory instead, saved a fifth of the CPU
/// but held 210 to 250 MiB at concurrency 4 against 131 MiB, so memory won. ECR's part
/// bodies, the most bytes mapped per byte pushed, avoid the faults by being reused
/// (`push/ecr/part_body.rs`).
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any other
    // thread exists. A failure (0) leaves the default, which only keeps more memory.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// In Actions, a warning is a workflow annotation, so the run's page shows it.
struct Annotated<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Annotated<F>
where
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if *event.metadata().level() == tracing::Level::WARN {
            write!(writer, "::warning title=ecr-push::")?;
        }
        self.0.format_event(context, writer, event)
    }
}

/// Short lines in the log; `--verbose` adds each API call and part. In Actions the log
/// goes to stdout with the workflow commands, so groups and lines stay in order.
fn init_logging(verbose: bool, runtime: &Runtime) {
    let filter = if verbose {
        "warn,ecr_push=debug"
    } else {
        "warn,ecr_push=info"
    };
    let format = tracing_subscriber::fmt::format()
        .without_time()
        .with_target(false)
        .with_level(verbose);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .without_time()
        .with_target(false)
        .with_level(verbose);
    if runtime.in_actions() {
        builder
            .with_ansi(false)
            .event_format(Annotated(format.with_ansi(false)))
            .with_writer(std::io::stdout)
            .init();
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(crate::progress::Stderr)
            .init();
    }
}
