//! Confinement of ffmpeg and ffprobe to the one file they were given.
//!
//! An upload is hostile input fed to a large C program. A 451-byte "video"
//! that is really a DASH manifest or an HLS playlist makes ffmpeg open the
//! files or URLs it names: any media file on the worker's disk (another
//! creator's source in the scratch folder, say) could be transcoded and
//! published. A protocol whitelist alone cannot stop that, because a local
//! path is the `file` protocol too. So the *demuxers* are allowlisted:
//!
//! - ffprobe opens the input with `-format_whitelist` (only real containers:
//!   never hls, dash, concat, image2, tee…), and [`Confinement::check_format`]
//!   refuses any probed `format_name` not on the list;
//! - ffmpeg is then *forced* to the demuxer the probe found (`-f`), with the
//!   same whitelist, so it cannot probe its way to another one;
//! - the only protocol is `file` (`-protocol_whitelist file`), and the mov
//!   demuxer's external data references are off (`-enable_drefs 0`), the
//!   one nested open an allowed container can ask for;
//! - where the host allows it, each process starts in a network namespace of
//!   its own (`unshare(CLONE_NEWNET)`: only a loopback that is down), so even
//!   a demuxer bug cannot reach the network.

use std::str::FromStr;

use tokio::process::Command;

use crate::rejection::Rejection;

/// Containers a creator uploads; each is a single self-contained file. The
/// names are ffmpeg demuxer names (`ffmpeg -demuxers`).
pub const DEFAULT_FORMATS: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,asf,ogg,mxf";

/// Whether ffmpeg and ffprobe get a network namespace of their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkIsolation {
    /// Isolate when the host allows it (root, or CAP_SYS_ADMIN); say so at start.
    #[default]
    Auto,
    /// Isolate, and refuse to start where the host does not allow it.
    Required,
    /// Never isolate (the deployment confines the worker itself, e.g. Compose `network_mode: none`).
    Off,
}

impl FromStr for NetworkIsolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "required" => Ok(Self::Required),
            "off" => Ok(Self::Off),
            other => Err(format!("{other:?} is not auto, required or off")),
        }
    }
}

/// The allowlist of demuxers, and whether processes get their own network.
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    formats: Vec<String>,
    isolate_network: bool,
}

impl Confinement {
    /// Resolves `Auto` by trying it once. `Required` where the host cannot is an error.
    pub fn new(formats: &str, network: NetworkIsolation) -> anyhow::Result<Self> {
        let formats: Vec<String> = formats.split(',').map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect();
        if formats.is_empty() {
            anyhow::bail!("FFMPEG_FORMATS names no container format");
        }
        if let Some(bad) = formats.iter().find(|f| !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
            anyhow::bail!("FFMPEG_FORMATS: {bad:?} is not a demuxer name");
        }
        let isolate_network = match network {
            NetworkIsolation::Off => false,
            NetworkIsolation::Auto => network_namespaces_work(),
            NetworkIsolation::Required if network_namespaces_work() => true,
            NetworkIsolation::Required => {
                anyhow::bail!("FFMPEG_NETWORK_ISOLATION=required, but this host does not allow network namespaces (needs root or CAP_SYS_ADMIN)")
            }
        };
        Ok(Self { formats, isolate_network })
    }

    pub fn isolates_network(&self) -> bool {
        self.isolate_network
    }

    /// Input options for ffprobe (`forced` None) or ffmpeg (`forced` = the probed demuxer),
    /// to put right before `-i`.
    pub fn input_args(&self, forced: Option<&str>) -> Vec<String> {
        let mut a = vec!["-protocol_whitelist".to_owned(), "file".to_owned(), "-format_whitelist".to_owned(), self.formats.join(",")];
        if let Some(demuxer) = forced {
            a.extend(["-f".to_owned(), demuxer.to_owned()]);
            if demuxer == "mov" {
                a.extend(["-enable_drefs".to_owned(), "0".to_owned()]);
            }
        }
        a
    }

    /// The input path as ffmpeg must read it: `file:` so that no part of
    /// it is ever taken for another protocol.
    pub fn input_url(path: &std::path::Path) -> String {
        format!("file:{}", path.display())
    }

    /// Checks ffprobe's `format_name` (a comma list, e.g. `mov,mp4,m4a,3gp,3g2,mj2`) and
    /// returns the demuxer to force on ffmpeg: its first name.
    pub fn check_format(&self, format_name: &str) -> Result<String, Rejection> {
        // `split` always yields at least one name (perhaps empty, which no list holds).
        let names: Vec<&str> = format_name.split(',').map(str::trim).collect();
        if !names.iter().any(|n| self.formats.iter().any(|f| f == n)) {
            return Err(Rejection::FormatNotAllowed { format: names[0].to_owned() });
        }
        Ok(names[0].to_owned())
    }

    /// Sets up `cmd` to die with the worker and, when configured, in its own network namespace.
    pub fn apply(&self, cmd: &mut Command) {
        let isolate = self.isolate_network;
        // SAFETY: prctl and unshare are async-signal-safe and touch no memory of ours.
        unsafe {
            cmd.pre_exec(move || {
                // A worker killed with SIGKILL cannot kill its ffmpeg; the kernel does it for us.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if isolate && libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// Whether this process may create network namespaces: tried on a child, so
/// the worker's own namespace is never touched.
fn network_namespaces_work() -> bool {
    let mut cmd = std::process::Command::new("true");
    // SAFETY: as in `apply`.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confinement() -> Confinement {
        Confinement::new(DEFAULT_FORMATS, NetworkIsolation::Off).unwrap()
    }

    #[test]
    fn playlists_and_manifests_are_not_allowed_and_containers_are() {
        let c = confinement();
        for f in ["dash", "hls", "concat", "image2", "tee", "sdp", "rtsp", "ffmetadata", "image2pipe"] {
            assert_eq!(c.check_format(f), Err(Rejection::FormatNotAllowed { format: f.into() }));
        }
        assert_eq!(c.check_format("mov,mp4,m4a,3gp,3g2,mj2").unwrap(), "mov");
        assert_eq!(c.check_format("matroska,webm").unwrap(), "matroska");
        assert!(c.check_format("").is_err());
    }

    #[test]
    fn ffmpeg_is_forced_to_the_probed_demuxer_and_mov_drops_its_references() {
        let c = confinement();
        let probe = c.input_args(None).join(" ");
        assert_eq!(probe, format!("-protocol_whitelist file -format_whitelist {DEFAULT_FORMATS}"));
        let mov = c.input_args(Some("mov")).join(" ");
        assert!(mov.ends_with("-f mov -enable_drefs 0"), "{mov}");
        assert!(c.input_args(Some("matroska")).join(" ").ends_with("-f matroska"));
    }

    #[test]
    fn odd_format_lists_are_refused_at_start() {
        assert!(Confinement::new(" , ", NetworkIsolation::Off).is_err());
        assert!(Confinement::new("mov,hls;rm", NetworkIsolation::Off).is_err());
        assert_eq!("required".parse::<NetworkIsolation>(), Ok(NetworkIsolation::Required));
        assert!("on".parse::<NetworkIsolation>().unwrap_err().contains("on"));
    }
}
