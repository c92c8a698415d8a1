//! How both binaries report a failed command: one line on stderr,
//! `error: <what failed>: <why>: <why>`, and exit code 1.
//!
//! The report is the error's context chain, never its `Debug` form, so an
//! expected failure (a refused request, an unreachable database) prints no
//! backtrace even with `RUST_BACKTRACE=1`. Panics, which are bugs, keep
//! theirs.

use std::process::ExitCode;

/// The error and its causes on one line, each separated by `": "`. A cause
/// whose text the line already ends with is left out: many errors repeat
/// their source in their own message, and a reader needs it once.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || line.ends_with(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    line
}

/// Turns a command's result into the process's exit code, printing a
/// failure as `error: …` on stderr.
pub fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The message of a failure report, when `stderr` holds exactly one such
/// report and nothing else (no `Caused by:` list, no backtrace): the check
/// both binaries' tests make of their command-line failures.
pub fn reported_error(stderr: &str) -> Option<&str> {
    let mut lines = stderr.lines().filter(|l| !l.trim().is_empty());
    let only = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    only.strip_prefix("error: ")
}

/// What a finished command reported: its message when it failed with one
/// report as above; otherwise why not, for a test to show. Both binaries'
/// tests check their failures with it.
pub fn failure_message(output: &std::process::Output) -> Result<String, String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        return Err(format!("the command succeeded; stderr: {stderr}"));
    }
    reported_error(&stderr)
        .map(str::to_owned)
        .ok_or_else(|| format!("one `error: …` line expected, got: {stderr}"))
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn causes_are_joined_on_one_line_without_repeats() {
        let e = Err::<(), _>(std::io::Error::other("connection refused"))
            .context("connection refused")
            .context("failed to reach PostgreSQL")
            .unwrap_err();
        assert_eq!(
            one_line(&e),
            "failed to reach PostgreSQL: connection refused"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&e), "outer: inner");
    }

    #[test]
    fn a_report_is_one_error_line_and_nothing_else() {
        assert_eq!(reported_error("error: a: b\n"), Some("a: b"));
        assert_eq!(reported_error("Error: a\n\nCaused by:\n    b\n"), None);
        assert_eq!(
            reported_error("error: a\nStack backtrace:\n   0: x\n"),
            None
        );
        assert_eq!(reported_error(""), None);
    }
}
