//! Rendering: the `ffmpeg` command line that cuts one clip out of the source
//! and frames it for the target platform, and the one that takes its
//! poster frame.
//!
//! - Size: `tiktok`, `instagram_reels`, `youtube_shorts` (and anything
//!   unknown) get 1080x1920; `youtube` gets 1920x1080.
//! - Framing (see [`super::layout`]): a source already of the target's
//!   shape is only scaled; otherwise a `screen_share` is fitted whole over a
//!   blurred, zoomed copy of itself (cropping would cut the screen), and any
//!   other layout is cropped from the centre to fill the frame.
//! - Captions: when the request asks for them and the transcript has speech
//!   in the clip, they are burned in (`subtitles` filter, libass) from an
//!   SRT written for the clip, bottom centre, white with a dark outline.
//! - Encoding: H.264 (libx264, `yuv420p`, CRF 23) and AAC 128 kb/s stereo
//!   in MP4 with `+faststart`, so a browser starts playing before the whole
//!   file arrives. The x264 preset is `--x264-preset` (`veryfast` by
//!   default; see the README for the measured trade-off).

use std::ffi::OsString;

use super::layout::Layout;

/// Frame size of a platform's clips.
pub fn frame_size(platform: &str) -> (u32, u32) {
    match platform {
        "youtube" => (1920, 1080),
        _ => (1080, 1920),
    }
}

/// Everything one render needs.
#[derive(Debug, Clone)]
pub struct RenderSpec<'a> {
    /// Source path, relative to the work directory.
    pub input: &'a str,
    /// Source size.
    pub source_size: (u32, u32),
    /// Whether the source has sound.
    pub has_audio: bool,
    /// Start in the source, seconds.
    pub start: f64,
    /// End in the source, seconds.
    pub end: f64,
    /// Output size.
    pub size: (u32, u32),
    /// Framing.
    pub layout: Layout,
    /// The clip's SRT file, relative to the work directory, to burn in.
    pub captions: Option<&'a str>,
    /// The x264 preset.
    pub preset: &'a str,
    /// Output path, relative to the work directory.
    pub output: &'a str,
}

/// The filter graph that frames the picture, ending in the label `[v]`.
pub fn filter_graph(spec: &RenderSpec<'_>) -> String {
    let (w, h) = spec.size;
    let (sw, sh) = spec.source_size;
    let same_shape = {
        let target = f64::from(w) / f64::from(h);
        let source = f64::from(sw) / f64::from(sh.max(1));
        (target - source).abs() / target < 0.02
    };
    let framed = if same_shape {
        format!("[0:v:0]scale={w}:{h},setsar=1[framed]")
    } else if spec.layout == Layout::ScreenShare {
        // The background is blurred at a quarter of the size: the same look
        // for a sixteenth of the work.
        let (bw, bh) = (w / 4, h / 4);
        format!(
            "[0:v:0]split=2[bg][fg];\
             [bg]scale={bw}:{bh}:force_original_aspect_ratio=increase,crop={bw}:{bh},\
             boxblur=8:2,scale={w}:{h},setsar=1[blurred];\
             [fg]scale={w}:{h}:force_original_aspect_ratio=decrease[front];\
             [blurred][front]overlay=(W-w)/2:(H-h)/2,setsar=1[framed]"
        )
    } else {
        format!(
            "[0:v:0]scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1[framed]"
        )
    };
    match spec.captions {
        // libass scales the style from a 288-line script to the frame.
        Some(srt) => format!(
            "{framed};[framed]subtitles=filename={srt}:force_style='FontName=DejaVu Sans,\
             Fontsize=11,Bold=1,PrimaryColour=&H00FFFFFF,OutlineColour=&H00000000,\
             BorderStyle=1,Outline=2,Shadow=0,Alignment=2,MarginV=40'[v]"
        ),
        None => format!("{framed};[framed]null[v]"),
    }
}

/// The `ffmpeg` arguments that render one clip.
pub fn render_args(spec: &RenderSpec<'_>) -> Vec<OsString> {
    let start = format!("{:.3}", spec.start);
    let length = format!("{:.3}", (spec.end - spec.start).max(0.0));
    let graph = filter_graph(spec);
    let mut args: Vec<String> = [
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "error",
        "-progress",
        "pipe:1",
        "-ss",
        start.as_str(),
        "-t",
        length.as_str(),
        "-i",
        spec.input,
        "-filter_complex",
        graph.as_str(),
        "-map",
        "[v]",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if spec.has_audio {
        args.extend(
            [
                "-map", "0:a:0", "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "48000",
            ]
            .map(str::to_owned),
        );
    }
    args.extend(
        [
            "-c:v",
            "libx264",
            "-preset",
            spec.preset,
            "-crf",
            "23",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            "-y",
            spec.output,
        ]
        .map(str::to_owned),
    );
    args.into_iter().map(OsString::from).collect()
}

/// The `ffmpeg` arguments that take a clip's poster: one frame, a second in
/// (or halfway through a shorter clip), at half size, as JPEG.
pub fn poster_args(clip: &str, clip_seconds: f64, poster: &str) -> Vec<OsString> {
    let at = format!("{:.3}", (clip_seconds / 2.0).min(1.0));
    [
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-ss",
        at.as_str(),
        "-i",
        clip,
        "-frames:v",
        "1",
        "-vf",
        "scale=iw/2:-2",
        "-q:v",
        "4",
        "-y",
        poster,
    ]
    .iter()
    .map(OsString::from)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layout: Layout, source: (u32, u32), size: (u32, u32)) -> RenderSpec<'static> {
        RenderSpec {
            input: "source.mp4",
            source_size: source,
            has_audio: true,
            start: 12.3456,
            end: 30.0,
            size,
            layout,
            captions: None,
            preset: "veryfast",
            output: "clip_00.mp4",
        }
    }

    #[test]
    fn platforms_have_their_sizes() {
        assert_eq!(frame_size("tiktok"), (1080, 1920));
        assert_eq!(frame_size("instagram_reels"), (1080, 1920));
        assert_eq!(frame_size("youtube_shorts"), (1080, 1920));
        assert_eq!(frame_size("youtube"), (1920, 1080));
        assert_eq!(frame_size("something_new"), (1080, 1920));
    }

    #[test]
    fn framing_follows_the_layout_and_the_shape() {
        let crop = filter_graph(&spec(Layout::TalkingHead, (1280, 720), (1080, 1920)));
        assert!(
            crop.contains("force_original_aspect_ratio=increase,crop=1080:1920"),
            "{crop}"
        );
        let fit = filter_graph(&spec(Layout::ScreenShare, (1280, 720), (1080, 1920)));
        assert!(fit.contains("boxblur") && fit.contains("overlay"), "{fit}");
        let same = filter_graph(&spec(Layout::ScreenShare, (1280, 720), (1920, 1080)));
        assert!(same.starts_with("[0:v:0]scale=1920:1080,"), "{same}");
        assert!(same.ends_with("[v]"));
    }

    #[test]
    fn the_command_cuts_encodes_and_captions() {
        let mut s = spec(Layout::TalkingHead, (1280, 720), (1080, 1920));
        s.captions = Some("clip_00.srt");
        let args: Vec<String> = render_args(&s)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(
            joined.contains("-ss 12.346 -t 17.654 -i source.mp4"),
            "{joined}"
        );
        assert!(
            joined.contains("subtitles=filename=clip_00.srt"),
            "{joined}"
        );
        assert!(joined.contains("-c:v libx264 -preset veryfast"), "{joined}");
        assert!(joined.contains("-movflags +faststart"), "{joined}");
        assert!(joined.contains("-map 0:a:0 -c:a aac"), "{joined}");
        s.has_audio = false;
        let silent: Vec<OsString> = render_args(&s);
        assert!(!silent.iter().any(|a| a == "0:a:0"));
    }
}
