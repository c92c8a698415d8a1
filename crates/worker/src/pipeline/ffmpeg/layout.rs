//! Layout detection: what kind of picture a clip is, measured on the
//! analysis pass's small grey frames (64x36, two a second). No model: two
//! statistics and documented thresholds.
//!
//! - **motion**: the mean absolute difference between consecutive frames,
//!   0 to 1 (pairs across a scene cut, whose difference is above
//!   [`CUT_DIFF`], are left out: a cut is not motion);
//! - **detail**: the share of pixels whose horizontal neighbour differs by
//!   more than [`EDGE_STEP`] grey levels: text, code and UI are full of
//!   such sharp steps, faces and rooms are not.
//!
//! | layout | rule | framing when rendered vertical |
//! |---|---|---|
//! | `screen_share` | motion < 0.02 and detail ≥ 0.12: a still, detailed picture (slides, code, an app) | the whole frame, fitted, over a blurred copy of itself, so nothing is cropped away |
//! | `b_roll` | motion ≥ 0.10: footage moving throughout | the centre, cropped to fill |
//! | `talking_head` | anything else: a mostly still scene with some movement, such as a person speaking | the centre, cropped to fill |

use super::analysis::{FRAME_HEIGHT, FRAME_RATE, FRAME_WIDTH};

/// A frame difference above this (0 to 1) is a scene cut, not motion.
pub const CUT_DIFF: f64 = 0.15;
/// A horizontal step of more than this many grey levels is an edge.
pub const EDGE_STEP: u8 = 24;
const STILL_MOTION: f64 = 0.02;
const BUSY_MOTION: f64 = 0.10;
const DETAILED: f64 = 0.12;

/// The framing a clip gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// A person speaking: cropped to fill.
    TalkingHead,
    /// Slides, code, an app: fitted over a blurred background.
    ScreenShare,
    /// Moving footage: cropped to fill.
    BRoll,
}

impl Layout {
    /// As `layout_type` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::TalkingHead => "talking_head",
            Layout::ScreenShare => "screen_share",
            Layout::BRoll => "b_roll",
        }
    }
}

/// The two statistics of a stretch of frames.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PictureStats {
    /// Mean frame-to-frame change, 0 to 1.
    pub motion: f64,
    /// Share of edge pixels, 0 to 1.
    pub detail: f64,
}

/// Measures the frames of `[start, end)` seconds.
pub fn measure(frames: &[Vec<u8>], start: f64, end: f64) -> PictureStats {
    let rate = f64::from(FRAME_RATE);
    let a = ((start * rate).floor().max(0.0) as usize).min(frames.len());
    let b = ((end * rate).ceil().max(0.0) as usize).clamp(a, frames.len());
    let window = &frames[a..b];
    let diffs: Vec<f64> = window
        .windows(2)
        .map(|p| mean_abs_diff(&p[0], &p[1]))
        .filter(|d| *d <= CUT_DIFF)
        .collect();
    let motion = if diffs.is_empty() {
        0.0
    } else {
        diffs.iter().sum::<f64>() / diffs.len() as f64
    };
    let detail = if window.is_empty() {
        0.0
    } else {
        window.iter().map(|f| edge_share(f)).sum::<f64>() / window.len() as f64
    };
    PictureStats { motion, detail }
}

/// The layout the statistics call for (see the module docs).
pub fn classify(stats: PictureStats) -> Layout {
    if stats.motion < STILL_MOTION && stats.detail >= DETAILED {
        Layout::ScreenShare
    } else if stats.motion >= BUSY_MOTION {
        Layout::BRoll
    } else {
        Layout::TalkingHead
    }
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    let total: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / (a.len().max(1) as f64 * 255.0)
}

fn edge_share(frame: &[u8]) -> f64 {
    let mut edges = 0usize;
    let mut total = 0usize;
    for row in frame.chunks_exact(FRAME_WIDTH).take(FRAME_HEIGHT) {
        for pair in row.windows(2) {
            total += 1;
            if pair[0].abs_diff(pair[1]) > EDGE_STEP {
                edges += 1;
            }
        }
    }
    edges as f64 / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = FRAME_WIDTH * FRAME_HEIGHT;

    /// Black text-like stripes on white: detailed and still.
    fn slide() -> Vec<u8> {
        (0..N)
            .map(|i| if (i % FRAME_WIDTH) % 4 < 2 { 0 } else { 255 })
            .collect()
    }

    /// A smooth gradient with a blob at `x`: few edges.
    fn scene(x: usize) -> Vec<u8> {
        (0..N)
            .map(|i| {
                let (col, row) = (i % FRAME_WIDTH, i / FRAME_WIDTH);
                let blob = col.abs_diff(x) < 8 && row.abs_diff(18) < 10;
                if blob { 200 } else { (60 + col) as u8 }
            })
            .collect()
    }

    #[test]
    fn still_detailed_frames_are_a_screen_share() {
        let frames = vec![slide(); 10];
        let s = measure(&frames, 0.0, 5.0);
        assert!(s.motion < 1e-9 && s.detail > 0.4, "{s:?}");
        assert_eq!(classify(s), Layout::ScreenShare);
    }

    #[test]
    fn a_slowly_moving_subject_is_a_talking_head_and_fast_motion_b_roll() {
        let slow: Vec<Vec<u8>> = (0..10).map(|i| scene(28 + i % 3)).collect();
        let s = measure(&slow, 0.0, 5.0);
        assert_eq!(classify(s), Layout::TalkingHead, "{s:?}");
        let fast: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                let mut f = scene(0);
                // Brightness flickers: everything changes each frame.
                for p in &mut f {
                    *p += (i % 2 * 30) as u8;
                }
                f
            })
            .collect();
        let s = measure(&fast, 0.0, 5.0);
        assert_eq!(classify(s), Layout::BRoll, "{s:?}");
    }

    #[test]
    fn a_scene_cut_is_not_motion() {
        let mut frames = vec![slide(); 5];
        frames.extend(vec![scene(10); 5]);
        let s = measure(&frames, 0.0, 5.0);
        assert!(s.motion < 1e-9, "{s:?}");
        // Out-of-range windows measure nothing rather than panic.
        assert_eq!(measure(&frames, 50.0, 60.0).detail, 0.0);
    }
}
