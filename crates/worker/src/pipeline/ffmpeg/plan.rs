//! Planning: which parts of the source become clips. Pure: signals in, plan
//! out, so every rule here is unit-tested without a video.
//!
//! ## Where a clip may start and end
//! Only at a *boundary*, so that no clip starts or ends mid-word:
//! - inside a silence (see [`super::analysis`]): a clip starts at most
//!   [`LEAD`] before the sound resumes and ends at most [`LEAD`] after it
//!   stops, so it opens and closes on a short quiet margin;
//! - at a transcript segment's start or end, when there is a transcript;
//! - at the very start and end of the source;
//! - when the source has no silence at all (music, a noisy room): at the
//!   quietest 100 ms of each second that is quieter than both neighbours;
//!   with no sound at all, at scene cuts and then at whole seconds.
//!
//! ## How a candidate is scored (0 to 1)
//! Every pair of boundaries whose distance fits the request's length (and
//! `duration_ranges`, when given) is a candidate, scored from:
//! - **loudness** (weight 0.35): the mean, over the candidate's seconds, of
//!   each second's percentile rank of loudness within the whole source;
//!   loud passages (laughter, applause, emphasis) rank high;
//! - **peaks** (0.20): the share of its seconds in the source's loudest
//!   tenth;
//! - **scene cuts** (0.15): cuts per 10 s, two or more counting fully: a
//!   visually busy passage;
//! - **speech density** (0.20): with a transcript, words per second (three
//!   counting fully); without, the share of its 100 ms windows that are not
//!   silent;
//! - **keywords** (0.10, transcript only; otherwise its weight goes to
//!   loudness and peaks): hook words ("secret", "mistake", "how", "why",
//!   …), questions and numbers, three counting fully.
//!
//! Of the candidates, the set of at most `max_clips` that do not overlap and
//! have the highest total score is taken (so one long favourite does not
//! crowd out the others asked for), best first: clip 0 is the best. `virality_score` is the
//! score. With a transcript, a clip's `summary` is its most hook-laden
//! sentence and its `tags` its most frequent longer words.

use std::collections::HashMap;

use serde::Serialize;

use super::analysis::{SILENCE_DB, Signals, WINDOW_SECONDS};
use super::transcript::Transcript;

/// The quiet margin kept at a clip's start and end, seconds.
pub const LEAD: f64 = 0.2;

/// What the request asks of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRequest {
    /// Most clips.
    pub max_clips: u32,
    /// Shortest clip, seconds.
    pub min_seconds: f64,
    /// Longest clip, seconds.
    pub max_seconds: f64,
    /// Preferred lengths, seconds, each within the bounds above; empty means
    /// any length between them.
    pub ranges: Vec<(f64, f64)>,
}

impl PlanRequest {
    /// Reads `duration_ranges` such as `"15-30"`, keeping the parts of them
    /// within the bounds; ranges that do not parse or fall outside are
    /// ignored (so a request never fails for its preferences alone).
    pub fn new(max_clips: u32, min: u32, max: u32, ranges: Option<&[String]>) -> Self {
        let (min_seconds, max_seconds) = (f64::from(min), f64::from(max));
        let ranges = ranges
            .unwrap_or_default()
            .iter()
            .filter_map(|r| {
                let (a, b) = r.split_once('-')?;
                let (a, b): (f64, f64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                let (a, b) = (a.max(min_seconds), b.min(max_seconds));
                (a <= b).then_some((a, b))
            })
            .collect();
        PlanRequest {
            max_clips,
            min_seconds,
            max_seconds,
            ranges,
        }
    }

    fn fits(&self, length: f64) -> bool {
        const SLACK: f64 = 1e-6;
        if length + SLACK < self.min_seconds || length - SLACK > self.max_seconds {
            return false;
        }
        self.ranges.is_empty()
            || self
                .ranges
                .iter()
                .any(|(a, b)| length + SLACK >= *a && length - SLACK <= *b)
    }
}

/// The measured parts of one clip's score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScoreParts {
    /// Mean loudness rank, 0 to 1.
    pub loudness: f64,
    /// Share of seconds among the loudest tenth.
    pub peaks: f64,
    /// Scene cut density, 0 to 1.
    pub scene_cuts: f64,
    /// Speech density, 0 to 1.
    pub speech: f64,
    /// Keyword density, 0 to 1 (0 without a transcript).
    pub keywords: f64,
}

/// One planned clip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedClip {
    /// Start in the source, seconds.
    pub start: f64,
    /// End in the source, seconds.
    pub end: f64,
    /// The score, 0 to 1.
    pub score: f64,
    /// What the score is made of.
    pub parts: ScoreParts,
    /// A sentence from the clip (transcript only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Its most frequent words (transcript only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The source is shorter than the shortest clip asked for.
    #[error(
        "the video is {duration:.1} s long, shorter than the shortest clip asked for ({min} s)"
    )]
    TooShort {
        /// The source's length.
        duration: f64,
        /// The shortest clip asked for.
        min: f64,
    },
    /// No stretch between two cut points fits the lengths asked for.
    #[error("no segment between natural cut points fits the clip lengths asked for")]
    NoFit,
}

/// Words that make a hook.
const HOOK_WORDS: &[&str] = &[
    "secret",
    "mistake",
    "mistakes",
    "never",
    "always",
    "best",
    "worst",
    "how",
    "why",
    "what",
    "truth",
    "money",
    "free",
    "wrong",
    "stop",
    "important",
    "amazing",
    "crazy",
    "actually",
    "nobody",
    "everyone",
    "tip",
    "tips",
    "lesson",
    "story",
];

/// Words too common to be a tag.
const STOP_WORDS: &[&str] = &[
    "about", "after", "again", "also", "because", "been", "before", "being", "could", "does",
    "doing", "from", "have", "here", "into", "just", "like", "more", "much", "only", "other",
    "over", "really", "said", "some", "such", "than", "that", "their", "them", "then", "there",
    "these", "they", "thing", "things", "this", "those", "very", "want", "were", "what", "when",
    "where", "which", "while", "will", "with", "would", "your", "yours", "gonna", "know", "think",
    "going", "right", "well", "okay",
];

/// The cut points of a source (see the module docs), sorted.
pub fn boundaries(signals: &Signals, transcript: Option<&Transcript>) -> Vec<f64> {
    let d = signals.duration;
    let mut points = vec![0.0, d];
    for (a, b) in &signals.silences {
        points.push((b - LEAD).max(*a)); // a start: just before the sound resumes
        points.push((a + LEAD).min(*b)); // an end: just after it stops
    }
    if let Some(t) = transcript {
        for s in &t.segments {
            points.push(s.start_ms as f64 / 1000.0);
            points.push(s.end_ms as f64 / 1000.0);
        }
    }
    let natural = points.len() > 2;
    if !natural && signals.has_audio() {
        points.extend(quiet_points(signals));
    } else if !natural {
        points.extend(signals.scene_cuts.iter().copied());
        let whole = d.floor() as u64;
        points.extend((1..=whole).map(|s| s as f64));
    }
    let mut points: Vec<f64> = points
        .into_iter()
        .filter(|p| p.is_finite() && *p >= 0.0 && *p <= d)
        .map(|p| (p * 1000.0).round() / 1000.0)
        .collect();
    points.sort_by(f64::total_cmp);
    points.dedup();
    points
}

/// The quietest 100 ms of each second, where it is quieter than both
/// neighbouring seconds' quietest.
fn quiet_points(signals: &Signals) -> Vec<f64> {
    let per_second = (1.0 / WINDOW_SECONDS).round() as usize;
    let minima: Vec<(usize, f32)> = signals
        .levels
        .chunks(per_second)
        .enumerate()
        .filter_map(|(sec, w)| {
            let (i, level) = w
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, l)| (i, *l))?;
            Some((sec * per_second + i, level))
        })
        .collect();
    (0..minima.len())
        .filter(|&i| {
            let here = minima[i].1;
            let left = i.checked_sub(1).map(|j| minima[j].1);
            let right = minima.get(i + 1).map(|m| m.1);
            left.is_none_or(|l| here <= l) && right.is_none_or(|r| here <= r)
        })
        .map(|i| (minima[i].0 as f64 + 0.5) * WINDOW_SECONDS)
        .collect()
}

/// Per-second measures of the whole source, with prefix sums so that any
/// window's mean is two lookups.
struct Features {
    rank_sum: Vec<f64>,
    peak_sum: Vec<f64>,
    active_sum: Vec<f64>,
    windows_per_second: usize,
}

impl Features {
    fn new(signals: &Signals) -> Features {
        let wps = (1.0 / WINDOW_SECONDS).round() as usize;
        let seconds = signals.duration.ceil().max(1.0) as usize;
        let loud: Vec<f64> = (0..seconds)
            .map(|s| {
                let w = signals
                    .levels
                    .get(s * wps..((s + 1) * wps).min(signals.levels.len()))
                    .unwrap_or_default();
                if w.is_empty() {
                    return f64::from(super::analysis::FLOOR_DB);
                }
                // Mean power of the second, back in dB.
                let power = w
                    .iter()
                    .map(|db| 10f64.powf(f64::from(*db) / 10.0))
                    .sum::<f64>()
                    / w.len() as f64;
                10.0 * power.max(1e-10).log10()
            })
            .collect();
        let mut sorted = loud.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let rank = |v: f64| {
            // Mid-rank of v among all seconds: ties share the middle.
            let below = sorted.partition_point(|x| *x < v) as f64;
            let not_above = sorted.partition_point(|x| *x <= v) as f64;
            if n <= 1.0 {
                0.5
            } else {
                ((below + not_above - 1.0) / 2.0 / (n - 1.0)).clamp(0.0, 1.0)
            }
        };
        let top_tenth = sorted[((n * 0.9).floor() as usize).min(sorted.len() - 1)];
        let audible =
            signals.has_audio() && sorted.last().is_some_and(|m| *m > f64::from(SILENCE_DB));
        let ranks: Vec<f64> = loud
            .iter()
            .map(|v| if audible { rank(*v) } else { 0.0 })
            .collect();
        let peaks: Vec<f64> = loud
            .iter()
            .map(|v| {
                f64::from(u8::from(
                    audible && *v >= top_tenth && *v > f64::from(SILENCE_DB),
                ))
            })
            .collect();
        let active: Vec<f64> = signals
            .levels
            .iter()
            .map(|l| f64::from(u8::from(*l >= SILENCE_DB)))
            .collect();
        Features {
            rank_sum: prefix(&ranks),
            peak_sum: prefix(&peaks),
            active_sum: prefix(&active),
            windows_per_second: wps,
        }
    }

    /// Mean of a per-second measure over `[a, b)` seconds, weighting the
    /// partial seconds at each end by how much of them is inside.
    fn mean(sum: &[f64], a: f64, b: f64) -> f64 {
        let at = |t: f64| {
            let t = t.clamp(0.0, (sum.len() - 1) as f64);
            let i = t.floor() as usize;
            let frac = t - i as f64;
            let next = sum.get(i + 1).copied().unwrap_or(sum[i]);
            sum[i] + (next - sum[i]) * frac
        };
        if b <= a {
            return 0.0;
        }
        ((at(b) - at(a)) / (b - a)).clamp(0.0, 1.0)
    }

    fn active(&self, a: f64, b: f64) -> f64 {
        let wps = self.windows_per_second as f64;
        Self::mean(&self.active_sum, a * wps, b * wps)
    }
}

fn prefix(values: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len() + 1);
    out.push(0.0);
    let mut acc = 0.0;
    for v in values {
        acc += v;
        out.push(acc);
    }
    out
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn hook_hits(text: &str) -> usize {
    let questions = text.matches('?').count();
    let hits = words(text)
        .filter(|w| HOOK_WORDS.contains(&w.as_str()) || w.chars().all(|c| c.is_ascii_digit()))
        .count();
    hits + questions
}

/// Scores the candidate `[a, b)`.
fn score(
    f: &Features,
    signals: &Signals,
    transcript: Option<&Transcript>,
    a: f64,
    b: f64,
) -> (f64, ScoreParts) {
    let loudness = Features::mean(&f.rank_sum, a, b);
    let peaks = Features::mean(&f.peak_sum, a, b);
    let cuts = signals
        .scene_cuts
        .iter()
        .filter(|t| **t > a && **t < b)
        .count() as f64;
    let scene_cuts = (cuts / (b - a) * 10.0 / 2.0).min(1.0);
    let text: Option<String> = transcript.map(|t| {
        t.within((a * 1000.0) as u64, (b * 1000.0) as u64)
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    });
    let (speech, keywords) = match &text {
        Some(text) => {
            let n = words(text).count() as f64;
            (
                (n / (b - a) / 3.0).min(1.0),
                (hook_hits(text) as f64 / 3.0).min(1.0),
            )
        }
        None => (f.active(a, b), 0.0),
    };
    let parts = ScoreParts {
        loudness,
        peaks,
        scene_cuts,
        speech,
        keywords,
    };
    let total = if transcript.is_some() {
        0.35 * loudness + 0.20 * peaks + 0.15 * scene_cuts + 0.20 * speech + 0.10 * keywords
    } else {
        0.40 * loudness + 0.25 * peaks + 0.15 * scene_cuts + 0.20 * speech
    };
    (total.clamp(0.0, 1.0), parts)
}

/// The summary and tags of `[a, b)` from the transcript.
fn describe(transcript: &Transcript, a: f64, b: f64) -> (Option<String>, Vec<String>) {
    let segments: Vec<&str> = transcript
        .within((a * 1000.0) as u64, (b * 1000.0) as u64)
        .map(|s| s.text.as_str())
        .collect();
    let summary = segments
        .iter()
        .enumerate()
        .max_by_key(|(i, s)| (hook_hits(s), std::cmp::Reverse(*i)))
        .map(|(_, s)| shorten(s, 140));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in segments.iter().flat_map(|s| words(s)) {
        if w.chars().count() >= 4
            && !STOP_WORDS.contains(&w.as_str())
            && !w.chars().all(|c| c.is_ascii_digit())
        {
            *counts.entry(w).or_default() += 1;
        }
    }
    let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
    ranked.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    let tags = ranked.into_iter().take(4).map(|(w, _)| w).collect();
    (summary, tags)
}

fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max_chars - 1).collect();
    let cut = cut.rsplit_once(' ').map(|(a, _)| a).unwrap_or(&cut);
    format!("{}…", cut.trim_end_matches([',', ';', ':', ' ']))
}

/// Plans the clips (see the module docs).
pub fn plan(
    signals: &Signals,
    transcript: Option<&Transcript>,
    request: &PlanRequest,
) -> Result<Vec<PlannedClip>, PlanError> {
    if signals.duration + 1e-6 < request.min_seconds {
        return Err(PlanError::TooShort {
            duration: signals.duration,
            min: request.min_seconds,
        });
    }
    let points = boundaries(signals, transcript);
    let features = Features::new(signals);
    let mut candidates: Vec<(f64, f64, f64, ScoreParts)> = Vec::new();
    for (i, &a) in points.iter().enumerate() {
        let lo = points.partition_point(|p| *p < a + request.min_seconds - 1e-6);
        for &b in points[lo.max(i + 1)..]
            .iter()
            .take_while(|b| **b - a <= request.max_seconds + 1e-6)
        {
            if request.fits(b - a) {
                let (s, parts) = score(&features, signals, transcript, a, b);
                candidates.push((a, b, s, parts));
            }
        }
    }
    if candidates.is_empty() {
        return Err(PlanError::NoFit);
    }
    let picked = best_set(&candidates, request.max_clips as usize);
    let mut chosen: Vec<PlannedClip> = picked
        .into_iter()
        .map(|i| {
            let (a, b, s, parts) = candidates[i];
            let (summary, tags) = match transcript {
                Some(t) => describe(t, a, b),
                None => (None, Vec::new()),
            };
            PlannedClip {
                start: a,
                end: b,
                score: (s * 100.0).round() / 100.0,
                parts,
                summary,
                tags,
            }
        })
        .collect();
    // Best first; among equals, the earlier.
    chosen.sort_by(|x, y| {
        y.score
            .total_cmp(&x.score)
            .then(x.start.total_cmp(&y.start))
    });
    Ok(chosen)
}

/// The at most `k` non-overlapping candidates with the highest total score
/// (weighted interval scheduling, by dynamic programming over candidates
/// sorted by end): taking the single best window first could leave no room
/// for the others the request asks for.
fn best_set(candidates: &[(f64, f64, f64, ScoreParts)], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&x, &y| {
        let (cx, cy) = (&candidates[x], &candidates[y]);
        cx.1.total_cmp(&cy.1).then(cx.0.total_cmp(&cy.0))
    });
    let ends: Vec<f64> = order.iter().map(|&i| candidates[i].1).collect();
    // prior[j]: how many candidates (in `order`) end before the j-th starts.
    let prior: Vec<usize> = order
        .iter()
        .map(|&i| ends.partition_point(|e| *e <= candidates[i].0 + 1e-9))
        .collect();
    let n = order.len();
    // best[c][j]: the best total of at most c clips among the first j.
    let mut best = vec![vec![0.0_f64; n + 1]; k + 1];
    let mut took = vec![vec![false; n + 1]; k + 1];
    for c in 1..=k {
        for j in 1..=n {
            let skip = best[c][j - 1];
            let take = best[c - 1][prior[j - 1]] + candidates[order[j - 1]].2;
            if take > skip + 1e-12 {
                best[c][j] = take;
                took[c][j] = true;
            } else {
                best[c][j] = skip;
            }
        }
    }
    let mut picked = Vec::new();
    let (mut c, mut j) = (k, n);
    while c > 0 && j > 0 {
        if took[c][j] {
            picked.push(order[j - 1]);
            j = prior[j - 1];
            c -= 1;
        } else {
            j -= 1;
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::super::analysis::{FLOOR_DB, find_silences};
    use super::super::transcript::Segment;
    use super::*;

    /// A minute of speech-like sound: quiet talk with a 0.6 s pause every
    /// 5 s and loud bursts over 6–9 s and 41–44 s (each between two
    /// pauses).
    fn talk(duration: f64) -> Signals {
        let n = (duration / WINDOW_SECONDS).round() as usize;
        let levels: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f64 * WINDOW_SECONDS + 0.05;
                if t % 5.0 >= 4.4 {
                    FLOOR_DB
                } else if (6.0..9.0).contains(&t) || (41.0..44.0).contains(&t) {
                    -8.0
                } else {
                    -32.0
                }
            })
            .collect();
        Signals {
            duration,
            silences: find_silences(&levels),
            levels,
            scene_cuts: vec![15.0, 30.0, 45.0],
            frames: Vec::new(),
        }
    }

    fn request(n: u32, min: u32, max: u32) -> PlanRequest {
        PlanRequest::new(n, min, max, None)
    }

    #[test]
    fn loud_bursts_fall_inside_the_chosen_clips() {
        let s = talk(60.0);
        let clips = plan(&s, None, &request(2, 10, 20)).unwrap();
        assert_eq!(clips.len(), 2);
        for burst in [(6.0, 9.0), (41.0, 44.0)] {
            assert!(
                clips.iter().any(|c| c.start <= burst.0 && c.end >= burst.1),
                "burst {burst:?} not inside {clips:?}"
            );
        }
        assert!(clips[0].score >= clips[1].score);
    }

    #[test]
    fn every_cut_lands_in_a_silence_and_lengths_fit() {
        let s = talk(60.0);
        let clips = plan(&s, None, &request(5, 5, 15)).unwrap();
        assert!(!clips.is_empty());
        for c in &clips {
            let len = c.end - c.start;
            assert!((5.0 - 1e-6..=15.0 + 1e-6).contains(&len), "{c:?}");
            for t in [c.start, c.end] {
                let quiet = t == 0.0
                    || t == s.duration
                    || s.silences.iter().any(|(a, b)| t >= *a && t <= *b);
                assert!(quiet, "cut at {t} is not in a silence: {c:?}");
            }
        }
        for (i, a) in clips.iter().enumerate() {
            for b in &clips[i + 1..] {
                assert!(a.end <= b.start || b.end <= a.start, "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn the_set_asked_for_fits_even_when_the_single_best_would_crowd_it_out() {
        let parts = ScoreParts {
            loudness: 0.0,
            peaks: 0.0,
            scene_cuts: 0.0,
            speech: 0.0,
            keywords: 0.0,
        };
        // The best window alone overlaps both of two others that fit side
        // by side; asked for two, those two are the better set.
        let candidates = [
            (10.0, 30.0, 0.9, parts),
            (0.0, 15.0, 0.6, parts),
            (15.0, 40.0, 0.6, parts),
        ];
        let mut two = best_set(&candidates, 2);
        two.sort();
        assert_eq!(two, vec![1, 2]);
        assert_eq!(best_set(&candidates, 1), vec![0]);
        assert!(best_set(&candidates, 0).is_empty());
    }

    #[test]
    fn duration_ranges_narrow_the_lengths() {
        let s = talk(60.0);
        let req = PlanRequest::new(3, 5, 60, Some(&["25-35".into(), "bogus".into()]));
        assert_eq!(req.ranges, vec![(25.0, 35.0)]);
        for c in plan(&s, None, &req).unwrap() {
            assert!(
                (25.0 - 1e-6..=35.0 + 1e-6).contains(&(c.end - c.start)),
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_short_source_or_no_fit_is_a_clear_error() {
        let s = talk(8.0);
        assert!(matches!(
            plan(&s, None, &request(1, 15, 30)),
            Err(PlanError::TooShort { .. })
        ));
        // Pauses every 5 s cannot make a clip of exactly 7 s.
        let s = talk(60.0);
        let req = PlanRequest::new(1, 7, 7, None);
        assert!(matches!(plan(&s, None, &req), Err(PlanError::NoFit)));
    }

    #[test]
    fn without_silences_cuts_fall_on_the_quietest_moments() {
        let n = 300;
        // Continuous sound whose level dips once a second, at x.5 s.
        let levels: Vec<f32> = (0..n)
            .map(|i| if i % 10 == 5 { -30.0 } else { -10.0 })
            .collect();
        let s = Signals {
            duration: 30.0,
            silences: find_silences(&levels),
            levels,
            ..Signals::default()
        };
        assert!(s.silences.is_empty());
        let clips = plan(&s, None, &request(1, 5, 10)).unwrap();
        for t in [clips[0].start, clips[0].end] {
            assert!(
                t == 0.0 || t == 30.0 || ((t - 0.05) % 1.0 - 0.5).abs() < 1e-6,
                "{t}"
            );
        }
    }

    #[test]
    fn a_silent_source_still_gets_clips_at_scene_cuts_or_seconds() {
        let s = Signals {
            duration: 40.0,
            scene_cuts: vec![10.0, 20.0, 30.0],
            ..Signals::default()
        };
        let clips = plan(&s, None, &request(2, 10, 10)).unwrap();
        assert_eq!(clips.len(), 2);
        assert!(clips.iter().all(|c| c.score <= 1.0 && c.score >= 0.0));
    }

    #[test]
    fn a_transcript_adds_boundaries_summaries_and_tags() {
        // Even talk, no bursts: the transcript alone makes the difference.
        let mut s = talk(60.0);
        for l in &mut s.levels {
            if *l > -20.0 {
                *l = -32.0;
            }
        }
        s.scene_cuts.clear();
        let t = Transcript {
            segments: vec![
                Segment {
                    start_ms: 20_000,
                    end_ms: 24_000,
                    text: "Pricing pricing strategy matters.".into(),
                },
                Segment {
                    start_ms: 24_000,
                    end_ms: 29_000,
                    text: "Why is the biggest pricing mistake so common?".into(),
                },
            ],
        };
        // At least 9 s: the whole of both sentences, not the second alone.
        let clips = plan(&s, Some(&t), &request(1, 9, 12)).unwrap();
        let c = &clips[0];
        assert!(c.start <= 20.0 && c.end >= 29.0, "{c:?}");
        assert_eq!(
            c.summary.as_deref(),
            Some("Why is the biggest pricing mistake so common?")
        );
        assert_eq!(c.tags[0], "pricing");
        assert!(c.parts.keywords > 0.0);
    }
}
