//! `freshtoken`: the command for scripts. Client tokens, linking a user,
//! fresh user tokens from a stored session (rotated refresh tokens saved
//! before the token is printed), inspection, revocation, and the emulator.
//! Secrets come from files, standard input or environment variables, never
//! from arguments; the exit status says which error code a failure has.

mod args;
mod client;
mod client_token;
mod emulator;
mod failure;
mod file_store;
mod inspect;
mod interrupt;
mod key_locks;
mod link;
mod output;
mod revoke;
mod session_lock;
mod token;
mod unsaved;

use args::{Cli, Command};
use clap::Parser;
use failure::Failure;
use output::{Format, Output};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Usage errors exit 2 and --help/--version 0, as clap does; with
    // --json, usage errors are JSON too (see usage_error).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let out = Output {
        format: if cli.json {
            Format::Json
        } else if cli.quiet {
            Format::Quiet
        } else {
            Format::Human
        },
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(format!("cannot start: {e}")))
        .and_then(|runtime| runtime.block_on(run(cli.command, out)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            out.failure(&failure);
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Reports arguments clap refused: as clap does (text on stderr, exit 2;
/// help and version on stdout, exit 0), or with `--json` among the
/// arguments as the `{"error":{…}}` object every other failure prints, with
/// the usage code and exit status 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args_os()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json");
    if !json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    // clap's message on one line, without its `error: ` and without the
    // usage and `--help` hint that follow a blank line.
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    let failure = Failure::Usage(
        message
            .strip_prefix("error: ")
            .unwrap_or(&message)
            .to_owned(),
    );
    Output {
        format: Format::Json,
    }
    .failure(&failure);
    ExitCode::from(failure.exit_code())
}

/// Runs one subcommand.
async fn run(command: Command, out: Output) -> Result<(), Failure> {
    match command {
        Command::ClientToken(args) => client_token::run(args, out).await,
        Command::Link(args) => link::run(args, out).await,
        Command::Token(args) => token::run(args, out).await,
        Command::Inspect(args) => inspect::run(args, out).await,
        Command::Revoke(args) => revoke::run(args, out).await,
        Command::Emulator(args) => emulator::run(args, out).await,
    }
}
