//! Running `ffmpeg`, `ffprobe` and the other media tools as child processes.
//!
//! Every tool runs with a time limit, is killed if the job's future is
//! dropped (`kill_on_drop`: a cancelled or shut-down job leaves no process
//! behind), has its standard input closed, and keeps only the tail of its
//! standard error, which is what a failure reports. `ffmpeg` runs with
//! `-progress pipe:1 -nostats`, so its standard output is a stream of
//! `key=value` lines; [`progress_time`] reads the position out of them.
//!
//! A [`ToolRunner`] can record every command it ran (program, arguments,
//! working directory, wall time), so that the benchmark can run the same
//! commands bare and measure what the engine adds around them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, BufReader};
use tokio::process::Command;

/// How much of a tool's standard error a failure keeps.
const STDERR_TAIL_BYTES: usize = 2048;

/// Why a tool did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program could not be started (not installed, not executable).
    #[error("could not run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// It ran past its time limit and was killed.
    #[error("{program} did not finish within {} s", limit.as_secs())]
    TimedOut {
        /// The program.
        program: String,
        /// The limit it ran into.
        limit: Duration,
    },
    /// It exited unsuccessfully, or was killed by a signal.
    #[error("{program} {}{}", describe_status(status), stderr_suffix(stderr))]
    Failed {
        /// The program.
        program: String,
        /// How it ended.
        status: ExitStatus,
        /// The last lines it wrote to standard error.
        stderr: String,
    },
}

fn describe_status(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(9)) => "was killed (signal 9)".to_owned(),
        (None, Some(sig)) => format!("was stopped by signal {sig}"),
        (None, None) => "ended abnormally".to_owned(),
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    match last {
        Some(line) => format!(": {}", line.trim()),
        None => String::new(),
    }
}

/// One command as it was run, for the benchmark's bare re-run.
#[derive(Debug, Clone)]
pub struct RecordedCommand {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// How long it took, as the engine saw it.
    pub took: Duration,
}

/// Runs tools; optionally records what it ran.
#[derive(Debug, Clone, Default)]
pub struct ToolRunner {
    record: Option<Arc<Mutex<Vec<RecordedCommand>>>>,
}

/// A command to run.
#[derive(Debug, Clone)]
pub struct ToolCommand {
    program: PathBuf,
    args: Vec<OsString>,
    cwd: PathBuf,
    limit: Duration,
}

impl ToolCommand {
    /// `program` run in `cwd`, with a time limit.
    pub fn new(program: impl Into<PathBuf>, cwd: &Path, limit: Duration) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.to_path_buf(),
            limit,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    fn name(&self) -> String {
        self.program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.program.display().to_string())
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

impl ToolRunner {
    /// A runner that records every command it runs into `log`.
    pub fn recording(log: Arc<Mutex<Vec<RecordedCommand>>>) -> Self {
        Self { record: Some(log) }
    }

    /// Runs `cmd` to the end and returns its standard output.
    pub async fn output(&self, cmd: &ToolCommand) -> Result<Vec<u8>, ToolError> {
        let mut stdout = Vec::new();
        self.run(cmd, |chunk| stdout.extend_from_slice(chunk))
            .await?;
        Ok(stdout)
    }

    /// Runs an `ffmpeg` command that writes `-progress pipe:1`, calling
    /// `on_progress` with each position it reports.
    pub async fn with_progress(
        &self,
        cmd: &ToolCommand,
        mut on_progress: impl FnMut(Duration),
    ) -> Result<(), ToolError> {
        self.with_lines(cmd, |line| {
            if let Some(t) = progress_time(line) {
                on_progress(t);
            }
        })
        .await
    }

    /// Runs `cmd`, calling `on_line` with each line of its standard output.
    pub async fn with_lines(
        &self,
        cmd: &ToolCommand,
        mut on_line: impl FnMut(&str),
    ) -> Result<(), ToolError> {
        let mut pending = Vec::new();
        self.run(cmd, |chunk| {
            pending.extend_from_slice(chunk);
            while let Some(nl) = pending.iter().position(|b| *b == b'\n' || *b == b'\r') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                on_line(String::from_utf8_lossy(&line).trim_end());
            }
        })
        .await
    }

    /// Runs `cmd`, handing its standard output to `on_stdout` as it comes,
    /// within the command's time limit.
    async fn run(
        &self,
        cmd: &ToolCommand,
        mut on_stdout: impl FnMut(&[u8]),
    ) -> Result<(), ToolError> {
        let name = cmd.name();
        let began = Instant::now();
        let mut child = cmd.command().spawn().map_err(|source| ToolError::Spawn {
            program: name.clone(),
            source,
        })?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_task = tokio::spawn(read_tail(stderr));
        let work = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdout.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => on_stdout(&buf[..n]),
                }
            }
            child.wait().await
        };
        let finished = tokio::time::timeout(cmd.limit, work).await;
        let status = match finished {
            Ok(Ok(status)) => status,
            Ok(Err(source)) => {
                return Err(ToolError::Spawn {
                    program: name,
                    source,
                });
            }
            Err(_) => {
                // Dropping `work` dropped nothing of the child; kill it here.
                let _ = child.start_kill();
                let _ = child.wait().await;
                stderr_task.abort();
                return Err(ToolError::TimedOut {
                    program: name,
                    limit: cmd.limit,
                });
            }
        };
        let stderr = stderr_task.await.unwrap_or_default();
        if let Some(log) = &self.record {
            log.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(RecordedCommand {
                    program: cmd.program.clone(),
                    args: cmd.args.clone(),
                    cwd: cmd.cwd.clone(),
                    took: began.elapsed(),
                });
        }
        if status.success() {
            Ok(())
        } else {
            Err(ToolError::Failed {
                program: name,
                status,
                stderr,
            })
        }
    }
}

/// Reads a stream to its end, keeping the last [`STDERR_TAIL_BYTES`].
async fn read_tail(stream: impl AsyncRead + Unpin) -> String {
    let mut reader = BufReader::new(stream);
    let mut tail = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                tail.push_str(&line);
                if tail.len() > STDERR_TAIL_BYTES {
                    let cut = tail.len() - STDERR_TAIL_BYTES;
                    let cut = (cut..tail.len())
                        .find(|i| tail.is_char_boundary(*i))
                        .unwrap_or(tail.len());
                    tail.drain(..cut);
                }
            }
        }
    }
    tail
}

/// The position in one line of `ffmpeg -progress` output: `out_time_us`
/// (and `out_time_ms`, which despite its name is also in microseconds);
/// `N/A` and other keys give `None`.
pub fn progress_time(line: &str) -> Option<Duration> {
    let (key, value) = line.trim().split_once('=')?;
    if key != "out_time_us" && key != "out_time_ms" {
        return None;
    }
    let us: i64 = value.trim().parse().ok()?;
    Some(Duration::from_micros(u64::try_from(us).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_progress_positions() {
        assert_eq!(
            progress_time("out_time_us=1500000\n"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            progress_time("out_time_ms=2000000"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(progress_time("out_time_us=N/A"), None);
        assert_eq!(progress_time("out_time_us=-5"), None);
        assert_eq!(progress_time("frame=10"), None);
        assert_eq!(progress_time("progress=end"), None);
    }

    #[test]
    fn failures_name_the_program_and_the_last_error_line() {
        use std::os::unix::process::ExitStatusExt as _;
        let e = ToolError::Failed {
            program: "ffmpeg".into(),
            status: ExitStatus::from_raw(1 << 8),
            stderr: "first\nsource.mp4: Invalid data found when processing input\n\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "ffmpeg exited with status 1: source.mp4: Invalid data found when processing input"
        );
        let killed = ToolError::Failed {
            program: "ffmpeg".into(),
            status: ExitStatus::from_raw(9),
            stderr: String::new(),
        };
        assert_eq!(killed.to_string(), "ffmpeg was killed (signal 9)");
    }

    #[tokio::test]
    async fn a_tool_past_its_limit_is_killed() {
        let dir = std::env::temp_dir();
        let cmd = ToolCommand::new("sleep", &dir, Duration::from_millis(200)).arg("30");
        let began = Instant::now();
        let err = ToolRunner::default().output(&cmd).await.unwrap_err();
        assert!(matches!(err, ToolError::TimedOut { .. }), "{err}");
        assert!(began.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let dir = std::env::temp_dir();
        let cmd = ToolCommand::new("no-such-tool-here", &dir, Duration::from_secs(5));
        let err = ToolRunner::default().output(&cmd).await.unwrap_err();
        assert!(matches!(err, ToolError::Spawn { .. }), "{err}");
    }
}
