//! What a packaged `isol` ships besides the binary, generated from the command-line
//! definition so that it cannot drift: shell completions and manual pages.

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

/// `isol man DIR`: `isol.1`, and `isol-SUBCOMMAND.1` for each subcommand, written into DIR.
pub fn man(dir: &Path) -> Result<u8, Failure> {
    let fail = |what: &str, e: std::io::Error| {
        Failure::runtime(format!(
            "man: cannot write {what} in {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("the directory", e))?;
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
        std::fs::write(dir.join(format!("{name}.1")), buf).map_err(|e| fail(&name, e))?;
    }
    Ok(0)
}
