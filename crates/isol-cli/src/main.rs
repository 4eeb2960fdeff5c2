//! `isol`: task isolation for Linux. Each subcommand lives in its own module under `cmd/`;
//! this file parses arguments, opens the kernel root, and maps errors to exit codes.

#![forbid(unsafe_code)]

mod cmd;
mod live;
mod output;
mod render;
mod root;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a usage error (bad arguments or an unusable CPU list), as in sysexits.h.
pub const EXIT_USAGE: u8 = 64;
/// Exit code when something failed at run time (an unreadable snapshot, a write error).
pub const EXIT_FAILURE: u8 = 70;
/// Exit code when the command needs root, as in sysexits.h.
pub const EXIT_NOPERM: u8 = 77;

/// Task isolation for Linux: check a machine, and run latency-critical threads undisturbed.
#[derive(Parser)]
#[command(name = "isol", version, about, long_about = None)]
struct Cli {
    /// Read the kernel from this directory or `isol snapshot` archive instead of `/`.
    #[arg(long, global = true, value_name = "DIR|FILE")]
    root: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Is this machine ready to isolate CPUs, and what to fix.
    Check(cmd::check::Args),
    /// Capture every kernel file isol reads into one archive, for bug reports and tests.
    Snapshot(cmd::snapshot::Args),
    /// Every interruption of isolated CPUs, with its cause and culprit.
    Watch(cmd::watch::Args),
    /// The watched CPUs and who interrupts them, live, full screen.
    Top(cmd::top::Args),
    /// OS noise of CPUs at nanosecond resolution, each gap attributed to its cause.
    Noise(cmd::noise::Args),
    /// Move the kernel's work off CPUs now, journaling every old value (undo: restore).
    Apply(cmd::apply::ApplyArgs),
    /// Put back every value the last apply changed.
    Restore(cmd::apply::RestoreArgs),
    /// The kernel boot parameters that isolate CPUs, with the reason for each.
    Cmdline(cmd::apply::CmdlineArgs),
    /// What differs between two machines (snapshots, directories, or `-` for this one) that
    /// matters for isolation.
    Diff(cmd::diff::Args),
    /// Start a program on an isolated CPU (optionally applied and watched); exit with its status.
    Run(cmd::run::Args),
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (isol.1, isol-SUBCOMMAND.1) into a directory.
    #[command(hide = true)]
    Man {
        /// Where to write them.
        dir: PathBuf,
    },
}

/// An error for the user: one line, and the exit code that goes with it.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    pub fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }

    /// An ending that needs no message (standard output's reader has gone).
    pub fn quiet(code: u8) -> Failure {
        Failure {
            code,
            message: String::new(),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                // Asked for: on standard output, whose errors count (`--help > /dev/full`).
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    match output::print(&e.render().to_string()) {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(f) => {
                            if !f.message.is_empty() {
                                crate::say!("isol: {}", f.message);
                            }
                            ExitCode::from(f.code)
                        }
                    }
                }
                _ => {
                    let _ = e.print();
                    ExitCode::from(EXIT_USAGE)
                }
            };
        }
    };
    live::signals::install();
    let result = root::open(cli.root.as_deref()).and_then(|root| match cli.command {
        Command::Check(args) => cmd::check::run(&root.sys, args),
        Command::Snapshot(args) => cmd::snapshot::run(&root.sys, args),
        Command::Watch(args) => cmd::watch::run(&root.sys, args),
        Command::Top(args) => cmd::top::run(&root.sys, args),
        Command::Noise(args) => cmd::noise::run(&root.sys, args),
        Command::Apply(args) => cmd::apply::apply(&root, args),
        Command::Restore(args) => cmd::apply::restore(&root, args),
        Command::Cmdline(args) => cmd::apply::cmdline(&root.sys, args),
        Command::Run(args) => cmd::run::run(&root.sys, args),
        Command::Diff(args) => cmd::diff::run(&root.sys, args),
        Command::Completions { shell } => cmd::ship::completions(shell),
        Command::Man { dir } => cmd::ship::man(&dir),
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if !f.message.is_empty() {
                crate::say!("isol: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}
