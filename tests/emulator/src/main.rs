//! `freshtoken-emulator`: runs the token-endpoint emulator as a process,
//! prints one JSON "ready" line on stdout and serves until SIGINT/SIGTERM
//! (or, with `--exit-on-stdin-eof`, until stdin closes).

mod cli;

use std::io::Write;
use std::process::ExitCode;

use freshtoken_emulator::{Emulator, ExitSignals};

fn main() -> ExitCode {
    let (options, exit_on_stdin_eof) =
        match cli::parse(std::env::args().skip(1), |k| std::env::var(k).ok()) {
            Ok(cli::Command::Run {
                options,
                exit_on_stdin_eof,
            }) => (options, exit_on_stdin_eof),
            Ok(cli::Command::Help) => {
                print!("{}", cli::USAGE);
                return ExitCode::SUCCESS;
            }
            Err(message) => {
                eprintln!("freshtoken-emulator: {message}\n\n{}", cli::USAGE);
                return ExitCode::from(2);
            }
        };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("freshtoken-emulator: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Signal handlers are in place before the ready line, so a harness that
    // signals right after reading it never kills us uncleanly.
    let exit_signals = {
        let _context = runtime.enter();
        ExitSignals::register(exit_on_stdin_eof)
    };
    let emulator = match Emulator::start(options) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("freshtoken-emulator: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ready = emulator.ready_line();
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{ready}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(stdout);
    runtime.block_on(exit_signals.first());
    drop(emulator);
    ExitCode::SUCCESS
}
