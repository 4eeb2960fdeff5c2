//! Decoding speed of the watch engine on the committed recordings from real kernels.
//!
//! `cargo bench -p isol --bench decode` prints one JSON line per recording:
//! * `decode`: ring-buffer pages parsed and records bound to typed events (what the
//!   watcher does for every event it reads), events per second on one core;
//! * `pipeline`: the same plus the interruption state machine, symbol names and output
//!   records (a whole `isol watch --replay` minus printing), events per second.

use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    for name in ["trace-host-6.18", "trace-lab-6.12"] {
        let dir = root.join(name);
        let once = isol::watch::decode_only(&dir, 1).expect("decode the recording");
        // About 20 million events per measurement.
        let rounds = (20_000_000 / once.max(1)).max(1) as usize;
        let t = Instant::now();
        let n = isol::watch::decode_only(&dir, rounds).unwrap();
        let decode = n as f64 / t.elapsed().as_secs_f64();

        let replay = isol::watch::replay(&dir, None).unwrap();
        let events = replay.stats.events;
        let reps = (2_000_000 / events.max(1)).max(1);
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(isol::watch::replay(&dir, None).unwrap());
        }
        let pipeline = (events * reps) as f64 / t.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "recording": name,
                "events_per_pass": once,
                "decode_events_per_s": decode.round(),
                "pipeline_events_per_s": pipeline.round(),
            })
        );
    }
}
