//! Byte-level decoding of a log object: gzip detection by magic number and a cap on
//! decompressed size.
//!
//! CloudTrail delivers `.json.gz`, but exports, test fixtures and hand-made samples are
//! plain JSON, so the format is detected from the first bytes rather than the name.

use std::io::{self, BufReader, Chain, Cursor, Read};

use flate2::read::MultiGzDecoder;

/// The two bytes every gzip member starts with (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Default cap on decompressed bytes per file: 4 GiB. CloudTrail files stay far below
/// (≈50 MB gzip / 300+ MB JSON); anything beyond is a gzip bomb or not CloudTrail.
pub const DEFAULT_MAX_DECOMPRESSED: u64 = 4 << 30;

/// Opens `input` for reading decoded bytes: gunzips it when it starts with the gzip
/// magic (every member of a multi-member file), otherwise passes it through. Either way
/// reading fails with [`io::ErrorKind::FileTooLarge`] once more than `max_bytes` came out.
pub fn open<'a, R: Read + 'a>(mut input: R, max_bytes: u64) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let rejoined: Chain<Cursor<Vec<u8>>, R> = Cursor::new(head[..got].to_vec()).chain(input);
    let decoded: Box<dyn Read + 'a> = if got == 2 && head == GZIP_MAGIC {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(
            128 * 1024,
            rejoined,
        )))
    } else {
        Box::new(rejoined)
    };
    Ok(Box::new(Capped {
        inner: decoded,
        left: max_bytes,
        max: max_bytes,
    }))
}

/// A reader that refuses to yield more than `max` bytes in total.
struct Capped<R> {
    inner: R,
    left: u64,
    max: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // Probe one byte: ending exactly at the cap is fine, one byte past is not.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!(
                        "decompressed size exceeds the cap of {} bytes (a gzip bomb, or raise max_decompressed_bytes)",
                        self.max
                    ),
                )),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(r: &mut dyn Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn plain_bytes_pass_through() {
        let mut r = open(&b"{\"Records\":[]}"[..], 1 << 20).unwrap();
        assert_eq!(read_all(&mut r).unwrap(), b"{\"Records\":[]}");
    }

    #[test]
    fn gzip_is_detected_by_magic_not_name() {
        let mut r = open(Cursor::new(gz(b"hello")), 1 << 20).unwrap();
        assert_eq!(read_all(&mut r).unwrap(), b"hello");
    }

    #[test]
    fn every_member_of_a_multi_member_gzip_is_read() {
        let mut both = gz(b"first,");
        both.extend(gz(b"second"));
        let mut r = open(Cursor::new(both), 1 << 20).unwrap();
        assert_eq!(read_all(&mut r).unwrap(), b"first,second");
    }

    #[test]
    fn output_past_the_cap_is_an_error_but_exactly_the_cap_is_not() {
        let data = vec![b'x'; 1000];
        let mut r = open(Cursor::new(gz(&data)), 999).unwrap();
        let err = read_all(&mut r).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("999 bytes"), "{err}");
        let mut r = open(Cursor::new(gz(&data)), 1000).unwrap();
        assert_eq!(read_all(&mut r).unwrap().len(), 1000);
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let full = gz(&vec![b'a'; 10_000]);
        let mut r = open(Cursor::new(full[..full.len() / 2].to_vec()), 1 << 20).unwrap();
        assert!(read_all(&mut r).is_err());
    }

    #[test]
    fn short_inputs_are_fine() {
        let mut r = open(&b""[..], 10).unwrap();
        assert!(read_all(&mut r).unwrap().is_empty());
        let mut r = open(&b"x"[..], 10).unwrap();
        assert_eq!(read_all(&mut r).unwrap(), b"x");
    }
}
