//! `edge-idp [serve]`: parse settings, start logging, run the application.

use clap::Parser;
use edge_idp::config::{Cli, Command};
use edge_idp::startup::Application;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Every file this process creates (the database, its WAL and shared-memory files, keys it
    // generates) is readable by its owner alone.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
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
    let (config, keys_action) = match cli.command {
        Some(Command::Serve(c)) => (c, None),
        Some(Command::Keys(k)) => (k.config, Some(k.action)),
        Some(Command::Healthcheck(c)) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            return match rt
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(edge_idp::ops::healthcheck::check(c.listen_addr)))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("edge-idp: unhealthy: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        None => (cli.config, None),
    };
    if keys_action.is_none() {
        edge_idp::ops::telemetry::init(config.log_format);
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
        if let Some(action) = keys_action {
            let out = edge_idp::startup::keys_command(settings, action).await.map_err(|e| e.to_string())?;
            print!("{out}");
            return Ok(());
        }
        let app = Application::build(settings).await.map_err(|e| e.to_string())?;
        app.run_until_stopped().await.map_err(|e| e.to_string())
    });
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "edge-idp stopped with an error");
            eprintln!("edge-idp: {e}");
            ExitCode::FAILURE
        }
    };
    edge_idp::ops::telemetry::flush();
    code
}
