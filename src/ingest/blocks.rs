//! NDJSON read as blocks of whole lines, on a thread of its own, one block ahead of the parse.
//!
//! Reading a block (a copy out of the page cache, milliseconds for 16 MiB) is serial
//! work; done between blocks it left both cores of the parse idle for ~5 % of an import. Here
//! the next block is read and split into lines while the current one is parsed, and its
//! buffer is handed back for reuse once the block is done (two or three buffers in all).
//!
//! A line longer than [`MAX_LINE_BYTES`] that does not fit the buffer is hashed as it streams
//! past, never held, and handed over as [`Block::TooLong`] in its place in the file.

use std::io::Read;
use std::sync::mpsc;

use indicatif::ProgressBar;

use super::files::MAX_LINE_BYTES;
use crate::error::{IoContext, Result};

/// Bytes of NDJSON read at a time (whole lines; a longer line grows the buffer). 16 MiB, not
/// 32: two or three buffers are live at once, and fresh memory is costly on first touch (at 1M
/// events, peak RSS ~245 → ~205 MiB and less system time, the same speed at 10M).
const BLOCK_BYTES: usize = 16 << 20;

/// Consecutive lines of the input, in file order.
pub(crate) enum Block {
    /// Whole lines: the bytes, and for each line that is not blank its number (from 1) and
    /// its range in them (without the line end, `\n` or `\r\n`).
    Lines {
        bytes: Vec<u8>,
        lines: Vec<(u64, usize, usize)>,
    },
    /// One line too long to hold: its number, length and xxh3-64.
    TooLong { line: u64, len: u64, hash: u64 },
}

/// Read `input` block by block on a thread of its own and call `each` with every block, in
/// order, while the next one is read. `name` is the input's name in errors; `progress` counts
/// the bytes read.
pub(crate) fn read_blocks<R: Read + Send>(
    input: R,
    name: &str,
    progress: &ProgressBar,
    each: impl FnMut(&Block) -> Result<()>,
) -> Result<()> {
    read_blocks_of(BLOCK_BYTES, input, name, progress, each)
}

/// [`read_blocks`] with blocks of `block_bytes` (the tests' small blocks).
fn read_blocks_of<R: Read + Send>(
    block_bytes: usize,
    input: R,
    name: &str,
    progress: &ProgressBar,
    mut each: impl FnMut(&Block) -> Result<()>,
) -> Result<()> {
    // A rendezvous channel: the reader holds one block ready while `each` works on another.
    let (blocks, ready) = mpsc::sync_channel::<Result<Block>>(0);
    let (give_back, spare) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut reader = BlockReader {
                block_bytes,
                input,
                name,
                progress,
                carry: Vec::new(),
                line_no: 0,
                done: false,
                spare,
            };
            while let Some(next) = reader.next_block().transpose() {
                let failed = next.is_err();
                // A send fails when the importer stopped (an error of its own): stop too.
                if blocks.send(next).is_err() || failed {
                    return;
                }
            }
        });
        // The loop owns the receiver: leaving it early (an error) drops it, which stops the
        // reader at its next send, before the scope waits for it.
        for block in ready {
            let block = block?;
            each(&block)?;
            if let Block::Lines { bytes, .. } = block {
                let _ = give_back.send(bytes);
            }
        }
        Ok(())
    })
}

struct BlockReader<'a, R> {
    block_bytes: usize,
    input: R,
    name: &'a str,
    progress: &'a ProgressBar,
    /// The start of a line whose end was not read yet.
    carry: Vec<u8>,
    /// Lines handed over so far.
    line_no: u64,
    /// The input's end has been read.
    done: bool,
    /// Buffers of blocks the importer is done with.
    spare: mpsc::Receiver<Vec<u8>>,
}

impl<R: Read> BlockReader<'_, R> {
    /// Append up to `want` bytes of input to `buf`; returns whether the input ended.
    fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> Result<bool> {
        let name = self.name;
        // Into the spare capacity: no zero-filling first.
        let n = (&mut self.input)
            .take(want as u64)
            .read_to_end(buf)
            .io_context(|| format!("reading {name}"))?;
        self.progress.inc(n as u64);
        Ok(n < want)
    }

    fn next_block(&mut self) -> Result<Option<Block>> {
        if self.done {
            return Ok(None);
        }
        let mut buf = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.block_bytes + (64 << 10)));
        buf.clear();
        buf.append(&mut self.carry);
        loop {
            let want = self.block_bytes.max(buf.len() * 2) - buf.len();
            let eof = self.fill(&mut buf, want)?;
            let cut = if eof {
                buf.len()
            } else {
                buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
            };
            if cut == 0 && !eof {
                if buf.len() > MAX_LINE_BYTES {
                    return self.skip_long_line(buf).map(Some);
                }
                continue; // one line longer than the buffer so far: grow it and read on
            }
            self.done = eof;
            self.carry.extend_from_slice(&buf[cut..]);
            buf.truncate(cut);
            let lines = self.split(&buf);
            return Ok(Some(Block::Lines { bytes: buf, lines }));
        }
    }

    /// Number the lines of `block` (whole lines; the last may lack its `\n` at the input's end)
    /// and note the range of each that is not blank.
    fn split(&mut self, block: &[u8]) -> Vec<(u64, usize, usize)> {
        let mut lines = Vec::with_capacity(block.len() / 128);
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', block)
            .chain((block.last() != Some(&b'\n')).then_some(block.len()));
        for end in ends {
            self.line_no += 1;
            let first = start;
            start = end + 1;
            let raw = &block[first..end];
            if !raw.iter().all(|b| b.is_ascii_whitespace()) {
                let len = raw.strip_suffix(b"\r").unwrap_or(raw).len();
                lines.push((self.line_no, first, first + len));
            }
        }
        lines
    }

    /// `buf` holds the start of a line longer than the limit: hash it up to its end without
    /// holding it, and keep what follows for the next block.
    fn skip_long_line(&mut self, mut buf: Vec<u8>) -> Result<Block> {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut len = 0u64;
        let mut eof = false;
        loop {
            let end = memchr::memchr(b'\n', &buf);
            let part = end.unwrap_or(buf.len());
            hasher.update(&buf[..part]);
            len += part as u64;
            if let Some(end) = end {
                self.carry.extend_from_slice(&buf[end + 1..]);
                break;
            }
            if eof {
                break; // the input ends inside the line
            }
            buf.clear();
            eof = self.fill(&mut buf, self.block_bytes)?;
        }
        self.line_no += 1;
        Ok(Block::TooLong {
            line: self.line_no,
            len,
            hash: hasher.digest(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line's bytes, or for one over the limit its length and hash: what the importer
    /// quarantines, whether the line came as [`Block::TooLong`] or whole in a block.
    type Line = std::result::Result<Vec<u8>, (u64, u64)>;

    fn over_limit(bytes: &[u8]) -> Line {
        Err((bytes.len() as u64, xxhash_rust::xxh3::xxh3_64(bytes)))
    }

    fn lines_of(block_bytes: usize, input: &[u8]) -> Vec<(u64, Line)> {
        let mut out = Vec::new();
        read_blocks_of(
            block_bytes,
            input,
            "test",
            &ProgressBar::hidden(),
            |block| {
                match block {
                    Block::Lines { bytes, lines } => {
                        for &(n, s, e) in lines {
                            let line = &bytes[s..e];
                            let line = if line.len() > MAX_LINE_BYTES {
                                over_limit(line)
                            } else {
                                Ok(line.to_vec())
                            };
                            out.push((n, line));
                        }
                    }
                    Block::TooLong { line, len, hash } => out.push((*line, Err((*len, *hash)))),
                }
                Ok(())
            },
        )
        .unwrap();
        out
    }

    /// Blank lines skipped but counted, `\r\n` ends trimmed, a last line without `\n` kept.
    #[test]
    fn lines_come_whole_numbered_and_in_order() {
        for block_bytes in [1, 3, BLOCK_BYTES] {
            let got = lines_of(block_bytes, b"a\n\n  \nbb\r\nc");
            let want = vec![
                (1, Ok(b"a".to_vec())),
                (4, Ok(b"bb".to_vec())),
                (5, Ok(b"c".to_vec())),
            ];
            assert_eq!(got, want, "blocks of {block_bytes}");
            assert!(lines_of(block_bytes, b"").is_empty());
            assert!(lines_of(block_bytes, b"\n\n").is_empty());
        }
    }

    /// Every line in order across many blocks, and lines over the limit (one longer than the
    /// buffer, so hashed as it streams; one the input ends inside) in their places.
    #[test]
    fn lines_over_the_limit_keep_their_place() {
        let short = |i: usize| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 300));
        let long = |len: usize, b: u8| vec![b; len];
        let mut input = Vec::new();
        let mut want: Vec<(u64, Line)> = Vec::new();
        let mut push = |line: Vec<u8>, last: bool| {
            input.extend_from_slice(&line);
            if !last {
                input.push(b'\n');
            }
            let n = want.len() as u64 + 1;
            want.push((
                n,
                if line.len() > MAX_LINE_BYTES {
                    over_limit(&line)
                } else {
                    Ok(line)
                },
            ));
        };
        for i in 0..2000 {
            push(short(i).into_bytes(), false);
        }
        push(long(3 * MAX_LINE_BYTES + 5, b'y'), false);
        push(long(MAX_LINE_BYTES, b'z'), false); // at the limit: a line like any other
        for i in 0..2000 {
            push(short(i).into_bytes(), false);
        }
        push(long(2 * MAX_LINE_BYTES, b'w'), true);
        for block_bytes in [4096, 1 << 20, BLOCK_BYTES] {
            let got = lines_of(block_bytes, &input);
            assert_eq!(got.len(), want.len(), "blocks of {block_bytes}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g == w, "blocks of {block_bytes}: line {} differs", w.0);
            }
        }
    }
}
