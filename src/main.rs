//! ecr-push: keyless, daemonless image pushes to Amazon ECR. The command line and the
//! flow live in the library (`cli`, `flow`); this is only the entry point.

fn main() -> std::process::ExitCode {
    ecr_push::cli::main()
}
