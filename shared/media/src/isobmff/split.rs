//! An encoder's fragmented-MP4 byte stream cut into whole top-level boxes,
//! as bytes arrive from its pipe in reads of any size. The packager groups
//! them: `ftyp` + `moov` is the init segment, each `moof` + `mdat` a part.
//!
//! Memory is bounded: a box larger than the limit given is an error (an
//! encoder never writes one; a corrupt size would otherwise make the
//! splitter wait forever for bytes that are not coming, holding them all).

use anyhow::bail;

/// One complete top-level box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopBox {
    pub kind: [u8; 4],
    pub bytes: Vec<u8>,
}

/// Buffers a byte stream and yields its top-level boxes whole.
#[derive(Debug)]
pub struct Splitter {
    buf: Vec<u8>,
    max_box: usize,
}

impl Splitter {
    /// `max_box`: the largest box accepted, header included.
    pub fn new(max_box: usize) -> Self {
        Self { buf: Vec::new(), max_box }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole box, or None until more bytes arrive.
    pub fn next_box(&mut self) -> anyhow::Result<Option<TopBox>> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let size32 = u32::from_be_bytes(self.buf[..4].try_into().expect("four bytes"));
        let kind: [u8; 4] = self.buf[4..8].try_into().expect("four bytes");
        let size = match size32 {
            0 => bail!("box {} runs to the end of the stream, which a live stream has not", String::from_utf8_lossy(&kind)),
            1 => {
                if self.buf.len() < 16 {
                    return Ok(None);
                }
                u64::from_be_bytes(self.buf[8..16].try_into().expect("eight bytes"))
            }
            s => s as u64,
        };
        let header = if size32 == 1 { 16 } else { 8 };
        if size < header {
            bail!("box {} has an impossible size {size}", String::from_utf8_lossy(&kind));
        }
        if size > self.max_box as u64 {
            bail!("box {} of {size} bytes is over the {} byte limit", String::from_utf8_lossy(&kind), self.max_box);
        }
        let size = size as usize;
        if self.buf.len() < size {
            return Ok(None);
        }
        let rest = self.buf.split_off(size);
        let bytes = std::mem::replace(&mut self.buf, rest);
        Ok(Some(TopBox { kind, bytes }))
    }

    /// Bytes held that do not make a whole box yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isobmff::testing::bx;

    fn drain(s: &mut Splitter) -> Vec<TopBox> {
        std::iter::from_fn(|| s.next_box().unwrap()).collect()
    }

    #[test]
    fn boxes_come_out_whole_whatever_the_reads() {
        let stream = [bx(b"ftyp", b"iso6"), bx(b"moov", &[7; 300]), bx(b"moof", &[1; 50]), bx(b"mdat", &[2; 1000])].concat();
        for read in [1, 3, 8, 100, stream.len()] {
            let mut s = Splitter::new(1 << 20);
            let mut out = Vec::new();
            for chunk in stream.chunks(read) {
                s.push(chunk);
                out.extend(drain(&mut s));
            }
            let kinds: Vec<&[u8; 4]> = out.iter().map(|b| &b.kind).collect();
            assert_eq!(kinds, [b"ftyp", b"moov", b"moof", b"mdat"], "reads of {read}");
            assert_eq!(out.iter().map(|b| b.bytes.len()).sum::<usize>(), stream.len());
            assert_eq!(s.pending(), 0);
        }
    }

    #[test]
    fn a_64_bit_size_is_read() {
        let mut b = 1u32.to_be_bytes().to_vec();
        b.extend_from_slice(b"mdat");
        b.extend_from_slice(&20u64.to_be_bytes());
        b.extend_from_slice(&[9; 4]);
        let mut s = Splitter::new(1024);
        s.push(&b[..12]);
        assert_eq!(s.next_box().unwrap(), None);
        s.push(&b[12..]);
        assert_eq!(s.next_box().unwrap().unwrap().bytes, b);
    }

    #[test]
    fn impossible_and_oversized_boxes_are_errors() {
        let mut s = Splitter::new(1024);
        s.push(&[0, 0, 0, 4, b'm', b'o', b'o', b'f']);
        assert!(s.next_box().unwrap_err().to_string().contains("impossible size"));
        let mut s = Splitter::new(1024);
        s.push(&bx(b"mdat", &[0; 2000])[..8]);
        assert!(s.next_box().unwrap_err().to_string().contains("over the 1024 byte limit"));
        let mut s = Splitter::new(1024);
        s.push(&[0, 0, 0, 0, b'm', b'd', b'a', b't']);
        assert!(s.next_box().is_err(), "size 0 (to the end) never ends in a live stream");
    }
}
