//! Checksums: the per-PATCH `Upload-Checksum` algorithms, and a SHA-256 of
//! the whole upload whose midstate is saved with each commit.
//!
//! Why a hand-saved midstate: the video row needs the source's SHA-256, and
//! a tus upload arrives as many requests on possibly different replicas over
//! hours. Re-reading a 2 GiB object at the end would double the final
//! PATCH's latency; `sha2` exposes the compression function but no way to
//! serialise its hasher, so [`ResumableSha256`] keeps the eight state words,
//! the length and the unprocessed tail (< 64 bytes) itself — about 100
//! bytes stored in the upload's row.

use md5::Digest as _;
use sha2::digest::generic_array::GenericArray;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Md5,
    Sha256,
    Crc32,
}

impl Algorithm {
    pub const ADVERTISED: &'static str = "sha1,md5,sha256,crc32";

    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "sha1" => Some(Self::Sha1),
            "md5" => Some(Self::Md5),
            "sha256" => Some(Self::Sha256),
            "crc32" => Some(Self::Crc32),
            _ => None,
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Md5 => 16,
            Self::Sha256 => 32,
            Self::Crc32 => 4,
        }
    }
}

/// Hashes one PATCH body as it streams.
pub enum ChunkHasher {
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
    Crc32(crc32fast::Hasher),
}

impl ChunkHasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            Algorithm::Md5 => Self::Md5(md5::Md5::new()),
            Algorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            Algorithm::Crc32 => Self::Crc32(crc32fast::Hasher::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(data),
            Self::Md5(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Crc32(h) => h.update(data),
        }
    }

    /// The digest; CRC-32 as its 4 big-endian bytes (what tusd and tus clients send).
    pub fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Md5(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
        }
    }
}

/// FIPS 180-4 §5.3.3: the initial SHA-256 hash value.
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// SHA-256 whose state can be saved to bytes and restored.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumableSha256 {
    state: [u32; 8],
    len: u64,
    pending: Vec<u8>,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        Self {
            state: H0,
            len: 0,
            pending: Vec::with_capacity(64),
        }
    }
}

impl ResumableSha256 {
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.pending.is_empty() {
            let take = (64 - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < 64 {
                return;
            }
            let block = GenericArray::clone_from_slice(&self.pending);
            sha2::compress256(&mut self.state, &[block]);
            self.pending.clear();
        }
        let whole = data.len() / 64 * 64;
        let blocks: Vec<_> = data[..whole]
            .chunks_exact(64)
            .map(GenericArray::clone_from_slice)
            .collect();
        sha2::compress256(&mut self.state, &blocks);
        self.pending.extend_from_slice(&data[whole..]);
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn hex(&self) -> String {
        let mut h = self.clone();
        let bit_len = h.len.wrapping_mul(8);
        let mut tail = std::mem::take(&mut h.pending);
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&bit_len.to_be_bytes());
        let blocks: Vec<_> = tail
            .chunks_exact(64)
            .map(GenericArray::clone_from_slice)
            .collect();
        sha2::compress256(&mut h.state, &blocks);
        h.state.iter().map(|w| format!("{w:08x}")).collect()
    }

    /// 32 state bytes, 8 length bytes, then the pending bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.pending.len());
        for w in self.state {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.pending);
        out
    }

    pub fn from_bytes(b: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            b.len() >= 40 && b.len() < 104,
            "saved SHA-256 state has {} bytes",
            b.len()
        );
        let mut state = [0u32; 8];
        for (i, w) in state.iter_mut().enumerate() {
            *w = u32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        }
        let len = u64::from_be_bytes(b[32..40].try_into().expect("8 bytes"));
        let pending = b[40..].to_vec();
        anyhow::ensure!(
            pending.len() as u64 == len % 64,
            "saved SHA-256 state is inconsistent"
        );
        // SHA-256 counts the message in bits in 64 bits; a larger count is
        // corruption, and would overflow the count on the next update.
        anyhow::ensure!(
            len < 1 << 61,
            "saved SHA-256 state counts {len} bytes, more than SHA-256 can hash"
        );
        Ok(Self {
            state,
            len,
            pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Sha256;

    #[test]
    fn resumable_sha256_matches_sha2_across_any_split_and_a_save_restore() {
        let data: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let want = hex::encode(Sha256::digest(&data));
        for split in [0, 1, 63, 64, 65, 127, 128, 5000, 9999, 10_000] {
            let mut h = ResumableSha256::default();
            h.update(&data[..split]);
            let mut h = ResumableSha256::from_bytes(&h.to_bytes()).unwrap();
            for piece in data[split..].chunks(37) {
                h.update(piece);
            }
            assert_eq!(h.hex(), want, "split at {split}");
            assert_eq!(h.len(), data.len() as u64);
        }
        assert_eq!(
            ResumableSha256::default().hex(),
            hex::encode(Sha256::digest(b""))
        );
    }

    #[test]
    fn corrupt_saved_state_is_refused() {
        assert!(ResumableSha256::from_bytes(&[0; 12]).is_err());
        let mut h = ResumableSha256::default();
        h.update(b"abc");
        let mut b = h.to_bytes();
        b.pop();
        assert!(ResumableSha256::from_bytes(&b).is_err());
    }

    /// Found by `scripts/fuzz` (tus_checksum): a saved count near u64::MAX
    /// was accepted, and the next update overflowed it.
    #[test]
    fn regression_a_saved_count_beyond_sha256s_limit_is_refused() {
        let mut b = vec![0xff; 32];
        b.extend_from_slice(&u64::MAX.to_be_bytes());
        b.extend_from_slice(&[0xff; 63]);
        assert!(ResumableSha256::from_bytes(&b).is_err());
        let mut near = ResumableSha256::from_bytes(&[&[0; 32][..], &((1u64 << 61) - 64).to_be_bytes()].concat()).unwrap();
        near.update(&[0; 63]);
        assert_eq!(near.len(), (1 << 61) - 1);
    }

    #[test]
    fn chunk_hashers_produce_the_published_test_vectors() {
        let digest = |a| {
            let mut h = ChunkHasher::new(a);
            h.update(b"abc");
            hex::encode(h.finish())
        };
        assert_eq!(
            digest(Algorithm::Sha1),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(digest(Algorithm::Md5), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(digest(Algorithm::Crc32), "352441c2");
        assert_eq!(
            digest(Algorithm::Sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
