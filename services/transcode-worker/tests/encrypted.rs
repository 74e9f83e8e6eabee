//! Videos that are not public get HLS AES-128 renditions: every media
//! segment is ciphertext, the playlists name the key after the clear init
//! segment, and a real client (ffmpeg) plays them with the key from the
//! catalogue, both through the key URI and decrypted by hand with the
//! sequence number as IV. They have no I-frame playlists and no DASH. A
//! public video transcoded beside it stays in the clear, as before. A
//! worker started with a new master key re-wraps the content keys.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use common::*;
use shared::videos::Visibility;
use transcode_worker::configuration::Mode;

const KEY_TAG: &str = "#EXT-X-KEY:METHOD=AES-128,URI=\"../content.key\"";

/// (media sequence number, segment name) per segment, as a player numbers them.
fn numbered_segments(playlist: &str) -> Vec<(u64, String)> {
    let first: u64 = playlist.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:")).map_or(0, |n| n.trim().parse().unwrap());
    playlist.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).enumerate().map(|(i, s)| (first + i as u64, s.to_owned())).collect()
}

/// The type of the first ISO BMFF box.
fn first_box(bytes: &[u8]) -> &[u8] {
    &bytes[4..8]
}

fn seconds(path: &Path) -> f64 {
    run(Command::new("ffprobe").args(["-v", "error", "-of", "default=nw=1:nk=1", "-show_entries", "format=duration"]).arg(path)).trim().parse().unwrap()
}

/// Decodes every stream of the playlist to the end; fails the test on any error.
fn decode(playlist: &Path, extra: &[&str]) {
    run(Command::new("ffmpeg").args(["-v", "error", "-xerror"]).args(extra).arg("-i").arg(playlist).args(["-map", "0", "-f", "null", "-"]));
}

/// The packets ffprobe reads from the playlist (None: it gave up).
fn packets(playlist: &Path, extra: &[&str]) -> Option<usize> {
    let out = Command::new("ffprobe").args(["-v", "error"]).args(extra).args(["-show_entries", "packet=pts", "-of", "csv=p=0"]).arg(playlist).output().unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count())
}

#[tokio::test]
async fn a_private_video_is_encrypted_plays_with_its_key_and_a_public_one_stays_clear() {
    let lab = Lab::new().await;
    let _w = lab.worker(Mode::Push, 2).await;
    let source = clip(8, 640, 360);
    let private = lab.submit_as(&source, Visibility::Private).await;
    let public = lab.submit_as(&source, Visibility::Public).await;
    let video = lab.wait_for(private.video_id, "ready", Duration::from_secs(180)).await;
    let clear = lab.wait_for(public.video_id, "ready", Duration::from_secs(180)).await;
    let clear_dir = lab.download_served(&clear).await;
    assert!(video.encrypted, "the row says its renditions are encrypted");
    let key = lab.content_keys().get(private.video_id).await.unwrap().expect("the video has a content key");

    // HLS-only, and no byte-range I-frame playlists into ciphertext.
    let served = shared::layout::served_prefix(video.master_key.as_deref().unwrap()).unwrap().to_owned();
    let stored = lab.hls_keys(private.video_id).await;
    for name in ["master.m3u8", "240p/index.m3u8", "audio/index.m3u8", "poster.jpg", "thumbnails.vtt"] {
        assert!(stored.contains(&format!("{served}{name}")), "{name} missing: {stored:?}");
    }
    assert!(!stored.iter().any(|k| k.ends_with("iframes.m3u8") || k.ends_with("manifest.mpd")), "{stored:?}");
    let dir = lab.download_served(&video).await;
    let d = dir.path();
    let master = std::fs::read_to_string(d.join("master.m3u8")).unwrap();
    assert!(!master.contains("I-FRAME"), "{master}");
    assert!(master.contains("CODECS=\"avc1."), "codecs still read from the clear init segment: {master}");

    for rendition in ["240p", "audio"] {
        let rdir = d.join(rendition);
        let playlist = std::fs::read_to_string(rdir.join("index.m3u8")).unwrap();
        let lines: Vec<&str> = playlist.lines().collect();
        let at = |p: &str| lines.iter().position(|l| l.starts_with(p)).unwrap_or_else(|| panic!("{rendition}: no {p}: {playlist}"));
        assert_eq!(lines.iter().filter(|l| l.starts_with("#EXT-X-KEY")).count(), 1, "{playlist}");
        assert_eq!(lines[at("#EXT-X-KEY")], KEY_TAG);
        assert!(at("#EXT-X-MAP") < at("#EXT-X-KEY") && at("#EXT-X-KEY") < at("#EXTINF"), "{rendition}: the key follows the map, precedes the segments: {playlist}");
        let init = lines[at("#EXT-X-MAP")].split("URI=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        assert_eq!(first_box(&std::fs::read(rdir.join(&init)).unwrap()), b"ftyp", "{rendition}: the init segment stays clear");

        // By hand: AES-128-CBC, IV = the media sequence number, into a clear copy.
        let clear = d.join(format!("{rendition}-clear"));
        std::fs::create_dir(&clear).unwrap();
        std::fs::copy(rdir.join(&init), clear.join(&init)).unwrap();
        let segments = numbered_segments(&playlist);
        assert_eq!(segments.len(), 2, "8 s in 6 s segments: {playlist}");
        // Every segment ffmpeg writes starts with the same styp box (size, type,
        // brand, minor version): the clear video's tells what the first block,
        // the one the IV alone decides, must decrypt to.
        let (_, clear_first) = &numbered_segments(&std::fs::read_to_string(clear_dir.path().join(rendition).join("index.m3u8")).unwrap())[0];
        let head = std::fs::read(clear_dir.path().join(rendition).join(clear_first)).unwrap()[..16].to_vec();
        for (sequence, name) in &segments {
            let sealed = std::fs::read(rdir.join(name)).unwrap();
            assert!(![&b"styp"[..], b"moof"].contains(&first_box(&sealed)), "{rendition}/{name} is plain fMP4");
            assert_eq!(sealed.len() % 16, 0, "{rendition}/{name}: whole AES blocks");
            let iv = u128::from(*sequence).to_be_bytes();
            let open = cbc::Decryptor::<aes::Aes128>::new(&key.into(), &iv.into())
                .decrypt_padded_vec_mut::<Pkcs7>(&sealed)
                .unwrap_or_else(|e| panic!("{rendition}/{name} does not decrypt with IV {sequence}: {e}"));
            assert_eq!(open[..16], head[..], "{rendition}/{name} decrypts with IV {sequence} to a segment's head");
            std::fs::write(clear.join(name), open).unwrap();
        }
        let local = clear.join("index.m3u8");
        std::fs::write(&local, playlist.lines().filter(|l| !l.starts_with("#EXT-X-KEY")).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        decode(&local, &[]);
        assert!((seconds(&local) - 8.0).abs() < 0.5, "{rendition}: {} s decrypted", seconds(&local));
        let all = packets(&local, &[]).unwrap();
        assert!(all > 0);

        // As a player: ffmpeg fetches ../content.key and decrypts with the default IV.
        let served = rdir.join("index.m3u8");
        let hls = ["-allowed_extensions", "ALL"];
        std::fs::write(d.join("content.key"), key).unwrap();
        decode(&served, &hls);
        assert_eq!(packets(&served, &hls), Some(all), "{rendition}: every packet, through the key URI");
        // With another key, or none, nothing plays.
        std::fs::write(d.join("content.key"), [0x5a; 16]).unwrap();
        assert!(matches!(packets(&served, &hls), None | Some(0)), "{rendition}: played with the wrong key");
        std::fs::remove_file(d.join("content.key")).unwrap();
        assert!(matches!(packets(&served, &hls), None | Some(0)), "{rendition}: played without its key");
    }

    // The public video beside it: clear, with DASH and I-frame playlists, and no key.
    assert!(!clear.encrypted);
    assert_eq!(lab.content_keys().get(public.video_id).await.unwrap(), None, "a public video gets no key");
    let served = shared::layout::served_prefix(clear.master_key.as_deref().unwrap()).unwrap().to_owned();
    let stored = lab.hls_keys(public.video_id).await;
    for name in ["manifest.mpd", "240p/iframes.m3u8"] {
        assert!(stored.contains(&format!("{served}{name}")), "{name} missing: {stored:?}");
    }
    let dir = clear_dir;
    for rendition in ["240p", "audio"] {
        let playlist = std::fs::read_to_string(dir.path().join(rendition).join("index.m3u8")).unwrap();
        assert!(!playlist.contains("EXT-X-KEY"), "{playlist}");
        let (_, first) = &numbered_segments(&playlist)[0];
        let bytes = std::fs::read(dir.path().join(rendition).join(first)).unwrap();
        assert!([&b"styp"[..], b"moof"].contains(&first_box(&bytes)), "{rendition}: plain fMP4");
    }
    assert!(std::fs::read_to_string(dir.path().join("master.m3u8")).unwrap().contains("#EXT-X-I-FRAME-STREAM-INF"));
}

#[tokio::test]
async fn a_worker_started_with_a_new_master_key_rewraps_the_old_keys_without_reencoding() {
    let lab = Lab::new().await;
    let job = lab.register(b"never transcoded").await;
    let old = lab.content_keys();
    let key = old.get_or_create(job.video_id).await.unwrap();
    let rotated = format!("new:xIgUSvHdiCEjpWCjcKGkPCUMJgcJvVrve6UT9OKWN-8,{MASTER_KEYS}");
    let mut settings = lab.settings(Mode::Pull, 1);
    settings.master_keys = rotated.parse().unwrap();
    let _w = lab.spawn(settings).await;
    let pool = lab.videos.pool().clone();
    lab.eventually("the key re-wrapped under the new master", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            let kid: String = sqlx::query_scalar("SELECT master_kid FROM video_keys WHERE video_id = $1").bind(job.video_id).fetch_one(&pool).await.unwrap();
            kid == "new"
        }
    })
    .await;
    let under_new = shared::playback::ContentKeys::new(pool, rotated.parse().unwrap());
    assert_eq!(under_new.get(job.video_id).await.unwrap(), Some(key), "the same content key, so the segments need no re-encode");
    assert!(old.get(job.video_id).await.is_err(), "the old master alone no longer opens it");
}
