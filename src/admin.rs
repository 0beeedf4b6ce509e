//! `shopflow admin create`: the first admin account, from an operator with access to the log.
//! The password comes from `SHOPFLOW_ADMIN_PASSWORD` or, without it, one line of stdin; never
//! from a flag (flags end up in shell history and `ps`).

use std::io::BufRead;

use clap::{Args, Subcommand};

use crate::run::apply_log_args;
use crate::settings::Settings;
use crate::LogArgs;

#[derive(Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Registers an admin account, or makes an existing account an admin.
    Create(CreateArgs),
}

#[derive(Args)]
struct CreateArgs {
    #[command(flatten)]
    log: LogArgs,
    /// The admin's e-mail (sign in with it).
    #[arg(long)]
    email: String,
    #[arg(long, default_value = "")]
    name: String,
}

/// Where the admin's password is read from when not from stdin.
pub const PASSWORD_ENV: &str = "SHOPFLOW_ADMIN_PASSWORD";

pub async fn cli(mut settings: Settings, args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::Create(create) => {
            apply_log_args(&mut settings.log, &create.log);
            let password = password()?;
            let log = shopflow_ingest::open(&settings.log).await?;
            shopflow_dataflow::pipeline::ensure_topics(log.as_ref(), &settings.pipeline).await?;
            let user = shopflow_serving::auth::admin::create(log.as_ref(), &create.email, &create.name, &password).await?;
            println!("admin {user} created (or promoted); sign in with POST /api/v1/auth/login");
            Ok(())
        }
    }
}

fn password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var(PASSWORD_ENV) {
        return Ok(password);
    }
    eprintln!("password (one line on stdin, or set {PASSWORD_ENV}):");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
