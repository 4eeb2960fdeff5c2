//! `isol diff A B`: what differs between two machines that matters for isolation, by area,
//! with the checks each difference affects.

use std::path::PathBuf;

use isol::check::{self, Report};
use isol::fleet::diff::{self, Diff, Side};
use isol::kernel::KernelModel;
use isol::SysRoot;

use crate::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// The first machine: an `isol snapshot` archive, a captured directory, or `-` for
    /// this one.
    a: PathBuf,

    /// The second machine, as the first.
    b: PathBuf,

    /// CPUs to judge on both (`2-7`). Default: each machine's own, as `isol check`
    /// chooses them.
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,

    /// Print JSON (schema `isol.diff/v1`) instead of text.
    #[arg(long)]
    json: bool,
}

/// One machine, opened and judged.
struct Opened {
    label: String,
    _root: crate::root::Root,
    model: KernelModel,
    report: Report,
}

fn open(path: &std::path::Path, cpus: Option<&str>) -> Result<Opened, Failure> {
    let label = path.display().to_string();
    let live = path.as_os_str() == "-";
    // A snapshot or a captured tree is untrusted: opened as `--root` opens it.
    let root = crate::root::open(if live { None } else { Some(path) }).map_err(|f| Failure {
        code: f.code,
        message: format!("{label}: {}", f.message.trim_start_matches("--root: ")),
    })?;
    let model = KernelModel::load(&root.sys);
    let target = crate::live::choose_target(&model, cpus, None).map_err(|f| Failure {
        code: f.code,
        message: format!("{label}: {}", f.message),
    })?;
    let report = check::run(&model, &target);
    Ok(Opened {
        label: if live {
            "- (this machine)".into()
        } else {
            label
        },
        _root: root,
        model,
        report,
    })
}

pub fn run(root: &SysRoot, args: Args) -> Result<u8, Failure> {
    if !root.is_live() {
        return Err(Failure::usage(
            "diff takes its two machines as arguments; drop --root",
        ));
    }
    if args.a.as_os_str() == "-" && args.b.as_os_str() == "-" {
        return Err(Failure::usage(
            "diff - -: both sides are this machine; give a snapshot or a directory for one",
        ));
    }
    let a = open(&args.a, args.cpus.as_deref())?;
    let b = open(&args.b, args.cpus.as_deref())?;
    fn side(o: &Opened) -> Side<'_> {
        Side {
            label: o.label.clone(),
            model: &o.model,
            report: &o.report,
        }
    }
    let d = diff::diff(&side(&a), &side(&b));
    if args.json {
        let text = serde_json::to_string_pretty(&d)
            .map_err(|e| Failure::runtime(format!("cannot encode the diff: {e}")))?;
        crate::output::println_json(&text)?;
    } else {
        crate::output::print(&render(&d))?;
    }
    Ok(u8::from(d.differs()))
}

fn side_line(s: &diff::Summary) -> String {
    format!(
        "{} (kernel {}, CPUs {}: {})",
        crate::output::escape(&s.label),
        s.kernel.as_deref().unwrap_or("unknown"),
        s.target,
        s.verdict
    )
}

/// The human diff: the two machines, a table per area, and a count.
pub fn render(d: &Diff) -> String {
    let mut out = format!(
        "isol diff\n  A: {}\n  B: {}\n",
        side_line(&d.a),
        side_line(&d.b)
    );
    if !d.differs() {
        out.push_str("\nnothing that matters for isolation differs");
        if d.other_config_options > 0 {
            out.push_str(&format!(
                " ({} other config options do)",
                d.other_config_options
            ));
        }
        out.push('\n');
        return out;
    }
    let mut areas: Vec<&str> = d.differences.iter().map(|x| x.area).collect();
    areas.dedup();
    for area in areas {
        let mut table = crate::output::area_table();
        table.set_header(vec!["", "A", "B", "affects"]);
        for x in d.differences.iter().filter(|x| x.area == area) {
            table.add_row(vec![
                crate::output::escape(&x.item).into_owned(),
                crate::output::escape(&x.a).into_owned(),
                crate::output::escape(&x.b).into_owned(),
                x.checks.join(", "),
            ]);
        }
        out.push_str(&crate::output::area_section(area, &table));
    }
    out.push_str(&format!(
        "\n{} difference{} that matter for isolation",
        d.differences.len(),
        if d.differences.len() == 1 { "" } else { "s" }
    ));
    if d.other_config_options > 0 {
        out.push_str(&format!(
            "; {} other config options differ",
            d.other_config_options
        ));
    }
    out.push('\n');
    out
}
