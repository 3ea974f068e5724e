//! The command line: `edge-idp [serve] | keys <list|rotate> | healthcheck`, and [`run`], what
//! the binary does with it, so `main` only sets the process up and calls it.

use crate::config::{ClientsAction, Config, KeysAction};
use crate::startup::Application;
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

/// `edge-idp [serve] [FLAGS]`.
#[derive(Debug, Parser)]
#[command(
    name = "edge-idp",
    version,
    about = "An identity provider: signup, login, MFA, RS256 access tokens, rotating refresh tokens."
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings for the default `serve`.
    #[command(flatten)]
    pub config: Config,
}

impl Cli {
    /// Parses `argv` alone: the settings' environment variables are not read. Tests build
    /// servers this way, so that each runs exactly the configuration its test wrote whatever
    /// the environment of the run (CI sets `REDIS_URL`, for one).
    pub fn parse_args_only<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command()
            .mut_args(|a| a.env(None))
            .try_get_matches_from(argv)?;
        Self::from_arg_matches(&matches)
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the HTTP server (the default).
    Serve(Config),
    /// Signing-key operations on the configured database.
    Keys(KeysArgs),
    /// OAuth client registry operations on the configured database.
    Clients(ClientsArgs),
    /// Exits 0 when the server at `LISTEN_ADDR` answers `/healthz` (for container health checks).
    Healthcheck(Config),
}

/// `edge-idp keys [SETTINGS] <list|rotate>`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: KeysAction,
    /// Database and master key settings (the same variables as `serve`).
    #[command(flatten)]
    pub config: Config,
}

/// `edge-idp clients [SETTINGS] <create|list|delete|rotate-secret>`.
#[derive(Debug, Args)]
pub struct ClientsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ClientsAction,
    /// Database and master key settings (the same variables as `serve`).
    #[command(flatten)]
    pub config: Config,
}

/// What the binary was asked to do besides serving.
enum Task {
    Serve,
    Keys(KeysAction),
    Clients(ClientsAction),
}

/// Parses the command line and runs what it asks for: the health check, a key operation or the
/// server. Usage errors exit 2 with one line, `--help` and `--version` exit 0.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let msg = e.to_string();
            eprintln!(
                "edge-idp: {}",
                msg.lines()
                    .next()
                    .unwrap_or("invalid arguments")
                    .trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let (config, task) = match cli.command {
        Some(Command::Serve(c)) => (c, Task::Serve),
        Some(Command::Keys(k)) => (k.config, Task::Keys(k.action)),
        Some(Command::Clients(c)) => (c.config, Task::Clients(c.action)),
        Some(Command::Healthcheck(c)) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            return match rt
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(crate::ops::healthcheck::check(c.listen_addr)))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("edge-idp: unhealthy: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        None => (cli.config, Task::Serve),
    };
    if matches!(task, Task::Serve) {
        crate::ops::telemetry::init(config.log_format);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-idp: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = runtime.block_on(async {
        let (key, generated) = config.resolve_master_key().map_err(|e| e.to_string())?;
        if generated {
            tracing::warn!(path = %config.data_dir.join("mfa_encryption.key").display(), "generated MFA_ENCRYPTION_KEY for development; set it explicitly in production");
        }
        let settings = config.validate(key).map_err(|e| e.to_string())?;
        let out = match task {
            Task::Serve => {
                let app = Application::build(settings)
                    .await
                    .map_err(|e| crate::ops::telemetry::chain(&e))?;
                return app
                    .run_until_stopped()
                    .await
                    .map_err(|e| crate::ops::telemetry::chain(&e));
            }
            Task::Keys(action) => crate::startup::keys_command(settings, action).await,
            Task::Clients(action) => crate::startup::clients_command(settings, action).await,
        };
        print!("{}", out.map_err(|e| crate::ops::telemetry::chain(&e))?);
        Ok(())
    });
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "edge-idp stopped with an error");
            eprintln!("edge-idp: {e}");
            ExitCode::FAILURE
        }
    };
    crate::ops::telemetry::flush();
    code
}
