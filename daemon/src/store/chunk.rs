//! Gorilla-compressed sample chunks.
//!
//! Owns the bit-level encoding of (timestamp, float) pairs: delta-of-delta
//! timestamps and XOR'd values (Facebook Gorilla, as in Prometheus's XOR
//! chunk). The head chunk is appended in compressed form; closed chunks are
//! immutable `Box<[u8]>` with their time bounds so readers can skip them
//! without decoding. Must not know about series, labels, locking or I/O.
//! Decoding never panics: truncated/corrupt bytes simply end iteration.

/// Prometheus's number: large enough to amortise the per-chunk header and
/// metadata, small enough that a partial decode is cheap.
pub const SAMPLES_PER_CHUNK: u16 = 120;

/// A chunk is also cut when it would span more than this, so that sparse
/// series still release memory at retention-sized granularity.
pub const MAX_CHUNK_SPAN_MS: i64 = 2 * 3600 * 1000;

// ---------------------------------------------------------------- bits

#[derive(Debug, Default)]
struct BitWriter {
    buf: Vec<u8>,
    /// Free bits in the last byte of `buf` (0 = full / no byte yet).
    free: u8,
}

impl BitWriter {
    #[inline]
    fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if let Some(last) = self.buf.last_mut().filter(|_| bit) {
            *last |= 1 << self.free;
        }
    }

    /// Writes the low `n` bits of `v`, most significant first. n <= 64.
    #[inline]
    fn write_bits(&mut self, v: u64, n: u8) {
        let mut n = n.min(64);
        while n > 0 {
            if self.free == 0 {
                self.buf.push(0);
                self.free = 8;
            }
            let take = self.free.min(n);
            let chunk = ((v >> (n - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.buf.last_mut() {
                *last |= chunk << (self.free - take);
            }
            self.free -= take;
            n -= take;
        }
    }
}

/// Reads through a 64-bit accumulator refilled with one unaligned
/// big-endian load, so most reads are a shift and a mask.
struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` not yet loaded into `acc`.
    next: usize,
    /// Unread bits, left-aligned. Bits past `bits` are zero or the correct
    /// following stream bits, so re-OR-ing them on refill is harmless.
    acc: u64,
    bits: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            next: 0,
            acc: 0,
            bits: 0,
        }
    }

    #[inline]
    fn refill(&mut self) {
        if let Some(w) = self.data.get(self.next..self.next + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            // `bits` < 57 here, so the shift is in range.
            self.acc |= u64::from_be_bytes(word) >> self.bits;
            let take = (63 - self.bits) / 8;
            self.next += take as usize;
            self.bits += take * 8;
        } else {
            self.refill_tail();
        }
    }

    /// Last < 8 bytes of the chunk; once per chunk at most.
    #[cold]
    fn refill_tail(&mut self) {
        while self.bits <= 56 {
            let Some(&b) = self.data.get(self.next) else {
                break;
            };
            self.acc |= (b as u64) << (56 - self.bits);
            self.bits += 8;
            self.next += 1;
        }
    }

    /// Raw 64-bit fields (first sample, escaped dod, full-width XOR).
    #[cold]
    fn read_wide(&mut self, n: u32) -> Option<u64> {
        let hi = self.read_bits((n - 32) as u8)?;
        let lo = self.read_bits(32)?;
        Some((hi << 32) | lo)
    }

    #[inline(always)]
    fn read_bit(&mut self) -> Option<bool> {
        self.read_bits(1).map(|b| b == 1)
    }

    #[inline(always)]
    fn read_bits(&mut self, n: u8) -> Option<u64> {
        let n = n.min(64) as u32;
        if n == 0 {
            return Some(0);
        }
        if n > 56 {
            // The accumulator guarantees only 56 bits after a refill.
            return self.read_wide(n);
        }
        if self.bits < n {
            self.refill();
            if self.bits < n {
                return None;
            }
        }
        let v = self.acc >> (64 - n);
        self.acc <<= n;
        self.bits -= n;
        Some(v)
    }
}

// ------------------------------------------------------ dod buckets

/// (prefix bits value, prefix length, payload bits). Perfectly regular
/// scrapes cost 1 bit per timestamp. Unlike Prometheus (14/17/20 bits) the
/// first buckets are small: real scrape timestamps jitter by a few ms, and
/// with Prometheus's buckets that jitter costs 16 bits per sample; here
/// +-8 ms costs 6 bits and +-128 ms 11. 14 bits still cover the first delta
/// of a 5 s scrape, 20 bits +-8.7 min; anything else takes 64.
const DOD_BUCKETS: [(u64, u8, u8); 4] = [
    (0b10, 2, 4),
    (0b110, 3, 8),
    (0b1110, 4, 14),
    (0b11110, 5, 20),
];

#[inline]
fn fits(v: i64, bits: u8) -> bool {
    let lim = 1i64 << (bits - 1);
    v >= -lim && v < lim
}

#[inline]
fn sign_extend(v: u64, bits: u8) -> i64 {
    let shift = 64 - bits as u32;
    ((v << shift) as i64) >> shift
}

fn write_dod(w: &mut BitWriter, dod: i64) {
    if dod == 0 {
        w.write_bit(false);
        return;
    }
    for &(prefix, plen, bits) in &DOD_BUCKETS {
        if fits(dod, bits) {
            w.write_bits(prefix, plen);
            w.write_bits(dod as u64, bits);
            return;
        }
    }
    w.write_bits(0b11111, 5);
    w.write_bits(dod as u64, 64);
}

#[inline(always)]
fn read_dod(r: &mut BitReader<'_>) -> Option<i64> {
    // The prefix is unary: count leading 1s, at most one per bucket.
    let mut ones = 0;
    while ones <= DOD_BUCKETS.len() {
        if !r.read_bit()? {
            break;
        }
        ones += 1;
    }
    if ones == 0 {
        return Some(0);
    }
    match DOD_BUCKETS.get(ones - 1) {
        Some(&(_, _, bits)) => Some(sign_extend(r.read_bits(bits)?, bits)),
        None => Some(r.read_bits(64)? as i64),
    }
}

// ------------------------------------------------------- XOR values

/// Leading/trailing window of the previous XOR; `leading == NO_WINDOW` means
/// there is none yet and the next non-zero XOR must write a fresh one.
const NO_WINDOW: u8 = 0xff;

#[inline]
fn write_xor(w: &mut BitWriter, prev: u64, v: u64, leading: &mut u8, trailing: &mut u8) {
    let x = prev ^ v;
    if x == 0 {
        w.write_bit(false);
        return;
    }
    w.write_bit(true);
    // Capped at 31 because the header stores it in 5 bits.
    let lz = (x.leading_zeros() as u8).min(31);
    let tz = x.trailing_zeros() as u8;
    if *leading != NO_WINDOW && lz >= *leading && tz >= *trailing {
        w.write_bit(false);
        let sig = 64 - *leading - *trailing;
        w.write_bits(x >> *trailing, sig);
    } else {
        w.write_bit(true);
        let sig = 64 - lz - tz;
        w.write_bits(lz as u64, 5);
        // 64 significant bits do not fit in 6 bits; 0 stands for 64 since
        // a zero-width window is impossible (x != 0).
        w.write_bits((sig & 63) as u64, 6);
        w.write_bits(x >> tz, sig);
        *leading = lz;
        *trailing = tz;
    }
}

#[inline(always)]
fn read_xor(r: &mut BitReader<'_>, prev: u64, leading: &mut u8, trailing: &mut u8) -> Option<u64> {
    if !r.read_bit()? {
        return Some(prev);
    }
    if r.read_bit()? {
        let lz = r.read_bits(5)? as u8;
        let mut sig = r.read_bits(6)? as u8;
        if sig == 0 {
            sig = 64;
        }
        if lz as u32 + sig as u32 > 64 {
            return None; // corrupt
        }
        *leading = lz;
        *trailing = 64 - lz - sig;
    } else if *leading == NO_WINDOW {
        return None; // corrupt: reuse of a window that was never set
    }
    let sig = 64 - *leading - *trailing;
    let bits = r.read_bits(sig)?;
    let x = if *trailing >= 64 {
        0
    } else {
        bits << *trailing
    };
    Some(prev ^ x)
}

// ------------------------------------------------------------ chunks

/// The open chunk of a series, appended to in compressed form. `repr(C)`
/// with the per-append fields first, so together with the slot header they
/// sit in the slot's first cache line.
#[derive(Debug)]
#[repr(C)]
pub struct HeadChunk {
    t: i64,
    delta: i64,
    v: u64,
    w: BitWriter,
    num: u16,
    leading: u8,
    trailing: u8,
    min_t: i64,
}

impl HeadChunk {
    /// Initial capacity: the first sample alone costs 16 bytes; further
    /// growth by doubling ends at 256 bytes for a full chunk of typical data.
    const INITIAL_CAPACITY: usize = 32;

    pub fn new(t: i64, v: f64) -> Self {
        let mut w = BitWriter {
            buf: Vec::with_capacity(Self::INITIAL_CAPACITY),
            free: 0,
        };
        let bits = v.to_bits();
        w.write_bits(t as u64, 64);
        w.write_bits(bits, 64);
        HeadChunk {
            t,
            delta: 0,
            v: bits,
            w,
            num: 1,
            leading: NO_WINDOW,
            trailing: 0,
            min_t: t,
        }
    }

    /// Whether `t` should go into a new chunk instead. The caller guarantees
    /// `t > self.t`.
    pub fn is_full_for(&self, t: i64) -> bool {
        self.num >= SAMPLES_PER_CHUNK || t.saturating_sub(self.min_t) > MAX_CHUNK_SPAN_MS
    }

    /// Appends a sample; ordering is the caller's responsibility. Wrapping
    /// arithmetic keeps extreme timestamps (e.g. i64::MIN then i64::MAX)
    /// panic-free; decoding wraps identically, so they still round-trip.
    pub fn append(&mut self, t: i64, v: f64) {
        let delta = t.wrapping_sub(self.t);
        let dod = delta.wrapping_sub(self.delta);
        write_dod(&mut self.w, dod);
        let bits = v.to_bits();
        write_xor(
            &mut self.w,
            self.v,
            bits,
            &mut self.leading,
            &mut self.trailing,
        );
        self.t = t;
        self.delta = delta;
        self.v = bits;
        self.num += 1;
    }

    pub fn min_t(&self) -> i64 {
        self.min_t
    }
    pub fn max_t(&self) -> i64 {
        self.t
    }
    pub fn last_value_bits(&self) -> u64 {
        self.v
    }
    pub fn num_samples(&self) -> u16 {
        self.num
    }
    pub fn byte_capacity(&self) -> usize {
        self.w.buf.capacity()
    }
    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::new(&self.w.buf, self.num)
    }

    /// Freezes into an exact-size immutable chunk.
    pub fn close(self) -> ClosedChunk {
        let span = self.t.saturating_sub(self.min_t).clamp(0, u32::MAX as i64) as u32;
        ClosedChunk {
            data: self.w.buf.into_boxed_slice(),
            min_t: self.min_t,
            span,
            num: self.num,
        }
    }
}

/// An immutable chunk. `max_t` is stored as a u32 span from `min_t` (chunks
/// span at most `MAX_CHUNK_SPAN_MS`) to keep this at 32 bytes.
#[derive(Debug)]
pub struct ClosedChunk {
    data: Box<[u8]>,
    min_t: i64,
    span: u32,
    num: u16,
}

impl ClosedChunk {
    pub fn min_t(&self) -> i64 {
        self.min_t
    }
    pub fn max_t(&self) -> i64 {
        self.min_t.saturating_add(self.span as i64)
    }
    pub fn num_samples(&self) -> u16 {
        self.num
    }
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }
    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::new(&self.data, self.num)
    }
}

/// Decodes samples in time order.
pub struct ChunkIter<'a> {
    r: BitReader<'a>,
    remaining: u16,
    read: u16,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> ChunkIter<'a> {
    fn new(data: &'a [u8], num: u16) -> Self {
        ChunkIter {
            r: BitReader::new(data),
            remaining: num,
            read: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    #[inline(always)]
    fn step(&mut self) -> Option<(i64, f64)> {
        if self.read == 0 {
            self.t = self.r.read_bits(64)? as i64;
            self.v = self.r.read_bits(64)?;
        } else {
            let dod = read_dod(&mut self.r)?;
            self.delta = self.delta.wrapping_add(dod);
            self.t = self.t.wrapping_add(self.delta);
            self.v = read_xor(&mut self.r, self.v, &mut self.leading, &mut self.trailing)?;
        }
        self.read += 1;
        Some((self.t, f64::from_bits(self.v)))
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let s = self.step();
        if s.is_none() {
            self.remaining = 0;
        }
        s
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(samples: &[(i64, f64)]) -> (Vec<(i64, u64)>, usize) {
        let mut h = HeadChunk::new(samples[0].0, samples[0].1);
        for &(t, v) in &samples[1..] {
            h.append(t, v);
        }
        let head: Vec<_> = h.iter().map(|(t, v)| (t, v.to_bits())).collect();
        let c = h.close();
        let closed: Vec<_> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
        assert_eq!(head, closed);
        (closed, c.byte_len())
    }

    #[test]
    fn bit_exact_roundtrip_including_special_floats() {
        let stale = f64::from_bits(super::super::STALE_NAN_BITS);
        let s = vec![
            (1000, 1.0),
            (2000, stale),
            (2500, f64::NAN),
            (9000, -0.0),
            (9001, f64::INFINITY),
            (100_000, f64::NEG_INFINITY),
            (100_001, f64::MIN_POSITIVE),
            (100_002, 1e308),
            (100_003, stale),
            (200_000_000, 3.5),
        ];
        let (got, _) = roundtrip(&s);
        let want: Vec<_> = s.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn extreme_timestamps_do_not_panic_and_roundtrip() {
        let s = vec![(i64::MIN, 1.0), (-1, 2.0), (0, 3.0), (i64::MAX, 4.0)];
        let (got, _) = roundtrip(&s);
        assert_eq!(
            got.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![i64::MIN, -1, 0, i64::MAX]
        );
    }

    #[test]
    fn corrupt_data_ends_iteration_without_panic() {
        let mut h = HeadChunk::new(0, 1.0);
        for i in 1..50 {
            h.append(i * 1000 + (i % 3), i as f64 * 1.7);
        }
        let c = h.close();
        for cut in 0..c.data.len() {
            let n = ChunkIter::new(&c.data[..cut], c.num).count();
            assert!(n <= c.num as usize);
        }
        let garbage = [0xffu8; 40];
        let _ = ChunkIter::new(&garbage, 120).count();
    }

    #[test]
    fn realistic_compression() {
        // counter with jittered scrape times; ~1.3-2 bytes/sample expected
        let mut s = Vec::new();
        let mut v = 1000.0;
        for i in 0..120i64 {
            v += ((i * 7919) % 13) as f64;
            s.push((1_700_000_000_000 + i * 5000 + (i * 31) % 7, v));
        }
        let (_, bytes) = roundtrip(&s);
        assert!(bytes < 120 * 3, "{bytes} bytes");
        eprintln!("realistic counter: {bytes} bytes / 120 samples");
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;

    /// Pseudo-random timestamps/values hitting every dod bucket and both
    /// XOR window paths, including full 64-bit XORs.
    #[test]
    fn random_roundtrip() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let mut t = (rnd() % 1_000_000) as i64;
            let mut v = 0.0f64;
            let mut want = Vec::new();
            for _ in 0..SAMPLES_PER_CHUNK {
                let gap = match rnd() % 6 {
                    0 => 0,
                    1 => rnd() % 100,
                    2 => rnd() % 20_000,
                    3 => rnd() % 1_000_000,
                    4 => rnd() % (1 << 40),
                    _ => 5000,
                };
                t = t.wrapping_add(gap as i64 + 1);
                v = match (rnd() + round) % 4 {
                    0 => v,
                    1 => v + (rnd() % 10) as f64,
                    2 => f64::from_bits(rnd()),
                    _ => -v * 0.5,
                };
                want.push((t, v.to_bits()));
            }
            let mut h = HeadChunk::new(want[0].0, f64::from_bits(want[0].1));
            for &(t, v) in &want[1..] {
                h.append(t, f64::from_bits(v));
            }
            let got: Vec<_> = h.close().iter().map(|(t, v)| (t, v.to_bits())).collect();
            assert_eq!(got, want, "round {round}");
        }
    }
}

#[cfg(test)]
mod perf_probe {
    use super::*;

    /// `cargo test --release -- --ignored decode_speed --nocapture`
    #[test]
    #[ignore]
    fn decode_speed() {
        let mut chunks = Vec::new();
        for s in 0..10_000u64 {
            let mut v = s as f64;
            let mut h = HeadChunk::new(1_700_000_000_000, v);
            for i in 1..120i64 {
                v += ((i as u64 * 7 + s) % 13) as f64;
                h.append(1_700_000_000_000 + i * 10_000 + (i * 13 % 3), v);
            }
            chunks.push(h.close());
        }
        let t0 = std::time::Instant::now();
        let mut acc = 0.0;
        let mut out: Vec<(i64, f64)> = Vec::with_capacity(200);
        for _ in 0..5 {
            for c in &chunks {
                out.clear();
                out.extend(c.iter());
                acc += out[out.len() - 1].1;
            }
        }
        let ns = t0.elapsed().as_nanos() as f64 / (5.0 * 10_000.0 * 120.0);
        eprintln!("decode: {ns:.2} ns/sample ({acc})");
    }
}
