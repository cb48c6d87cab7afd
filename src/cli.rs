//! The command line: `eventd serve`, `eventd migrate`, `eventd accounts …`, `eventd keys create`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::clock;
use crate::config::{Config, StoreConfig};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "eventd",
    version,
    about = "Stripe v2 compatible event destinations and delivery"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API.
    Serve(Box<Config>),
    /// Run the database migrations and exit.
    Migrate(StoreConfig),
    /// Manage accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Create an account (a connected account with --parent) with one test and one live key.
    Create {
        #[arg(long)]
        parent: Option<String>,
        #[command(flatten)]
        store: StoreConfig,
    },
    /// List accounts, one per line.
    List {
        #[command(flatten)]
        store: StoreConfig,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create one test and one live secret key for an account (default: the first account).
    Create {
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        store: StoreConfig,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EVENTD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and pipes get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eventd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eventd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(config) => serve(*config).await,
        Command::Migrate(store) => {
            let what = Store::migrate(&store).await?;
            println!("migrated {what}");
            Ok(())
        }
        Command::Accounts(AccountsCommand::Create { parent, store }) => {
            let store = Store::connect(&store, clock::system()).await?;
            let created = store.create_account(parent).await.map_err(|e| match e {
                crate::store::StoreError::NotFound => anyhow::anyhow!("no such parent account"),
                other => other.into(),
            })?;
            println!("account {}", created.account_id);
            println!("sk_test {}", created.test_key);
            println!("sk_live {}", created.live_key);
            Ok(())
        }
        Command::Accounts(AccountsCommand::List { store }) => {
            let store = Store::connect(&store, clock::system()).await?;
            for account in store.list_accounts().await? {
                match account.parent_id {
                    Some(parent) => println!("{} parent={parent}", account.id),
                    None => println!("{}", account.id),
                }
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Create { account, store }) => {
            let store = Store::connect(&store, clock::system()).await?;
            let account = match account {
                Some(a) => a,
                None => store
                    .list_accounts()
                    .await?
                    .into_iter()
                    .find(|a| a.parent_id.is_none())
                    .map(|a| a.id)
                    .ok_or_else(|| anyhow::anyhow!("no account yet: run `eventd serve` once"))?,
            };
            let (test, live) = store
                .create_keys(account.clone())
                .await
                .map_err(|_| anyhow::anyhow!("no such account: {account}"))?;
            println!("account {account}");
            println!("sk_test {test}");
            println!("sk_live {live}");
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config, clock::system()).await?;
    if let Some(created) = app.bootstrapped() {
        println!("Created account {}", created.account_id);
        println!("  test secret key: {}", created.test_key);
        println!("  live secret key: {}", created.live_key);
        println!("These keys are shown once; they are stored hashed.");
    }
    println!("eventd listening on http://{}", app.local_addr());
    app.run(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
