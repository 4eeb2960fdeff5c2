//! `isol-lab-guest`: the helpers the lab runs inside the guest (and host tests run on this
//! machine): each subcommand provokes, disturbs or exercises one thing on purpose and prints
//! what it did as one JSON object, for a test to hold isol's reports against.
//!
//! | file | subcommands |
//! |---|---|
//! | `ticks.rs` | `ticks`, `spin`, `irqsum`: the tick and interrupt counts of a busy or idle CPU |
//! | `provoke.rs` | `provoke`, `app`, `udp`: interruptions for `isol watch` to name, in the order users meet them |
//! | `disturb.rs` | `disturb`, `referee`: disturbances from another process, for `isol noise` and the osnoise referee |
//! | `task.rs` | `isolate`, `under-run`: the task isolation API as a user calls it |
//! | `arrive.rs` | `arrive`: a thread from CPU 0 waits for quiet on the isolated CPU, isol's waits and the tif peer's side by side |
//! | `strict.rs` | `strict`, `notify`, `requiet`: strict mode, remote notification and re-quiet mode |
//! | `pty.rs` | `pty`: a full-screen program (`isol top`) in a pseudo-terminal, its screen and its cost |
//! | `limit.rs` | `cpu-limit`: a CPU-time limit set on a running process, as `prlimit --pid` does |
//! | `netstamp.rs` | `netstamp`: network timestamping turned on and off, and what each flip of its key costs another CPU |
//! | `common.rs` | what they share: placing threads, counting interrupts, sleepers and migrants |

#![forbid(unsafe_code)]

mod arrive;
mod common;
mod disturb;
mod limit;
mod netstamp;
mod provoke;
mod pty;
mod strict;
mod task;
mod ticks;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "isol-lab-guest",
    about = "isol's lab helpers: provoke, disturb and measure"
)]
struct Args {
    /// Make the spinning, sleeping or isolated threads SCHED_FIFO.
    #[arg(long, global = true)]
    fifo: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Keep CPU busy with a pinned spinner (and each BUSY_CPU), let the tick stop, then
    /// count local timer interrupts per CPU over SECS and sample CPU's tick state.
    Ticks { cpu: u32, secs: u64, busy: Vec<u32> },
    /// Spin on CPU for SECS.
    Spin { cpu: u32, secs: u64 },
    /// Every interrupt CPU has taken since boot (each counted once).
    Irqsum { cpu: u32 },
    /// A resident spinning on CPU, then from CPU 0 an IPI, a POSIX timer, a work item and
    /// a migrated task, on purpose, 300 ms apart.
    Provoke {
        cpu: u32,
        #[arg(default_value_t = 300)]
        delay_ms: u64,
        /// Wait for this file to exist first (the watch has started).
        #[arg(long)]
        go: Option<String>,
    },
    /// Disturb CPU from another process: a sleeper woken WAKEUPS times, a vmstat refresh
    /// (`--refresh`), a task moved there.
    Disturb {
        cpu: u32,
        delay_ms: u64,
        wakeups: u64,
        #[arg(long)]
        refresh: bool,
        /// Wait until a thread of this name runs on CPU (the measurement has begun).
        #[arg(long)]
        after: Option<String>,
    },
    /// One provocation per class of the kernel's osnoise tracer.
    Referee {
        cpu: u32,
        delay_ms: u64,
        #[arg(long)]
        after: Option<String>,
    },
    /// A worker thread enters task isolation on CPU and spins SECS, while the main thread
    /// counts CPU's interrupts.
    Isolate(task::IsolateArgs),
    /// Threads created on CPU 0 arrive on CPU and wait for quiet, isol's waits and tif's in
    /// turn, each then counted for a second; then they wait again from there.
    Arrive(arrive::ArriveArgs),
    /// A program as `isol run` starts it: enter as the environment says, spin, leave.
    UnderRun { mode: String, secs: f64 },
    /// An application started after `isol watch`, with `taskset -c 1`.
    App { secs: f64 },
    /// A thread on CPU woken N times by datagrams over loopback.
    Udp { cpu: u32, n: u32 },
    /// Strict mode as a user meets it: kill, signal, report, exit, after, badsignal,
    /// nested, fault, faultkill, quiet.
    Strict { mode: String, cpu: u32, secs: f64 },
    /// Remote notification: tlb, tlbstrict, task.
    Notify { mode: String, cpu: u32 },
    /// Re-quiet mode: timer or write.
    Requiet {
        mode: String,
        cpu: u32,
        /// Wait by sleeping.
        #[arg(long)]
        sleep: bool,
    },
    /// Open and close a socket asking for timestamps TIMES times from CPU 0; count CPU's
    /// interrupts meanwhile.
    Netstamp { cpu: u32, times: u32 },
    /// Give process PID a CPU-time limit of SECS seconds (RLIMIT_CPU) while it runs, once
    /// it has a thread whose name starts with --thread.
    CpuLimit {
        pid: i32,
        secs: u64,
        #[arg(long)]
        thread: Option<String>,
    },
    /// Run CMD in a COLSxROWS pseudo-terminal; once READY shows, count CPU's interrupts
    /// over SECS, keep the screen, press q.
    Pty {
        cols: u16,
        rows: u16,
        cpu: u32,
        secs: u64,
        ready: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

fn main() {
    let args = Args::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(if e.use_stderr() { 64 } else { 0 })
    });
    let fifo = args.fifo;
    match args.command {
        Command::Ticks { cpu, secs, busy } => ticks::ticks(cpu, secs, fifo, &busy),
        Command::Spin { cpu, secs } => ticks::spin(cpu, secs, fifo),
        Command::Irqsum { cpu } => ticks::irqsum(cpu),
        Command::Provoke { cpu, delay_ms, go } => provoke::provoke(cpu, delay_ms, go),
        Command::Disturb {
            cpu,
            delay_ms,
            wakeups,
            refresh,
            after,
        } => disturb::disturb(cpu, delay_ms, wakeups, refresh, fifo, after),
        Command::Referee {
            cpu,
            delay_ms,
            after,
        } => {
            if let Some(comm) = after {
                common::wait_running(&comm, cpu);
            }
            disturb::referee(cpu, delay_ms)
        }
        Command::Isolate(a) => task::isolate(&a, fifo),
        Command::Arrive(a) => arrive::arrive(&a),
        Command::UnderRun { mode, secs } => task::under_run(&mode, secs),
        Command::App { secs } => provoke::app(secs),
        Command::Udp { cpu, n } => provoke::udp(cpu, n),
        Command::Strict { mode, cpu, secs } => strict::strict(&mode, cpu, secs),
        Command::Notify { mode, cpu } => strict::notify(&mode, cpu),
        Command::Requiet { mode, cpu, sleep } => strict::requiet(&mode, cpu, sleep),
        Command::CpuLimit { pid, secs, thread } => limit::cpu_limit(pid, secs, thread),
        Command::Netstamp { cpu, times } => netstamp::netstamp(cpu, times),
        Command::Pty {
            cols,
            rows,
            cpu,
            secs,
            ready,
            cmd,
        } => pty::pty(cols, rows, cpu, secs, &ready, &cmd),
    }
}
