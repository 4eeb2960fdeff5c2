//! What a packaged `isol` ships besides the binary, generated from the command-line
//! definition so that it cannot drift: shell completions and manual pages.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::Failure;

/// `isol completions SHELL`: the completion script on standard output.
pub fn completions(shell: clap_complete::Shell) -> Result<u8, Failure> {
    let mut cmd = crate::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "isol", &mut out);
    crate::output::print(&String::from_utf8_lossy(&out))?;
    Ok(0)
}

/// `isol man DIR`: `isol.1`, and `isol-SUBCOMMAND.1` for each subcommand, written into DIR
/// (new or empty, and the caller's). Each page is created `O_EXCL | O_NOFOLLOW` at the
/// directory's descriptor: a file or link planted there is refused, never written through.
pub fn man(dir: &Path) -> Result<u8, Failure> {
    let fail = |what: &str, e: std::io::Error| {
        Failure::runtime(format!(
            "man: cannot write {what} in {}: {e}",
            dir.display()
        ))
    };
    let out = isol::confine::OutputDir::create(dir).map_err(|e| fail("the pages", e))?;
    let cmd = crate::Cli::command();
    let mut pages = vec![("isol".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("isol-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let mut buf = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut buf)
            .map_err(|e| fail(&name, e))?;
        let file = format!("{name}.1");
        out.create_file(&file)
            .and_then(|mut f| f.write_all(&buf))
            .map_err(|e| fail(&file, e))?;
    }
    Ok(0)
}
