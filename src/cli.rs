//! The command line as argh parses it: raw strings and switches, with the help
//! text in the doc comments. Environment variables, defaults and validation
//! belong to `config.rs`.

use argh::FromArgs;

#[derive(FromArgs, Debug)]
/// Fetch secrets from Infisical and run a command with them, as a container's
/// first process (PID 1) or inside a build step or script.
pub struct TopLevel {
    /// print the version and exit
    #[argh(switch)]
    pub version: bool,

    #[argh(subcommand)]
    pub command: Option<Subcommand>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Subcommand {
    Run(RunArgs),
    Login(LoginArgs),
    Revoke(RevokeArgs),
    Get(GetArgs),
    Export(ExportArgs),
}

/// Declares a subcommand struct with the options every command that talks to
/// Infisical shares (argh has no way to flatten one struct into another), and
/// the fetch options when `fetch` is given.
macro_rules! command_struct {
    (@fields $(#[$meta:meta])* $name:ident { $($extra:tt)* } connection) => {
        #[derive(FromArgs, Debug, Default)]
        $(#[$meta])*
        pub struct $name {
            /// server URL, such as https://app.infisical.com (env
            /// INFISICAL_DOMAIN or INFISICAL_API_URL; /api is appended)
            #[argh(option)]
            pub domain: Option<String>,

            /// log level: error, warn, info or debug (env INFISICAL_LOG_LEVEL;
            /// default info)
            #[argh(option)]
            pub log_level: Option<String>,

            /// log errors only
            #[argh(switch)]
            pub silent: bool,

            /// give up on the server after this many seconds of retries, 0
            /// to retry forever (env INFISICAL_TIMEOUT; default 120)
            #[argh(option)]
            pub timeout: Option<String>,

            /// wait a random time of up to this many seconds before the first
            /// request, to spread the logins of a fleet restarted at once
            #[argh(option)]
            pub splay: Option<String>,

            /// PEM file of extra CA certificates to trust, for servers with a
            /// private CA (env INFISICAL_CA_CERT_FILE)
            #[argh(option)]
            pub ca_cert: Option<String>,

            $($extra)*
        }

        impl $name {
            pub fn connection_flags(&self) -> ConnectionFlags<'_> {
                ConnectionFlags {
                    domain: self.domain.as_deref(),
                    log_level: self.log_level.as_deref(),
                    silent: self.silent,
                    timeout: self.timeout.as_deref(),
                    splay: self.splay.as_deref(),
                    ca_cert: self.ca_cert.as_deref(),
                }
            }
        }
    };
    (@fields $(#[$meta:meta])* $name:ident { $($extra:tt)* } fetch) => {
        command_struct!(@fields $(#[$meta])* $name {
            /// project ID (env INFISICAL_PROJECT_ID; --projectId also works)
            #[argh(option)]
            pub project_id: Option<String>,

            /// environment slug (env INFISICAL_ENVIRONMENT; default dev)
            #[argh(option)]
            pub env: Option<String>,

            /// folder path, repeatable; a later path wins (env
            /// INFISICAL_SECRET_PATH; default /)
            #[argh(option)]
            pub path: Vec<String>,

            /// include the secrets of every sub-folder
            #[argh(switch)]
            pub recursive: bool,

            /// leave out imported secrets
            #[argh(switch)]
            pub no_imports: bool,

            /// keep secret references such as ${KEY} unexpanded
            #[argh(switch)]
            pub no_expand: bool,

            /// comma-separated tag slugs: fetch only secrets with one of them
            #[argh(option)]
            pub tags: Option<String>,

            $($extra)*
        } connection);

        impl $name {
            pub fn fetch_flags(&self) -> FetchFlags<'_> {
                FetchFlags {
                    project_id: self.project_id.as_deref(),
                    env: self.env.as_deref(),
                    path: &self.path,
                    recursive: self.recursive,
                    no_imports: self.no_imports,
                    no_expand: self.no_expand,
                    tags: self.tags.as_deref(),
                }
            }
        }
    };
}

/// The connection options of any subcommand, borrowed.
pub struct ConnectionFlags<'a> {
    pub domain: Option<&'a str>,
    pub log_level: Option<&'a str>,
    pub silent: bool,
    pub timeout: Option<&'a str>,
    pub splay: Option<&'a str>,
    pub ca_cert: Option<&'a str>,
}

/// The fetch options of any fetching subcommand, borrowed.
pub struct FetchFlags<'a> {
    pub project_id: Option<&'a str>,
    pub env: Option<&'a str>,
    pub path: &'a [String],
    pub recursive: bool,
    pub no_imports: bool,
    pub no_expand: bool,
    pub tags: Option<&'a str>,
}

command_struct!(@fields
    #[argh(subcommand, name = "run")]
    /// Fetch secrets, then start COMMAND with them and supervise it: forward
    /// signals, reap zombies and exit with its status.
    RunArgs {
        /// replace this process with the command instead of supervising it,
        /// for when another init is PID 1
        #[argh(switch)]
        pub exec: bool,

        /// build-step mode for Dockerfile RUN: run the command as a plain
        /// child with no init duties, reading a token from INFISICAL_TOKEN,
        /// INFISICAL_TOKEN_FILE or /run/secrets/infisical_token
        #[argh(switch)]
        pub build: bool,

        /// send signals to the child's whole process group, and when the
        /// child exits, stop what is left of the group
        #[argh(switch)]
        pub kill_group: bool,

        /// with --kill-group: seconds to wait after SIGTERM for the rest of
        /// the group before SIGKILL (default 5)
        #[argh(option)]
        pub drain: Option<String>,

        /// rewrite a signal before forwarding it, as SIG:SIG with names or
        /// numbers (TERM:QUIT); SIG:0 drops it; repeatable
        #[argh(option)]
        pub rewrite: Vec<String>,

        /// exit 0 when the child exits with this code; repeatable
        #[argh(option)]
        pub remap_exit: Vec<String>,

        /// seconds to wait after forwarding SIGTERM or SIGINT before sending
        /// SIGKILL to the child (default: wait forever)
        #[argh(option)]
        pub stop_timeout: Option<String>,

        /// log every signal forwarded and zombie reaped (--log-level debug)
        #[argh(switch)]
        pub verbose: bool,

        /// the command and its arguments, after --
        #[argh(positional, greedy)]
        pub command: Vec<String>,
    } fetch);

command_struct!(@fields
    #[argh(subcommand, name = "login")]
    /// Log in with the machine identity and print the access token on
    /// standard output.
    LoginArgs {} connection);

command_struct!(@fields
    #[argh(subcommand, name = "revoke")]
    /// Revoke an access token taken from INFISICAL_TOKEN, its _FILE variable
    /// or standard input.
    RevokeArgs {} connection);

command_struct!(@fields
    #[argh(subcommand, name = "get")]
    /// Print the raw value of each named secret on its own line.
    GetArgs {
        /// print an empty line for a missing name instead of failing
        #[argh(switch)]
        pub allow_missing: bool,

        /// secret names
        #[argh(positional)]
        pub names: Vec<String>,
    } fetch);

command_struct!(@fields
    #[argh(subcommand, name = "export")]
    /// Print every secret, sorted by key, in a format other tools read.
    ExportArgs {
        /// dotenv, dotenv-export, shell or json (default dotenv)
        #[argh(option)]
        pub format: Option<String>,

        /// write to this file (mode 0600, replaced atomically) instead of
        /// standard output
        #[argh(option)]
        pub output: Option<String>,

        /// skip keys the format cannot carry, with a warning, instead of
        /// failing
        #[argh(switch)]
        pub skip_invalid: bool,
    } fetch);

/// Options that take a value; `normalize_args` needs them to find where the
/// command begins.
const VALUE_OPTIONS: &[&str] = &[
    "--domain",
    "--log-level",
    "--timeout",
    "--splay",
    "--ca-cert",
    "--drain",
    "--rewrite",
    "--remap-exit",
    "--stop-timeout",
    "--project-id",
    "--env",
    "--path",
    "--tags",
    "--format",
    "--output",
];

/// Rewrites the arguments into the form argh accepts: `--opt=value` becomes
/// `--opt value`, and the Go CLI's `--projectId` becomes `--project-id`.
/// For `run`, everything from the command on is left untouched; other
/// subcommands take options anywhere until `--`.
pub fn normalize_args(args: &[String]) -> Result<Vec<String>, String> {
    let mut normalized = Vec::with_capacity(args.len());
    let mut rest = args.iter();
    let mut expects_value = false;
    let mut subcommand: Option<&str> = None;
    while let Some(arg) = rest.next() {
        let positional = !arg.starts_with('-') && !expects_value;
        if arg == "--" && expects_value {
            let option = normalized.last().cloned().unwrap_or_default();
            return Err(format!("missing value for {option} before --"));
        }
        if arg == "--" || (positional && subcommand == Some("run")) {
            normalized.push(arg.clone());
            normalized.extend(rest.cloned());
            break;
        }
        if positional {
            subcommand.get_or_insert(arg.as_str());
            normalized.push(arg.clone());
            continue;
        }
        if expects_value {
            expects_value = false;
            normalized.push(arg.clone());
            continue;
        }
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (arg.as_str(), None),
        };
        let name = if name == "--projectId" { "--project-id" } else { name };
        normalized.push(name.to_string());
        match value {
            Some(value) => normalized.push(value.to_string()),
            None => expects_value = VALUE_OPTIONS.contains(&name),
        }
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalize_splits_equals_and_alias() {
        let args = strings(&["run", "--projectId=abc", "--env", "prod", "--", "x", "--env=y"]);
        let expected = strings(&["run", "--project-id", "abc", "--env", "prod", "--", "x", "--env=y"]);
        assert_eq!(normalize_args(&args).unwrap(), expected);
    }

    #[test]
    fn normalize_rejects_missing_value() {
        let args = strings(&["run", "--path", "--", "echo"]);
        assert_eq!(normalize_args(&args).unwrap_err(), "missing value for --path before --");
    }

    #[test]
    fn normalize_stops_at_run_command() {
        let args = strings(&["run", "--path", "/a", "cmd", "--projectId=x"]);
        assert_eq!(normalize_args(&args).unwrap(), args);
    }

    #[test]
    fn normalize_get_options_after_names() {
        let args = strings(&["get", "NAME", "--env=prod", "--projectId", "p"]);
        let expected = strings(&["get", "NAME", "--env", "prod", "--project-id", "p"]);
        assert_eq!(normalize_args(&args).unwrap(), expected);
    }

    #[test]
    fn normalize_keeps_value_that_looks_like_option() {
        let args = strings(&["run", "--path", "--weird", "--", "true"]);
        assert_eq!(normalize_args(&args).unwrap(), args);
    }
}
