//! The extra outputs of the single pass, checked with real players and
//! decoders: the DASH manifest plays in ffmpeg, each I-frame byte range
//! decodes to exactly one key frame, the sprites and their WebVTT track
//! agree, the poster is the frame 10 % in, and the audio-only variant plays.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use transcode_worker::configuration::Mode;

fn probe(path: &Path, entries: &str) -> String {
    run(Command::new("ffprobe").args(["-v", "error", "-of", "default=nw=1:nk=1", "-show_entries", entries]).arg(path))
}

/// The frame at `at` seconds, as 32x18 grey pixels.
fn tiny_frame(path: &Path, at: f64) -> Vec<u8> {
    // No -ss at 0: on a still image, ffmpeg then outputs nothing.
    let seek: Vec<String> = if at > 0.0 { vec!["-ss".into(), at.to_string()] } else { vec![] };
    let out = Command::new("ffmpeg").args(["-v", "error"]).args(seek).arg("-i").arg(path).args(["-frames:v", "1", "-vf", "scale=32:18", "-f", "rawvideo", "-pix_fmt", "gray", "-"]).output().unwrap();
    assert!(out.status.success() && out.stdout.len() == 32 * 18, "{} at {at}: {} bytes, {}", path.display(), out.stdout.len(), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Mean absolute difference per pixel.
fn distance(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as f64).sum::<f64>() / a.len() as f64
}

#[tokio::test]
async fn dash_iframes_sprites_and_audio_only_are_valid() {
    let lab = Lab::new().await;
    let _w = lab.worker(Mode::Push, 1).await;
    let source = clip(13, 854, 480);
    let job = lab.submit(&source).await;
    let video = lab.wait_for(job.video_id, "ready", Duration::from_secs(180)).await;
    let dir = lab.download_served(&video).await;
    let d = dir.path();

    // DASH: ffmpeg's DASH demuxer plays every stream, for the whole duration.
    let mpd = d.join("manifest.mpd");
    let streams = run(Command::new("ffprobe").args(["-v", "error", "-of", "csv=p=0", "-show_entries", "stream=codec_type,width"]).arg(&mpd));
    // ffprobe lists the streams once per DASH program too; the set is what counts.
    let mut streams: Vec<&str> = streams.lines().filter(|l| !l.is_empty()).collect();
    streams.dedup_by(|a, b| a == b);
    streams.sort();
    streams.dedup();
    assert_eq!(streams, ["audio", "video,428", "video,854"], "{streams:?}");
    run(Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&mpd).args(["-map", "0", "-f", "null", "-"]));
    let secs: f64 = probe(&mpd, "format=duration").trim().parse().unwrap();
    assert!((secs - 13.0).abs() < 0.5, "DASH duration {secs}");

    // I-frame playlists: every entry is one decodable key frame.
    let master = std::fs::read_to_string(d.join("master.m3u8")).unwrap();
    assert_eq!(master.matches("#EXT-X-I-FRAME-STREAM-INF").count(), 2, "{master}");
    for rung in ["480p", "240p"] {
        let playlist = std::fs::read_to_string(d.join(rung).join("iframes.m3u8")).unwrap();
        assert!(playlist.contains("#EXT-X-I-FRAMES-ONLY"));
        let init = playlist.split("URI=\"").nth(1).unwrap().split('"').next().unwrap();
        let init = std::fs::read(d.join(rung).join(init)).unwrap();
        let lines: Vec<&str> = playlist.lines().collect();
        let ranges: Vec<(u64, u64, &str)> = lines
            .windows(2)
            .filter_map(|w| {
                let (len, off) = w[0].strip_prefix("#EXT-X-BYTERANGE:")?.split_once('@')?;
                Some((len.parse().unwrap(), off.parse().unwrap(), w[1]))
            })
            .collect();
        assert_eq!(ranges.len(), 3, "one per 6 s segment of 13 s: {playlist}");
        for (len, off, seg) in ranges {
            let bytes = std::fs::read(d.join(rung).join(seg)).unwrap();
            assert!(((off + len) as usize) < bytes.len(), "the range is the key frame, not the whole segment");
            let sample = d.join(format!("{rung}-{seg}.mp4"));
            std::fs::write(&sample, [&init[..], &bytes[off as usize..(off + len) as usize]].concat()).unwrap();
            let frames = run(Command::new("ffprobe").args(["-v", "quiet", "-of", "csv=p=0", "-select_streams", "v", "-show_entries", "frame=key_frame,pict_type"]).arg(&sample));
            let frames: Vec<&str> = frames.lines().map(|l| l.trim_end_matches(',')).filter(|l| !l.is_empty()).collect();
            assert_eq!(frames, ["1,I"], "{rung} {seg}: exactly one frame, a key frame");
        }
    }

    // Thumbnails: 13 s at one per second, cues within the sheet, contiguous to the end.
    let vtt = std::fs::read_to_string(d.join("thumbnails.vtt")).unwrap();
    assert!(vtt.starts_with("WEBVTT"));
    let (w, h): (u32, u32) = {
        let dims = run(Command::new("ffprobe").args(["-v", "error", "-of", "csv=p=0", "-show_entries", "stream=width,height"]).arg(d.join("sprite_000.jpg")));
        let (w, h) = dims.trim().split_once(',').unwrap();
        (w.parse().unwrap(), h.parse().unwrap())
    };
    assert_eq!((w, h), (1600, 900), "a 10x10 sheet of 160x90 thumbnails");
    let mut end_of_last = "00:00:00.000".to_owned();
    let cues: Vec<&str> = vtt.lines().filter(|l| l.contains(" --> ")).collect();
    assert_eq!(cues.len(), 13);
    for block in vtt.split("\n\n").skip(1) {
        let mut l = block.lines();
        let (start, end) = l.next().unwrap().split_once(" --> ").unwrap();
        assert_eq!(start, end_of_last, "cues are contiguous");
        end_of_last = end.to_owned();
        let (sheet, xywh) = l.next().unwrap().split_once("#xywh=").unwrap();
        assert!(d.join(sheet).exists(), "{sheet}");
        let v: Vec<u32> = xywh.split(',').map(|n| n.parse().unwrap()).collect();
        assert!(v[0] + v[2] <= w && v[1] + v[3] <= h, "{xywh} inside the sheet");
    }
    assert_eq!(end_of_last, "00:00:13.000");

    // The poster is the frame 10 % in (1.3 s), not frame 0 that the poster
    // output starts with so ffmpeg reports progress from the start.
    let src = d.join("source.mp4");
    std::fs::write(&src, &source).unwrap();
    let at_poster = tiny_frame(&src, 1.3);
    let first = tiny_frame(&src, 0.0);
    let poster = tiny_frame(&d.join("poster.jpg"), 0.0);
    assert!(distance(&poster, &at_poster) * 3.0 < distance(&poster, &first), "poster {:.1} from 1.3 s, {:.1} from 0 s", distance(&poster, &at_poster), distance(&poster, &first));

    // The audio-only variant plays on its own.
    let audio = d.join("audio").join("index.m3u8");
    let codecs = probe(&audio, "stream=codec_name");
    assert!(codecs.lines().all(|c| c == "aac") && !codecs.is_empty(), "{codecs}");
    run(Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&audio).args(["-f", "null", "-"]));
}
