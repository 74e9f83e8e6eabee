//! The object names of a live rendition, relative to its media playlist:
//! `init-{generation}.mp4`, `seg-{msn}.m4s`, `part-{msn}-{index}.m4s`. The
//! packager writes under them, the playlist lists them and the origin parses
//! a request back into one, all from here.
//!
//! An init segment has a generation: a restarted encoder writes a new one
//! (new parameter sets, perhaps a new size) while segments of the old one
//! are still listed, and both stay immutable under their own names.

use std::fmt;

pub const PLAYLIST: &str = "index.m3u8";

/// One object of a rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Object {
    Playlist,
    Init { generation: u32 },
    Segment { msn: u64 },
    Part { msn: u64, index: u32 },
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Playlist => f.write_str(PLAYLIST),
            Self::Init { generation } => write!(f, "init-{generation}.mp4"),
            Self::Segment { msn } => write!(f, "seg-{msn}.m4s"),
            Self::Part { msn, index } => write!(f, "part-{msn}-{index}.m4s"),
        }
    }
}

impl Object {
    /// The object a file name names, or None: only the exact forms written
    /// above (decimal numbers without sign or leading zeros), so one object
    /// has one name and one cache key.
    pub fn parse(name: &str) -> Option<Self> {
        if name == PLAYLIST {
            return Some(Self::Playlist);
        }
        if let Some(g) = name.strip_prefix("init-").and_then(|r| r.strip_suffix(".mp4")) {
            return Some(Self::Init { generation: canonical(g)? });
        }
        if let Some(msn) = name.strip_prefix("seg-").and_then(|r| r.strip_suffix(".m4s")) {
            return Some(Self::Segment { msn: canonical(msn)? });
        }
        let (msn, index) = name.strip_prefix("part-")?.strip_suffix(".m4s")?.split_once('-')?;
        Some(Self::Part { msn: canonical(msn)?, index: canonical(index)? })
    }

    /// Complete parts, segments and init sections never change; the playlist does.
    pub fn immutable(&self) -> bool {
        !matches!(self, Self::Playlist)
    }
}

fn canonical<T: std::str::FromStr + ToString>(digits: &str) -> Option<T> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for o in [Object::Playlist, Object::Init { generation: 0 }, Object::Init { generation: 2 }, Object::Segment { msn: 0 }, Object::Segment { msn: 41 }, Object::Part { msn: 41, index: 3 }] {
            assert_eq!(Object::parse(&o.to_string()), Some(o), "{o}");
        }
        assert_eq!(Object::Part { msn: 7, index: 0 }.to_string(), "part-7-0.m4s");
    }

    #[test]
    fn other_spellings_are_not_objects() {
        for n in ["init.mp4", "init-01.mp4", "seg-01.m4s", "seg-+1.m4s", "seg-.m4s", "seg-1.mp4", "part-1.m4s", "part-1-2-3.m4s", "part--1-2.m4s", "../index.m3u8", "seg-99999999999999999999.m4s", ""] {
            assert_eq!(Object::parse(n), None, "{n}");
        }
    }

    #[test]
    fn only_the_playlist_changes() {
        assert!(!Object::Playlist.immutable());
        assert!(Object::Part { msn: 1, index: 1 }.immutable());
        assert!(Object::Init { generation: 1 }.immutable());
    }
}
