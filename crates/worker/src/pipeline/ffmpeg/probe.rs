//! What `ffprobe` says about a source video: its length, its first video
//! and audio streams, and its title.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// What the engine needs to know about a source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Length in seconds.
    pub duration_seconds: f64,
    /// Width and height of the first video stream, after rotation.
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// Whether there is an audio stream to analyse and keep.
    pub has_audio: bool,
    /// The container's title tag, else the file name without extension.
    pub title: String,
}

/// Why a probe's answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// `ffprobe` printed something that is not its JSON.
    #[error("ffprobe's answer could not be read: {0}")]
    Unreadable(String),
    /// The file has no video stream (an audio file, a document, …).
    #[error("the file has no video stream")]
    NoVideo,
    /// The length is unknown or zero.
    #[error("the video's duration is unknown or zero")]
    NoDuration,
}

/// The arguments that make `ffprobe` describe `input` as JSON.
pub fn probe_args(input: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(input.as_os_str().to_owned());
    args
}

#[derive(Debug, Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Debug, Deserialize)]
struct Stream {
    codec_type: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    duration: Option<String>,
    #[serde(default)]
    disposition: Disposition,
    #[serde(default)]
    tags: Tags,
    #[serde(default)]
    side_data_list: Vec<SideData>,
}

#[derive(Debug, Default, Deserialize)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Debug, Default, Deserialize)]
struct Tags {
    title: Option<String>,
    #[serde(alias = "TITLE")]
    title_upper: Option<String>,
    rotate: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SideData {
    rotation: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Format {
    duration: Option<String>,
    #[serde(default)]
    tags: Tags,
}

/// Reads `ffprobe`'s JSON. `file_name` gives the title when the file has
/// none of its own.
pub fn parse_probe(json: &[u8], file_name: &str) -> Result<SourceInfo, ProbeError> {
    let probe: Probe =
        serde_json::from_slice(json).map_err(|e| ProbeError::Unreadable(e.to_string()))?;
    // Cover art is a "video" stream of one picture: never the video.
    let video = probe
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video") && s.disposition.attached_pic == 0)
        .ok_or(ProbeError::NoVideo)?;
    let has_audio = probe
        .streams
        .iter()
        .any(|s| s.codec_type.as_deref() == Some("audio"));
    let seconds = |s: &Option<String>| s.as_deref().and_then(|d| d.parse::<f64>().ok());
    let duration_seconds = probe
        .format
        .as_ref()
        .and_then(|f| seconds(&f.duration))
        .or_else(|| seconds(&video.duration))
        .filter(|d| d.is_finite() && *d > 0.0)
        .ok_or(ProbeError::NoDuration)?;
    let (mut width, mut height) = (video.width.unwrap_or(0), video.height.unwrap_or(0));
    if width == 0 || height == 0 {
        return Err(ProbeError::NoVideo);
    }
    let rotation = video
        .side_data_list
        .iter()
        .find_map(|s| s.rotation)
        .or_else(|| video.tags.rotate.as_deref().and_then(|r| r.parse().ok()))
        .unwrap_or(0.0);
    if (rotation.abs() - 90.0).abs() < 1.0 || (rotation.abs() - 270.0).abs() < 1.0 {
        std::mem::swap(&mut width, &mut height);
    }
    let tag_title = probe.format.as_ref().and_then(|f| {
        f.tags
            .title
            .clone()
            .or_else(|| f.tags.title_upper.clone())
            .filter(|t| !t.trim().is_empty())
    });
    let title = tag_title
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| title_from_file_name(file_name));
    Ok(SourceInfo {
        duration_seconds,
        width,
        height,
        has_audio,
        title,
    })
}

/// "my_talk-final.mp4" → "my_talk-final"; percent-escapes are decoded.
pub fn title_from_file_name(name: &str) -> String {
    let decoded = url::form_urlencoded::parse(format!("x={name}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| name.to_owned());
    let stem = match decoded.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= 5 => stem.to_owned(),
        _ => decoded,
    };
    let stem = stem.trim();
    if stem.is_empty() {
        "Untitled video".to_owned()
    } else {
        stem.to_owned()
    }
}

/// The source's length, as a `Duration`.
pub fn duration(info: &SourceInfo) -> Duration {
    Duration::from_secs_f64(info.duration_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_typical_probe() {
        let json = br#"{"streams":[
            {"codec_type":"video","width":1280,"height":720,"duration":"60.0"},
            {"codec_type":"audio","duration":"60.0"}],
            "format":{"duration":"60.010000","tags":{"title":"Sample talk"}}}"#;
        let info = parse_probe(json, "source.mp4").unwrap();
        assert_eq!(info.title, "Sample talk");
        assert!((info.duration_seconds - 60.01).abs() < 1e-9);
        assert_eq!((info.width, info.height), (1280, 720));
        assert!(info.has_audio);
    }

    #[test]
    fn falls_back_to_the_file_name_and_honours_rotation() {
        let json = br#"{"streams":[{"codec_type":"video","width":1920,"height":1080,
            "side_data_list":[{"rotation":-90}]}],"format":{"duration":"12.5"}}"#;
        let info = parse_probe(json, "my%20trip.MOV").unwrap();
        assert_eq!(info.title, "my trip");
        assert_eq!((info.width, info.height), (1080, 1920));
        assert!(!info.has_audio);
    }

    #[test]
    fn refuses_what_is_not_a_video() {
        let audio_only = br#"{"streams":[{"codec_type":"audio"},
            {"codec_type":"video","width":500,"height":500,"disposition":{"attached_pic":1}}],
            "format":{"duration":"200"}}"#;
        assert_eq!(parse_probe(audio_only, "a.mp3"), Err(ProbeError::NoVideo));
        let no_len = br#"{"streams":[{"codec_type":"video","width":10,"height":10}],"format":{}}"#;
        assert_eq!(parse_probe(no_len, "a.mp4"), Err(ProbeError::NoDuration));
        assert!(matches!(
            parse_probe(b"garbage", "a.mp4"),
            Err(ProbeError::Unreadable(_))
        ));
        assert_eq!(title_from_file_name(""), "Untitled video");
    }
}
