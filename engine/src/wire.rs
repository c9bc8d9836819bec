//! The byte encoding of what `ember ctl reexec` hands to the next binary: fixed-width
//! little-endian numbers, length-prefixed strings, a byte before each optional value.
//! Written and read field by field, in the same order, by plain (non-generic) code: the
//! handover's types through serde's derives and serde_json cost PID 1 about 70 KB (a
//! visitor per type, for both a map and a sequence), this a few.
//!
//! The methods are kept out of line (`inline(never)`): a handover is read once, and
//! each call site is then a call, not a copy of the checks and their messages.
//!
//! Nothing read is trusted: every read checks what is left, and a length longer than the
//! rest is refused before anything is allocated for it.

use std::time::Duration;

/// Builds the bytes.
#[derive(Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    #[inline(never)]
    pub fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    #[inline(never)]
    pub fn u64(&mut self, v: u64) {
        self.raw(&v.to_le_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.u64(v as u64);
    }

    #[inline(never)]
    pub fn bool(&mut self, v: bool) {
        self.bytes.push(u8::from(v));
    }

    /// A count of what follows (a list's length).
    pub fn count(&mut self, n: usize) {
        self.u64(n as u64);
    }

    #[inline(never)]
    pub fn str(&mut self, s: &str) {
        self.count(s.len());
        self.raw(s.as_bytes());
    }

    #[inline(never)]
    pub fn duration(&mut self, d: Duration) {
        self.u64(d.as_secs());
        self.u64(u64::from(d.subsec_nanos()));
    }

    /// Whether an optional value follows; the caller writes it when it does.
    pub fn some(&mut self, present: bool) {
        self.bool(present);
    }

    #[inline(never)]
    pub fn opt_u64(&mut self, v: Option<u64>) {
        self.some(v.is_some());
        if let Some(v) = v {
            self.u64(v);
        }
    }

    #[inline(never)]
    pub fn opt_i64(&mut self, v: Option<i64>) {
        self.opt_u64(v.map(|v| v as u64));
    }

    #[inline(never)]
    pub fn opt_str(&mut self, v: Option<&str>) {
        self.some(v.is_some());
        if let Some(v) = v {
            self.str(v);
        }
    }

    #[inline(never)]
    pub fn opt_duration(&mut self, v: Option<Duration>) {
        self.some(v.is_some());
        if let Some(v) = v {
            self.duration(v);
        }
    }
}

/// Reads the bytes back, in the order they were written. A read that fails notes why
/// (the first failure, with where) and returns a default value, and so does every read
/// after it: a reader's code is a straight run of reads, with one check at the end
/// ([`Reader::finish`]), not a branch after each (which, with what each branch drops, cost
/// PID 1 several times the reads themselves).
pub struct Reader<'a> {
    all: usize,
    rest: &'a [u8],
    error: Option<Error>,
}

/// Why the bytes could not be read.
pub type Error = String;

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            all: bytes.len(),
            rest: bytes,
            error: None,
        }
    }

    /// Everything read, or the first failure: bytes missing, bytes left over, or a value
    /// out of place.
    pub fn finish(self) -> Result<(), Error> {
        match self.error {
            Some(e) => Err(e),
            None if !self.rest.is_empty() => {
                Err(format!("{} bytes are left after its end", self.rest.len()))
            }
            None => Ok(()),
        }
    }

    /// Notes the first failure; nothing is read after it.
    #[inline(never)]
    pub fn fail(&mut self, why: &str) {
        if self.error.is_none() {
            self.error = Some(format!("at byte {}: {why}", self.all - self.rest.len()));
        }
        self.rest = &[];
    }

    #[inline(never)]
    pub fn raw(&mut self, n: usize) -> &'a [u8] {
        if n > self.rest.len() {
            self.fail(&format!(
                "it ends early ({n} bytes wanted, {} left)",
                self.rest.len()
            ));
            return &[];
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        taken
    }

    #[inline(never)]
    pub fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        if let Ok(b) = <[u8; 8]>::try_from(self.raw(8)) {
            bytes = b;
        }
        u64::from_le_bytes(bytes)
    }

    pub fn i64(&mut self) -> i64 {
        self.u64() as i64
    }

    /// A u64 that must fit `T` (a u32...).
    pub fn narrow<T: TryFrom<u64> + Default>(&mut self) -> T {
        let v = self.u64();
        T::try_from(v).unwrap_or_else(|_| {
            self.fail(&format!("{v} is out of range"));
            T::default()
        })
    }

    /// An i64 that must fit `T` (a pid, an fd, a signal's number...).
    pub fn narrow_signed<T: TryFrom<i64> + Default>(&mut self) -> T {
        let v = self.i64();
        T::try_from(v).unwrap_or_else(|_| {
            self.fail(&format!("{v} is out of range"));
            T::default()
        })
    }

    #[inline(never)]
    pub fn bool(&mut self) -> bool {
        match self.raw(1) {
            [0] | [] => false,
            [1] => true,
            [b, ..] => {
                let b = *b;
                self.fail(&format!("{b} is not a boolean"));
                false
            }
        }
    }

    /// A count of what follows, each of at least one byte: never more than is left, so a
    /// corrupt count cannot make a reader allocate for it (or loop long).
    #[inline(never)]
    pub fn count(&mut self) -> usize {
        let n = self.u64();
        if n > self.rest.len() as u64 {
            self.fail(&format!(
                "a count of {n} with {} bytes left",
                self.rest.len()
            ));
            return 0;
        }
        n as usize
    }

    #[inline(never)]
    pub fn str(&mut self) -> String {
        let n = self.count();
        let bytes = self.raw(n);
        match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(e) => {
                self.fail(&format!("a string that is not UTF-8: {e}"));
                String::new()
            }
        }
    }

    /// A word of the protocol's (a state, a sub-state, a want...), written with `word()`;
    /// `None` when it is not one (and the reader has failed).
    pub fn word<T: std::str::FromStr<Err = String>>(&mut self) -> Option<T> {
        let word = self.str();
        word.parse().map_err(|e: String| self.fail(&e)).ok()
    }

    #[inline(never)]
    pub fn duration(&mut self) -> Duration {
        let secs = self.u64();
        let nanos = self.narrow::<u32>();
        if nanos >= 1_000_000_000 {
            self.fail(&format!("{nanos} ns is not under a second"));
            return Duration::ZERO;
        }
        Duration::new(secs, nanos)
    }

    /// Whether an optional value follows.
    pub fn some(&mut self) -> bool {
        self.bool()
    }

    #[inline(never)]
    pub fn opt_u64(&mut self) -> Option<u64> {
        self.some().then(|| self.u64())
    }

    #[inline(never)]
    pub fn opt_i64(&mut self) -> Option<i64> {
        self.some().then(|| self.i64())
    }

    /// An optional pid, fd or exit code.
    #[inline(never)]
    pub fn opt_i32(&mut self) -> Option<i32> {
        self.some().then(|| self.narrow_signed())
    }

    #[inline(never)]
    pub fn opt_str(&mut self) -> Option<String> {
        self.some().then(|| self.str())
    }

    #[inline(never)]
    pub fn opt_duration(&mut self) -> Option<Duration> {
        self.some().then(|| self.duration())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_in_order() {
        let mut w = Writer::default();
        w.u64(u64::MAX);
        w.i64(-5);
        w.bool(true);
        w.str("wörker@1");
        w.duration(Duration::new(3, 999_999_999));
        w.opt_u64(None);
        w.opt_str(Some(""));
        w.opt_duration(Some(Duration::ZERO));
        w.opt_i64(Some(-1));
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u64(), u64::MAX);
        assert_eq!(r.i64(), -5);
        assert!(r.bool());
        assert_eq!(r.str(), "wörker@1");
        assert_eq!(r.duration(), Duration::new(3, 999_999_999));
        assert_eq!(r.opt_u64(), None);
        assert_eq!(r.opt_str(), Some(String::new()));
        assert_eq!(r.opt_duration(), Some(Duration::ZERO));
        assert_eq!(r.opt_i32(), Some(-1));
        assert_eq!(r.finish(), Ok(()));
    }

    /// What `write` produced, read by `read`: the error, if any.
    fn reading(write: impl Fn(&mut Writer), read: impl Fn(&mut Reader)) -> Result<(), Error> {
        let mut w = Writer::default();
        write(&mut w);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        read(&mut r);
        r.finish()
    }

    #[test]
    fn bad_bytes_are_refused_with_why_and_where_never_allocated_for() {
        // Truncated anywhere.
        let mut w = Writer::default();
        w.str("hello");
        let bytes = w.into_bytes();
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            assert_eq!(r.str(), "");
            assert!(r.finish().is_err(), "cut at {cut}");
        }
        // A huge count: refused, not allocated for.
        let e = reading(|w| w.u64(u64::MAX), |r| drop(r.str())).unwrap_err();
        assert!(e.contains("at byte 8: a count of"), "{e}");
        // The first failure is the one told; nothing is read after it.
        let e = reading(
            |w| {
                w.u64(1);
                w.raw(&[2]);
                w.str("after");
            },
            |r| {
                r.u64();
                r.bool();
                assert_eq!(r.str(), "");
            },
        )
        .unwrap_err();
        assert_eq!(e, "at byte 9: 2 is not a boolean");
        // Not UTF-8, not a duration, out of range, not a word, bytes left over.
        let e = reading(
            |w| {
                w.count(1);
                w.raw(&[0xff]);
            },
            |r| drop(r.str()),
        )
        .unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
        let e = reading(
            |w| {
                w.u64(1);
                w.u64(1_000_000_000);
            },
            |r| {
                r.duration();
            },
        )
        .unwrap_err();
        assert!(e.contains("not under a second"), "{e}");
        let e = reading(
            |w| w.u64(u64::from(u32::MAX) + 1),
            |r| {
                r.narrow::<u32>();
            },
        )
        .unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let e = reading(
            |w| w.str("sideways"),
            |r| assert_eq!(r.word::<ember_ipc::State>(), None),
        )
        .unwrap_err();
        assert!(e.contains("sideways"), "{e}");
        let e = reading(|w| w.u64(7), |_| ()).unwrap_err();
        assert!(e.contains("8 bytes are left"), "{e}");
    }
}
