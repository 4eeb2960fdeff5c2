//! The result protocol: the guest's init frames each scenario's output on the second
//! serial port between sentinel lines carrying its name and exit status, and ends with a
//! last line saying every scenario ran. A missing frame or end line is noticed.

use crate::ScenarioResult;

pub(crate) const BEGIN: &str = "@@ISOL-LAB-BEGIN ";
pub(crate) const END: &str = "@@ISOL-LAB-END ";
pub(crate) const DONE: &str = "@@ISOL-LAB-DONE";
/// The init's first words on the console: after them, userspace (and isol) runs.
pub(crate) const INIT: &str = "@@ISOL-LAB-INIT";
/// Split the result port's text into scenario results; `true` if the guest finished.
pub fn parse_results(raw: &str) -> (Vec<ScenarioResult>, bool) {
    let mut results = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut done = false;
    for line in raw.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(name) = line.strip_prefix(BEGIN) {
            current = Some((name.to_string(), String::new()));
        } else if let Some(rest) = line.strip_prefix(END) {
            let (name, status) = rest.rsplit_once(' ').unwrap_or((rest, "-1"));
            if let Some((n, out)) = current.take() {
                if n == name {
                    results.push(ScenarioResult {
                        name: n,
                        status: status.parse().unwrap_or(-1),
                        stdout: out,
                    });
                }
            }
        } else if line == DONE {
            done = true;
        } else if let Some((_, out)) = current.as_mut() {
            out.push_str(line);
            out.push('\n');
        }
    }
    (results, done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_framed_results() {
        let raw = format!(
            "noise\n{BEGIN}a\nhello\n{{\"x\":1}}\n\n{END}a 0\n{BEGIN}b\n\n{END}b 3\n{DONE}\n"
        );
        let (r, done) = parse_results(&raw);
        assert!(done);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].stdout, "hello\n{\"x\":1}\n\n");
        assert_eq!(r[0].status, 0);
        assert_eq!(r[1].status, 3);
    }

    #[test]
    fn missing_end_or_done_is_noticed() {
        let raw = format!("{BEGIN}a\npartial\n");
        let (r, done) = parse_results(&raw);
        assert!(r.is_empty() && !done);
    }
}
