//! One function per subcommand, each returning the process exit code. The
//! steps that talk to the server run under `Signals::wait_during`, so a stop
//! signal aborts them at once.

use std::io::Write;

use argh::FromArgs;

use crate::api::{Client, ListQuery};
use crate::cli::{self, Subcommand, TopLevel};
use crate::config::{self, Connection, Credentials, Environment, FetchOptions, RunMode, Secret};
use crate::error::{Error, Kind, Result};
use crate::secrets::{merge_listing, SecretSet};
use crate::signals::Signals;
use crate::{env, log, memory, spawn, supervise};
use crate::{debug, info, warn};

/// Parses the arguments and runs the chosen subcommand.
pub fn dispatch(arguments: &[String], signals: &Signals) -> u8 {
    let normalized = match cli::normalize_args(arguments.get(1..).unwrap_or_default()) {
        Ok(normalized) => normalized,
        Err(problem) => {
            crate::error!("{problem}; run infisical-init --help for usage");
            return 64;
        }
    };
    let words: Vec<&str> = normalized.iter().map(String::as_str).collect();
    let top = match TopLevel::from_args(&["infisical-init"], &words) {
        Ok(top) => top,
        Err(early) => return print_early_exit(early),
    };
    if top.version {
        println!("infisical-init {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let Some(command) = top.command else {
        crate::error!("missing subcommand: use infisical-init run -- COMMAND, or --help");
        return 64;
    };
    let environment = Environment::from_process();
    let result = match command {
        Subcommand::Run(args) => run(&args, environment, signals),
        Subcommand::Login(args) => login(&args, environment, signals),
        Subcommand::Revoke(args) => revoke(&args, environment, signals),
        Subcommand::Get(args) => crate::output::get(&args, environment, signals),
        Subcommand::Export(args) => crate::output::export(&args, environment, signals),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            if !matches!(error.kind, Kind::Aborted(_)) {
                crate::error!("{error}");
            }
            error.exit_code()
        }
    }
}

/// Prints argh's help (exit 0) or parse error (exit 64).
fn print_early_exit(early: argh::EarlyExit) -> u8 {
    if early.status.is_ok() {
        print!("{}", early.output);
        let _ = std::io::stdout().flush();
        0
    } else {
        let problem = early.output.trim().replace('\n', "; ");
        crate::error!("{problem}; run infisical-init --help for usage");
        64
    }
}

/// Runs `work` on a worker thread, aborting with 128 + N when a stop signal
/// arrives first.
pub fn abortable<T: Send + 'static>(signals: &Signals, work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match signals.wait_during(work) {
        Ok(result) => result,
        Err(signal) => Err(Error::new(Kind::Aborted(signal), String::new())),
    }
}

/// Logs in, or returns the ready token.
pub fn access_token(client: &Client, credentials: &Credentials) -> Result<Secret> {
    match credentials {
        Credentials::Token { token, source, .. } => {
            debug!("using the access token from {source}");
            Ok(token.clone())
        }
        Credentials::UniversalAuth { client_id, client_secret } => {
            debug!("logging in to {} with client ID {client_id}", client.api_url());
            client.login_universal_auth(client_id, client_secret)
        }
    }
}

/// Fetches every requested folder and merges them in order. When nothing
/// comes back, checks whether the environment slug exists, because the
/// server returns an empty list for an unknown slug.
pub fn fetch_secrets(client: &Client, token: &Secret, fetch: &FetchOptions) -> Result<SecretSet> {
    let mut set = SecretSet::default();
    for path in &fetch.paths {
        let query = ListQuery {
            project_id: &fetch.project_id,
            environment: &fetch.environment,
            path,
            recursive: fetch.recursive,
            include_imports: fetch.include_imports,
            expand_references: fetch.expand_references,
            tags: &fetch.tags,
        };
        let listing = client.list_secrets(token, &query)?;
        if fetch.paths.len() > 1 && listing.secrets.is_empty() && listing.imports.iter().all(|import| import.secrets.is_empty()) {
            warn!("no secrets found in environment {} at {path}; check the path", fetch.environment);
        }
        merge_listing(&mut set, listing);
    }
    if set.is_empty() {
        check_environment(client, token, fetch)?;
    }
    Ok(set)
}

fn check_environment(client: &Client, token: &Secret, fetch: &FetchOptions) -> Result<()> {
    let slugs = match client.environment_slugs(token, &fetch.project_id) {
        Ok(slugs) => slugs,
        Err(error) => {
            debug!("could not list the project's environments: {error}");
            return Ok(());
        }
    };
    if !slugs.is_empty() && !slugs.contains(&fetch.environment) {
        return Err(Error::config(format!(
            "environment '{}' not found in project {}; valid environments: {}; set --env or INFISICAL_ENVIRONMENT",
            fetch.environment,
            fetch.project_id,
            slugs.join(", ")
        )));
    }
    warn!(
        "no secrets found in environment {} at {}",
        fetch.environment,
        fetch.paths.join(", ")
    );
    Ok(())
}

/// Creates the client, gets a token and fetches the secrets, all abortable.
/// When the server rejects a token it issued at this login (401, or 403
/// `TokenError`), logs in once more and tries again.
pub fn fetch_abortable(
    signals: &Signals,
    connection: Connection,
    credentials: Credentials,
    fetch: FetchOptions,
) -> Result<SecretSet> {
    abortable(signals, move || {
        let client = Client::new(&connection)?;
        client.splay(connection.splay);
        let token = access_token(&client, &credentials)?;
        match fetch_secrets(&client, &token, &fetch) {
            Err(error) if error.token_rejected && matches!(credentials, Credentials::UniversalAuth { .. }) => {
                info!("the access token was rejected; logging in again once");
                let token = access_token(&client, &credentials)?;
                fetch_secrets(&client, &token, &fetch)
            }
            other => other,
        }
    })
}

fn run(args: &cli::RunArgs, environment: Environment, signals: &Signals) -> Result<u8> {
    let config = config::run_config(args, &environment)?;
    log::set_max_level(config.connection.log_level);
    if config.mode == RunMode::Build {
        warn_build_argument(&config.credentials, &environment);
    }
    let fetch = &config.fetch;
    let secrets = fetch_abortable(signals, config.connection.clone(), config.credentials.clone(), fetch.clone())
        .map_err(|error| explain_build_token_error(error, &config))?;
    let count = secrets.len();
    let child_environment = env::child_environment(environment.variables, secrets.into_entries())?;
    for key in &child_environment.dropped {
        warn!("secret {key} not injected: the name is reserved for the system");
    }
    env::check_total_size(&config.command, &child_environment.entries, env::exec_size_limit())?;
    info!(
        "injected {} secrets from project {}, environment {}, path {}",
        count - child_environment.dropped.len(),
        fetch.project_id,
        fetch.environment,
        fetch.paths.join(", ")
    );
    start_command(&config, child_environment.entries, signals)
}

/// Starts the command in the chosen mode and, unless it replaced this
/// process, supervises it to the end. The environment is freed once the
/// child has its copy, which keeps the idle supervisor small.
fn start_command(
    config: &config::RunConfig,
    variables: Vec<std::ffi::CString>,
    signals: &Signals,
) -> Result<u8> {
    let argv = &config.command;
    if config.mode == RunMode::Exec {
        return Err(spawn::exec(argv, &variables, signals.inherited));
    }
    if config.mode == RunMode::Supervise {
        supervise::become_subreaper();
    }
    let child = spawn::spawn(argv, &variables, signals.inherited, config.mode)?;
    drop(variables);
    if config.mode == RunMode::Supervise {
        supervise::leave_working_directory();
        memory::release_startup_pages();
    }
    Ok(supervise::supervise(&child, signals, &config.supervision))
}

/// Warns that a token passed as a build argument is recorded in the image
/// history.
fn warn_build_argument(credentials: &Credentials, environment: &Environment) {
    if let Credentials::Token { source, from_environment: true, .. } = credentials {
        warn!(
            "the access token comes from {source}; if it is a build argument, `docker history` records it \
             in the image: mount it as a secret instead (RUN --mount=type=secret,id=infisical_token)"
        );
    }
    if let Credentials::UniversalAuth { .. } = credentials {
        if environment.get("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET").is_some() {
            warn!(
                "the client secret comes from INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET; if it is a build argument, \
                 `docker history` records it in the image: mount it as a secret and set \
                 INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET_FILE instead"
            );
        }
    }
}

/// Adds to a rejected-token error in a build step how to mint a fresh
/// token, because a build cannot log in again by itself.
fn explain_build_token_error(error: Error, config: &config::RunConfig) -> Error {
    let build_token = config.mode == RunMode::Build && matches!(config.credentials, Credentials::Token { .. });
    if !build_token || !error.token_rejected {
        return error;
    }
    // The generic advice for a rejected token is replaced by the build one.
    let generic_hints = [
        "; the access token was rejected: log in again or mint a new token",
        "; the access token is expired or invalid: log in again or mint a new token",
    ];
    let base = generic_hints
        .iter()
        .find_map(|hint| error.message.strip_suffix(hint))
        .unwrap_or(&error.message)
        .to_string();
    let message = format!(
        "{base}; the build token has expired or was revoked: mint a fresh one with `infisical-init login` \
         (with INFISICAL_UNIVERSAL_AUTH_CLIENT_ID and INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET set) and pass it \
         to the build again, preferably as a secret (--secret id=infisical_token,src=FILE)"
    );
    Error { message, ..error }
}

fn login(args: &cli::LoginArgs, environment: Environment, signals: &Signals) -> Result<u8> {
    let connection = config::connection(args.connection_flags(), &environment)?;
    log::set_max_level(connection.log_level);
    let credentials = config::client_credentials(&environment)?.ok_or_else(|| {
        Error::config(
            "no client credentials: set INFISICAL_UNIVERSAL_AUTH_CLIENT_ID and \
             INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET (or their _FILE variables)",
        )
    })?;
    let token = abortable(signals, move || {
        let client = Client::new(&connection)?;
        client.splay(connection.splay);
        access_token(&client, &credentials)
    })?;
    write_stdout(format!("{}\n", token.expose()).as_bytes())?;
    Ok(0)
}

fn revoke(args: &cli::RevokeArgs, environment: Environment, signals: &Signals) -> Result<u8> {
    let connection = config::connection(args.connection_flags(), &environment)?;
    log::set_max_level(connection.log_level);
    let token = match config::token(&environment, false)? {
        Some(Credentials::Token { token, .. }) => token,
        _ => read_token_from_stdin()?,
    };
    abortable(signals, move || {
        let client = Client::new(&connection)?;
        client.revoke(&token)
    })?;
    info!("revoked the access token");
    Ok(0)
}

fn read_token_from_stdin() -> Result<Secret> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take_line(&mut text)
        .map_err(|error| Error::config(format!("failed to read the token from standard input: {error}")))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(Error::config(
            "no token to revoke: set INFISICAL_TOKEN or INFISICAL_TOKEN_FILE, or pipe the token to standard input",
        ));
    }
    Ok(Secret::new(token))
}

/// Reads one line without keeping more than 64 KiB of it.
trait TakeLine {
    fn take_line(&mut self, text: &mut String) -> std::io::Result<usize>;
}

impl<R: std::io::BufRead> TakeLine for R {
    fn take_line(&mut self, text: &mut String) -> std::io::Result<usize> {
        use std::io::{BufRead, Read};
        self.take(64 * 1024).read_line(text)
    }
}

/// Writes to standard output and flushes, because this binary has no Rust
/// runtime start-up to flush it at exit.
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).map_err(|error| {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader has gone, as `head` does; exit quietly with the status
            // a death by SIGPIPE gives, as other command-line tools do.
            Error::new(Kind::Aborted(nix::libc::SIGPIPE), String::new())
        } else {
            Error::new(Kind::CannotWrite, format!("failed to write to standard output: {error}"))
        }
    })
}
