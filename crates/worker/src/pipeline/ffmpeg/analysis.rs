//! One decoding pass over the source that yields every signal the planner
//! and the layout detector use:
//!
//! - **loudness**: the audio, downmixed to mono at 8 kHz, as raw samples;
//!   this module turns them into the RMS level of each 100 ms window in dBFS.
//!   Silences are runs of windows below [`SILENCE_DB`] lasting at least
//!   [`MIN_SILENCE`]: the places a cut may fall without cutting a word.
//! - **scene cuts**: `scdet` on a 160-pixel-wide copy of the picture, whose
//!   cut times `metadata=print` writes to a file.
//! - **small frames**: two frames a second, 64x36 grey, raw; the layout
//!   detector measures motion and edges on them.
//!
//! All three come from one `ffmpeg` run (one decode of the source), written
//! to files in the job's work directory, with the run's position reported
//! through `-progress`.

use std::ffi::OsString;

/// Sample rate of the analysed audio.
pub const AUDIO_RATE: u32 = 8_000;
/// Length of one loudness window, in seconds.
pub const WINDOW_SECONDS: f64 = 0.1;
/// Samples in one loudness window.
const WINDOW_SAMPLES: usize = 800;
/// Below this level a window counts as silent. Speech and music sit well
/// above it; room tone and pauses below.
pub const SILENCE_DB: f32 = -40.0;
/// A silence shorter than this is a gap between syllables, not a pause.
pub const MIN_SILENCE: f64 = 0.3;
/// The level given to digital silence (and to a source with no audio).
pub const FLOOR_DB: f32 = -100.0;
/// Small frames per second of source.
pub const FRAME_RATE: u32 = 2;
/// Small frame width.
pub const FRAME_WIDTH: usize = 64;
/// Small frame height.
pub const FRAME_HEIGHT: usize = 36;
/// scdet's threshold (0 to 100): lower finds more, softer cuts.
const SCENE_THRESHOLD: u32 = 10;

/// File names, inside the work directory.
pub const AUDIO_FILE: &str = "analysis-audio.pcm";
/// See [`AUDIO_FILE`].
pub const FRAMES_FILE: &str = "analysis-frames.gray";
/// See [`AUDIO_FILE`].
pub const SCENES_FILE: &str = "analysis-scenes.txt";

/// The `ffmpeg` arguments of the analysis pass over `input` (a path
/// relative to the work directory, where the command runs).
pub fn analysis_args(input: &str, has_audio: bool) -> Vec<OsString> {
    let graph = format!(
        "[0:v:0]split=2[a][b];\
         [a]fps={FRAME_RATE},scale={FRAME_WIDTH}:{FRAME_HEIGHT}:flags=area,format=gray[frames];\
         [b]scale=160:-2,scdet=threshold={SCENE_THRESHOLD}:sc_pass=1,\
         metadata=mode=print:file={SCENES_FILE}[cuts]"
    );
    let mut args: Vec<OsString> = Vec::new();
    for a in [
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "error",
        "-progress",
        "pipe:1",
        "-i",
        input,
        "-filter_complex",
        graph.as_str(),
        "-map",
        "[frames]",
        "-f",
        "rawvideo",
        "-y",
        FRAMES_FILE,
        "-map",
        "[cuts]",
        "-f",
        "null",
        "-",
    ] {
        args.push(a.into());
    }
    if has_audio {
        let rate = AUDIO_RATE.to_string();
        for a in [
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-ar",
            rate.as_str(),
            "-f",
            "s16le",
            "-y",
            AUDIO_FILE,
        ] {
            args.push(a.into());
        }
    }
    args
}

/// Every signal of one source.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// The source's length, seconds.
    pub duration: f64,
    /// Level of each 100 ms window, dBFS; empty without audio.
    pub levels: Vec<f32>,
    /// Silences, as `(start, end)` seconds, in order.
    pub silences: Vec<(f64, f64)>,
    /// Scene cut times, seconds, in order.
    pub scene_cuts: Vec<f64>,
    /// Small grey frames, [`FRAME_RATE`] a second.
    pub frames: Vec<Vec<u8>>,
}

impl Signals {
    /// Assembles the signals from the analysis pass's three files.
    pub fn from_outputs(duration: f64, pcm: &[u8], frames: &[u8], scenes: &str) -> Signals {
        let levels = window_levels(pcm);
        let silences = find_silences(&levels);
        Signals {
            duration,
            silences,
            levels,
            scene_cuts: parse_scene_cuts(scenes),
            frames: frames
                .chunks_exact(FRAME_WIDTH * FRAME_HEIGHT)
                .map(<[u8]>::to_vec)
                .collect(),
        }
    }

    /// Whether the source had sound to measure.
    pub fn has_audio(&self) -> bool {
        !self.levels.is_empty()
    }

    /// The level of the 100 ms window holding `t`.
    pub fn level_at(&self, t: f64) -> f32 {
        let i = (t / WINDOW_SECONDS).floor();
        if i < 0.0 {
            return FLOOR_DB;
        }
        self.levels.get(i as usize).copied().unwrap_or(FLOOR_DB)
    }
}

/// RMS level in dBFS of each 100 ms window of signed 16-bit little-endian
/// mono samples.
pub fn window_levels(pcm: &[u8]) -> Vec<f32> {
    let samples: Vec<f64> = pcm
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    samples
        .chunks(WINDOW_SAMPLES)
        .map(|w| {
            let mean_square = w.iter().map(|s| s * s).sum::<f64>() / w.len() as f64;
            if mean_square <= 1e-10 {
                FLOOR_DB
            } else {
                ((10.0 * mean_square.log10()) as f32).max(FLOOR_DB)
            }
        })
        .collect()
}

/// Runs of silent windows lasting at least [`MIN_SILENCE`].
pub fn find_silences(levels: &[f32]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, level) in levels.iter().chain(std::iter::once(&0.0)).enumerate() {
        match (start, *level < SILENCE_DB) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                let (a, b) = (s as f64 * WINDOW_SECONDS, i as f64 * WINDOW_SECONDS);
                if b - a >= MIN_SILENCE - 1e-9 {
                    out.push((round_ms(a), round_ms(b)));
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn round_ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

/// The cut times in `metadata=print` output: its `lavfi.scd.time=` lines.
pub fn parse_scene_cuts(text: &str) -> Vec<f64> {
    let mut cuts: Vec<f64> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("lavfi.scd.time="))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t >= 0.0)
        .collect();
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(seconds: f64, amplitude: f64) -> Vec<u8> {
        let n = (seconds * f64::from(AUDIO_RATE)) as usize;
        (0..n)
            .flat_map(|i| {
                let t = i as f64 / f64::from(AUDIO_RATE);
                let s = amplitude * (2.0 * std::f64::consts::PI * 220.0 * t).sin();
                ((s * 32767.0) as i16).to_le_bytes()
            })
            .collect()
    }

    #[test]
    fn levels_and_silences_follow_the_sound() {
        let mut audio = pcm(1.0, 0.5);
        audio.extend(pcm(0.5, 0.0));
        audio.extend(pcm(1.0, 0.05));
        audio.extend(pcm(0.2, 0.0)); // too short to be a pause
        audio.extend(pcm(0.3, 0.5));
        let levels = window_levels(&audio);
        assert_eq!(levels.len(), 30);
        // A sine of amplitude 0.5 has an RMS of 0.354: -9 dBFS.
        assert!((levels[0] + 9.03).abs() < 0.1, "{}", levels[0]);
        assert_eq!(levels[12], FLOOR_DB);
        assert!((levels[20] + 29.03).abs() < 0.1, "{}", levels[20]);
        assert_eq!(find_silences(&levels), vec![(1.0, 1.5)]);
    }

    #[test]
    fn a_silence_at_the_end_is_closed() {
        let levels = [-10.0, -90.0, -90.0, -90.0, -90.0];
        assert_eq!(find_silences(&levels), vec![(0.1, 0.5)]);
    }

    #[test]
    fn reads_scene_cut_times() {
        let text = "frame:0    pts:230400  pts_time:15\nlavfi.scd.mafd=25.685\n\
                    lavfi.scd.score=24.935\nlavfi.scd.time=15\nframe:1 pts:1 pts_time:30\n\
                    lavfi.scd.time=30.5\nlavfi.scd.time=bogus\n";
        assert_eq!(parse_scene_cuts(text), vec![15.0, 30.5]);
    }

    #[test]
    fn the_pass_maps_audio_only_when_there_is_some() {
        let with = analysis_args("source.mp4", true);
        let without = analysis_args("source.mp4", false);
        assert!(with.iter().any(|a| a == AUDIO_FILE));
        assert!(!without.iter().any(|a| a == AUDIO_FILE));
    }
}
