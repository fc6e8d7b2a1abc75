//! The `tessera` binary: see [`tessera_server::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    tessera_server::cli::init_tracing();
    tessera_server::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
}
