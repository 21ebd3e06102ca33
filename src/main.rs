//! ecr-push: keyless, daemonless image pushes to Amazon ECR.
//!
//! The flow reads top to bottom: inputs → source image (local, so a bad image fails
//! before any network call) → credentials → push → report. Each step is a module that
//! knows nothing of the ones after it.

use ecr_push::{actions, auth, docker_config, image, inputs, policy, push, report};

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use ecr_push::actions::Runtime;
use ecr_push::image::Image;
use ecr_push::inputs::{Cli, Command};

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Inputs(#[from] inputs::Error),
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Auth(#[from] auth::Error),
    #[error(transparent)]
    Push(#[from] push::Error),
    #[error(transparent)]
    DockerConfig(#[from] docker_config::Error),
    #[error(transparent)]
    Actions(#[from] actions::Error),
    #[error("could not start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(
        "timeout-minutes: the push did not finish within {0} minutes and was stopped; no tag was moved to an incomplete image. Raise timeout-minutes for a slow link or a large image"
    )]
    Deadline(f64),
}

fn main() -> ExitCode {
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
    let cli = match Cli::try_parse_from(inputs::args(env)) {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) if runtime.in_actions() => {
            let as_inputs = inputs::from_inputs(std::env::args_os().len(), &env);
            runtime.error(&inputs::for_actions(&err.render().to_string(), as_inputs));
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
            return match policy::run(command) {
                Ok(code) => code,
                Err(err) => {
                    runtime.error(&err.to_string());
                    ExitCode::from(2)
                }
            };
        }
    };
    init_logging(args.verbose, &runtime);
    let result = args.validate().map_err(Error::from).and_then(|push| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?
            .block_on(async {
                let deadline = push.deadline;
                tokio::time::timeout(deadline, run(push, &runtime, &env))
                    .await
                    .unwrap_or(Err(Error::Deadline(deadline.as_secs_f64() / 60.0)))
            })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            runtime.error(&err.to_string());
            match err {
                Error::Inputs(_) => ExitCode::from(2),
                Error::Image(e) if e.is_input() => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
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

async fn run(
    push: inputs::Push,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), Error> {
    // A registry's login (source or destination) is masked before it is used.
    let docker_login = |host: &str| {
        docker_config::lookup(host, env).inspect(|login| runtime.mask(&login.password))
    };
    // A `docker://` source's login is found first, once (a credential helper is not run
    // twice). On an ECR host with no Docker login of its own it is read with the step's
    // AWS credentials (a promotion by digest from a dev account's registry), so those
    // come first; the same session then pushes.
    let mut session = None;
    let mut source_login = None;
    if let Some(host) = image::registry_host(&push.image) {
        let mut login = docker_login(&host);
        if login.is_none()
            && let Some(ecr_host) = ecr_push::ecr_host::EcrHost::parse(&host)
        {
            let authenticated = credentials(&push, runtime, env).await?;
            login = Some(
                push::Ecr::source_login(
                    &authenticated,
                    ecr_host,
                    push::ecr_endpoint_overridden(env),
                    |secret| runtime.mask(secret),
                )
                .await?,
            );
            tracing::info!("{host}: read with a login from GetAuthorizationToken");
            session = Some(authenticated);
        }
        source_login = Some((host, login));
    }
    let login = |host: &str| match &source_login {
        Some((source, login)) if source == host => login.clone(),
        _ => docker_login(host),
    };
    let image = Image::open(
        &push.image,
        &push.platforms,
        env("DOCKER_HOST").as_deref(),
        login,
        push.compression,
    )
    .await?;
    let tags = match push.tags.clone() {
        Some(tags) => tags,
        None => vec![inputs::default_tag(image.tag.as_deref())?],
    };
    let mut rewritten_for = Vec::new();
    if !push.platforms.is_empty() {
        let platforms: Vec<String> = push.platforms.iter().map(ToString::to_string).collect();
        rewritten_for.push(format!("platforms {}", platforms.join(", ")));
    }
    if push.compression != image::Compression::Keep {
        rewritten_for.push("compression".to_owned());
    }
    if let Some(original) = &image.original_digest {
        tracing::info!(
            "manifest {original} rewritten for {}: {}",
            rewritten_for.join(" and "),
            image.manifest.digest
        );
    }
    tracing::info!(
        "image {} ({}{}, {} blobs, {})",
        image.manifest.digest,
        image.manifest.media_type,
        match image.children.len() {
            0 => String::new(),
            n => format!(" of {n} manifests"),
        },
        image.blobs().len(),
        report::human_bytes(push::total_size(image.blobs()))
    );

    let (registry, report) = match &push.destination {
        inputs::Destination::Registry(host) => {
            // No AWS at all: the registry's login is the Docker CLI's, masked first, as is
            // each token its realm hands out.
            let login = login(host).map(|login| (login.username, login.password));
            // For a registry that refuses one streamed PATCH per blob.
            let chunked = env("ECR_PUSH_CHUNKED").as_deref() == Some("true");
            let masks = runtime.clone();
            let destination =
                push::Registry::new(host, &push.repository, login, chunked, move |secret| {
                    masks.mask(secret)
                })?;
            let _group = runtime.group(&format!("Push to {host}/{}", push.repository));
            let report = push::push(
                &destination,
                &image,
                &tags,
                push.concurrency,
                runtime.progress(),
            )
            .await?;
            (host.clone(), report)
        }
        inputs::Destination::Ecr { registry } => {
            let session = match session {
                Some(session) => session,
                None => credentials(&push, runtime, env).await?,
            };
            push_to_ecr(&push, session, *registry, &image, &tags, runtime, env).await?
        }
    };

    let pushed = report::Pushed {
        registry: &registry,
        repository: &push.repository,
        digest: &image.manifest.digest,
        original_digest: image.original_digest.as_ref(),
        rewritten_for: &rewritten_for.join(" and "),
        tags: &tags,
        report: &report,
    };
    let outputs = pushed.outputs();
    let outputs: Vec<(&str, &str)> = outputs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    runtime.set_outputs(&outputs)?;
    runtime.append_summary(&pushed.summary())?;
    tracing::info!("{}", pushed.line());
    if !runtime.in_actions() {
        // The one line on stdout, for `uri=$(ecr-push push …)`.
        println!("{}", pushed.image_uri());
    }
    Ok(())
}

/// Credentials, then the push to ECR through its API or, with `via_registry`, its
/// registry endpoint; the registry host and what the push did.
async fn push_to_ecr(
    push: &inputs::Push,
    session: auth::Session,
    via_registry: bool,
    image: &Image,
    tags: &[String],
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(String, report::Report), Error> {
    let registry_id = push.registry_id.clone().unwrap_or(session.account);
    // The host as the registry input named it (FIPS, dual-stack), else the standard one.
    let host = match &push.ecr_host {
        Some(host) => host.clone(),
        None => ecr_push::ecr_host::EcrHost::standard(&registry_id, &session.region),
    };
    let ecr = push::Ecr::new(
        &session.config,
        host,
        push::ecr_endpoint_overridden(env),
        push.repository.clone(),
        push.create_repository,
        session.principal,
        push.concurrency,
    );
    let registry = ecr.registry_host();
    // The login is fetched before anything is pushed, so a role without
    // ecr:GetAuthorizationToken fails before a tag moves; it is stored after.
    let login = if push.docker_login || via_registry {
        Some(ecr.login(|secret| runtime.mask(secret)).await?)
    } else {
        None
    };
    let report = {
        let _group = runtime.group(&format!("Push to {registry}/{}", push.repository));
        match &login {
            Some(auth) if via_registry => {
                let password = push::Ecr::password(auth).unwrap_or_default();
                let masks = runtime.clone();
                let destination = push::Registry::new(
                    &registry,
                    &push.repository,
                    Some(("AWS".to_owned(), password)),
                    true,
                    move |secret| masks.mask(secret),
                )?;
                push::push(
                    &destination,
                    image,
                    tags,
                    push.concurrency,
                    runtime.progress(),
                )
                .await?
            }
            _ => push::push(&ecr, image, tags, push.concurrency, runtime.progress()).await?,
        }
    };
    if let Some(auth) = login.filter(|_| push.docker_login) {
        let stored = docker_config::store(&registry, &auth, env)?;
        tracing::info!(
            "docker login for {registry} stored in {}",
            stored.path.display()
        );
        if let Some(helper) = stored.shadowed_by {
            tracing::warn!(
                "{} names the credential helper `{helper}`, which docker asks before `auths`; remove it for this login to be used",
                stored.path.display()
            );
        }
    }
    Ok((registry, report))
}

/// The step's AWS credentials: the web identity and role chain, or the default chain.
async fn credentials(
    push: &inputs::Push,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<auth::Session, Error> {
    let session = {
        let _group = runtime.group("Credentials");
        auth::authenticate(&push.auth, push.region.as_deref(), runtime, env).await?
    };
    tracing::info!("credentials for {}", session.principal);
    Ok(session)
}

/// Short lines in the log; `--verbose` adds each API call and part. In Actions the log
/// goes to stdout with the workflow commands, so groups and lines stay in order.
fn init_logging(verbose: bool, runtime: &Runtime) {
    let filter = if verbose {
        "warn,ecr_push=debug"
    } else {
        "warn,ecr_push=info"
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .without_time()
        .with_target(false)
        .with_level(verbose);
    if runtime.in_actions() {
        builder.with_ansi(false).with_writer(std::io::stdout).init();
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(ecr_push::progress::Stderr)
            .init();
    }
}
