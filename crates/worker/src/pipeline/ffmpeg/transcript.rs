//! Transcripts: what `--transcriber-cmd` wrote, read into timed segments,
//! and the captions cut from them for each clip.
//!
//! The transcriber is an outside command (whisper.cpp, faster-whisper, or
//! anything else). Its command line is split like a shell would (quotes,
//! backslashes) but never run through a shell; `{input}` in any argument
//! becomes the path of a 16 kHz mono WAV of the source's audio, and
//! `{output}` the path it should write. It may write the file itself or a
//! file of that name plus `.json` or `.srt` (whisper.cpp's `-of` appends the
//! extension). Accepted contents:
//!
//! - JSON: an array of `{start, end, text}` in seconds; an object with such
//!   a `segments` array (OpenAI Whisper, faster-whisper); or whisper.cpp's
//!   `{"transcription": [{"offsets": {"from", "to"}, "text"}]}` in
//!   milliseconds;
//! - SRT.

use serde::{Deserialize, Serialize};

/// One timed piece of speech.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Start, milliseconds from the start of the source.
    pub start_ms: u64,
    /// End, milliseconds.
    pub end_ms: u64,
    /// What was said.
    pub text: String,
}

/// A source's transcript, as stored in `transcript.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// Segments in time order.
    pub segments: Vec<Segment>,
}

/// Why a transcriber's output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscriptError {
    /// Neither JSON of a known shape nor SRT.
    #[error("the transcriber's output is neither transcript JSON nor SRT: {0}")]
    Unreadable(String),
}

/// Splits a transcriber command line into its program and arguments with
/// the placeholders replaced.
pub fn command_line(template: &str, input: &str, output: &str) -> Result<Vec<String>, String> {
    let words = shell_words::split(template)
        .map_err(|e| format!("--transcriber-cmd cannot be split into words: {e}"))?;
    if words.is_empty() {
        return Err("--transcriber-cmd is empty".to_owned());
    }
    Ok(words
        .into_iter()
        .map(|w| w.replace("{input}", input).replace("{output}", output))
        .collect())
}

impl Transcript {
    /// Reads a transcriber's output, JSON or SRT.
    pub fn parse(text: &str) -> Result<Transcript, TranscriptError> {
        let trimmed = text.trim_start_matches('\u{feff}').trim();
        let mut segments = if trimmed.starts_with('{') || trimmed.starts_with('[') {
            parse_json(trimmed)?
        } else {
            parse_srt(trimmed)?
        };
        segments.retain(|s| !s.text.trim().is_empty() && s.end_ms >= s.start_ms);
        for s in &mut segments {
            s.text = s.text.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        segments.sort_by_key(|s| s.start_ms);
        Ok(Transcript { segments })
    }

    /// The segments overlapping `[start_ms, end_ms)`.
    pub fn within(&self, start_ms: u64, end_ms: u64) -> impl Iterator<Item = &Segment> {
        self.segments
            .iter()
            .filter(move |s| s.end_ms > start_ms && s.start_ms < end_ms)
    }

    /// Captions for a clip cut at `[start_ms, end_ms)`, as SRT with times
    /// from the clip's start; `None` when nothing is said in it.
    pub fn srt_for(&self, start_ms: u64, end_ms: u64) -> Option<String> {
        let mut out = String::new();
        for (n, s) in self.within(start_ms, end_ms).enumerate() {
            let a = s.start_ms.max(start_ms) - start_ms;
            let b = s.end_ms.min(end_ms) - start_ms;
            out.push_str(&format!(
                "{}\n{} --> {}\n{}\n\n",
                n + 1,
                srt_time(a),
                srt_time(b),
                s.text
            ));
        }
        (!out.is_empty()).then_some(out)
    }
}

fn srt_time(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02},{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

fn seconds_to_ms(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        (s * 1000.0).round() as u64
    } else {
        0
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonShape {
    Plain(Vec<SecondsSegment>),
    Segments { segments: Vec<SecondsSegment> },
    WhisperCpp { transcription: Vec<CppSegment> },
}

#[derive(Deserialize)]
struct SecondsSegment {
    start: f64,
    end: f64,
    text: String,
}

#[derive(Deserialize)]
struct CppSegment {
    offsets: CppOffsets,
    text: String,
}

#[derive(Deserialize)]
struct CppOffsets {
    from: u64,
    to: u64,
}

fn parse_json(text: &str) -> Result<Vec<Segment>, TranscriptError> {
    let shape: JsonShape =
        serde_json::from_str(text).map_err(|e| TranscriptError::Unreadable(e.to_string()))?;
    Ok(match shape {
        JsonShape::Plain(list) | JsonShape::Segments { segments: list } => list
            .into_iter()
            .map(|s| Segment {
                start_ms: seconds_to_ms(s.start),
                end_ms: seconds_to_ms(s.end),
                text: s.text,
            })
            .collect(),
        JsonShape::WhisperCpp { transcription } => transcription
            .into_iter()
            .map(|s| Segment {
                start_ms: s.offsets.from,
                end_ms: s.offsets.to,
                text: s.text,
            })
            .collect(),
    })
}

fn parse_srt_time(t: &str) -> Option<u64> {
    let t = t.trim().replace('.', ",");
    let (hms, ms) = t.split_once(',')?;
    let mut parts = hms.split(':');
    let h: u64 = parts.next()?.trim().parse().ok()?;
    let m: u64 = parts.next()?.trim().parse().ok()?;
    let s: u64 = parts.next()?.trim().parse().ok()?;
    let ms: u64 = ms.trim().get(..3.min(ms.trim().len()))?.parse().ok()?;
    Some(((h * 60 + m) * 60 + s) * 1000 + ms)
}

fn parse_srt(text: &str) -> Result<Vec<Segment>, TranscriptError> {
    let mut out = Vec::new();
    let normalized = text.replace("\r\n", "\n");
    for block in normalized.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut lines = block.lines().map(str::trim).skip_while(|l| l.is_empty());
        let mut first = lines.next().unwrap_or_default();
        if !first.contains("-->") {
            first = lines.next().unwrap_or_default();
        }
        let (a, b) = first.split_once("-->").ok_or_else(|| {
            TranscriptError::Unreadable(format!("no time line in SRT block {block:?}"))
        })?;
        let (Some(start_ms), Some(end_ms)) = (parse_srt_time(a), parse_srt_time(b)) else {
            return Err(TranscriptError::Unreadable(format!(
                "bad SRT time line {first:?}"
            )));
        };
        let text: Vec<&str> = lines.collect();
        out.push(Segment {
            start_ms,
            end_ms,
            text: text.join(" "),
        });
    }
    if out.is_empty() {
        return Err(TranscriptError::Unreadable("no SRT blocks".to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_json_shape() {
        let plain = r#"[{"start": 1.5, "end": 3, "text": " Hello  there "}]"#;
        let whisper = r#"{"language": "en", "segments": [{"id": 0, "start": 1.5, "end": 3.0, "text": "Hello there"}]}"#;
        let cpp = r#"{"transcription": [{"timestamps": {}, "offsets": {"from": 1500, "to": 3000}, "text": "Hello there"}]}"#;
        let want = Transcript {
            segments: vec![Segment {
                start_ms: 1500,
                end_ms: 3000,
                text: "Hello there".into(),
            }],
        };
        for text in [plain, whisper, cpp] {
            assert_eq!(Transcript::parse(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn reads_srt() {
        let srt = "1\r\n00:00:01,500 --> 00:00:03,000\r\nHello\r\nthere\r\n\r\n2\n00:01:02.250 --> 00:01:04,000\nSecond line\n";
        let t = Transcript::parse(srt).unwrap();
        assert_eq!(t.segments.len(), 2);
        assert_eq!(t.segments[0].text, "Hello there");
        assert_eq!(t.segments[1].start_ms, 62_250);
    }

    #[test]
    fn refuses_what_is_neither() {
        assert!(Transcript::parse("just some words").is_err());
        assert!(Transcript::parse(r#"{"words": 1}"#).is_err());
    }

    #[test]
    fn captions_are_cut_to_the_clip() {
        let t = Transcript {
            segments: vec![
                Segment {
                    start_ms: 0,
                    end_ms: 2000,
                    text: "before".into(),
                },
                Segment {
                    start_ms: 9000,
                    end_ms: 12_000,
                    text: "inside".into(),
                },
            ],
        };
        assert_eq!(
            t.srt_for(10_000, 20_000).unwrap(),
            "1\n00:00:00,000 --> 00:00:02,000\ninside\n\n"
        );
        assert!(t.srt_for(3000, 8000).is_none());
    }

    #[test]
    fn command_lines_substitute_paths_without_a_shell() {
        let words = command_line(
            "whisper-cli -m 'models/base en.bin' -f {input} -oj -of {output}",
            "/w/audio.wav",
            "/w/transcript.out",
        )
        .unwrap();
        assert_eq!(
            words,
            [
                "whisper-cli",
                "-m",
                "models/base en.bin",
                "-f",
                "/w/audio.wav",
                "-oj",
                "-of",
                "/w/transcript.out"
            ]
        );
        assert!(command_line("  ", "a", "b").is_err());
        assert!(command_line("broken 'quote", "a", "b").is_err());
    }
}
