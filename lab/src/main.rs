//! `cargo run -p isol-lab -- COMMAND`: the lab for people.
//!
//! * `shell [--cpus N] [-- CMDLINE...]`: an interactive shell in the guest;
//! * `run SCRIPT [--cpus N]`: run a shell script in the guest, print its output and status;
//! * `snapshot DIR`: capture `isol snapshot` in the guest and extract it into DIR (how the
//!   committed lab fixture is made);
//! * `record DIR`: record `isol watch` of CPU 1 in the guest while `isol-lab-guest provoke`
//!   interrupts it, and extract the recording into DIR (the committed trace fixture).
//!
//! `ISOL_LAB_KERNEL=6.1` (or `rt`) boots another of the provisioned kernels
//! (`isol_lab::KERNELS`); the default is 6.12.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use isol_lab::{Boot, Lab, Scenario};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("isol-lab: {e}");
            ExitCode::from(1)
        }
    }
}

fn open_lab() -> Result<Lab, isol_lab::LabError> {
    match std::env::var("ISOL_LAB_KERNEL") {
        Ok(name) => Lab::open_kernel(&name),
        Err(_) => Lab::open(),
    }
}

fn boot_from(args: &[String]) -> Boot {
    let cpus = args
        .iter()
        .position(|a| a == "--cpus")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let mut boot = Boot::isolated(cpus);
    if let Some(i) = args.iter().position(|a| a == "--") {
        boot.isolation = args[i + 1..].join(" ");
    }
    boot
}

fn run(args: &[String]) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let usage =
        "usage: isol-lab shell [--cpus N] [-- CMDLINE] | run SCRIPT [--cpus N] | snapshot DIR | record DIR";
    match args.first().map(String::as_str) {
        Some("shell") => {
            let lab = open_lab()?;
            lab.shell(&boot_from(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Some("run") => {
            let script = args.get(1).ok_or(usage)?;
            let text = std::fs::read_to_string(script).map_err(|e| format!("{script}: {e}"))?;
            let lab = open_lab()?;
            let boot = boot_from(args);
            let run = lab.run(&boot, &[Scenario::new("script", text)])?;
            let r = run.result("script")?;
            print!("{}", r.stdout);
            eprintln!(
                "isol-lab: kernel {}, cmdline {:?}, {:.1} s, exit status {}",
                run.kernel,
                run.cmdline,
                run.elapsed.as_secs_f64(),
                r.status
            );
            Ok(ExitCode::from(r.status.clamp(0, 255) as u8))
        }
        Some("snapshot") => {
            let dir = std::path::PathBuf::from(args.get(1).ok_or(usage)?);
            let lab = open_lab()?;
            let boot = Boot::default();
            let note = format!("lab: QEMU/TCG, 2 vCPUs, {}", boot.cmdline());
            let cmd = format!(
                "isol snapshot -o /tmp/s.tar.gz --note '{note}' >/dev/null && base64 /tmp/s.tar.gz"
            );
            let run = lab.run(&boot, &[Scenario::new("snapshot", cmd)])?;
            let r = run.result("snapshot")?;
            if r.status != 0 {
                return Err(format!("isol snapshot failed in the guest:\n{}", r.stdout).into());
            }
            let archive = dir.with_extension("tar.gz");
            let b64: String = r.stdout.split_whitespace().collect();
            std::fs::write(&archive, decode_base64(&b64)?)?;
            let _ = std::fs::remove_dir_all(&dir);
            let m = isol::snapshot::extract(&archive, &dir, &|| false)?;
            std::fs::remove_file(&archive)?;
            println!(
                "extracted the lab snapshot (kernel {}) into {}",
                m.kernel,
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some("record") => {
            let dir = std::path::PathBuf::from(args.get(1).ok_or(usage)?);
            let lab = open_lab()?;
            let boot = Boot::default();
            let note = format!(
                "lab: QEMU/TCG, {}; SCHED_OTHER resident on CPU 1 and isol-lab-guest provoke",
                boot.cmdline()
            );
            let cmd = format!(
                "isol-lab-guest provoke 1 2500 > /tmp/prov.json &
                 sleep 1
                 isol watch --cpus 1 -d 6 --stack --summary --record /tmp/rec >/tmp/watch.log 2>&1 || cat /tmp/watch.log
                 wait
                 cp /tmp/prov.json /tmp/rec/provoke.json
                 sed -i 's|\"note\": \"\"|\"note\": \"{note}\"|' /tmp/rec/isol-trace.json
                 tar czf /tmp/rec.tgz -C /tmp/rec . && echo BASE64 && base64 /tmp/rec.tgz"
            );
            let run = lab.run(&boot, &[Scenario::new("record", cmd)])?;
            let r = run.result("record")?;
            if r.status != 0 {
                return Err(format!("recording failed in the guest:\n{}", r.stdout).into());
            }
            let b64: String = r
                .stdout
                .split_once("BASE64")
                .ok_or("no recording in the guest's output")?
                .1
                .split_whitespace()
                .collect();
            let archive = dir.with_extension("tgz");
            std::fs::write(&archive, decode_base64(&b64)?)?;
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let ok = std::process::Command::new("tar")
                .arg("xzf")
                .arg(&archive)
                .arg("-C")
                .arg(&dir)
                .status()?
                .success();
            std::fs::remove_file(&archive)?;
            if !ok {
                return Err("tar could not extract the recording".into());
            }
            println!("extracted the lab recording into {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(usage.into()),
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or_else(|| format!("not base64: {:?}", c as char))? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}
