//! Byte offsets in a configuration file turned into line:col, as an editor shows them.
//!
//! A file may hold tens of thousands of errors (it may be 4 MiB), and PID 1 reads it at
//! boot: counting each error's line and column from the start of the file (or of a
//! 4 MiB line) made that quadratic, minutes to hours. So the line starts are found once,
//! at the first error, and a column is counted on from the last one on the same line.

use std::cell::{Cell, OnceCell};

/// The positions of one file's text; see the module's documentation.
#[derive(Default)]
pub struct Positions {
    /// Where each line starts, made at the first position asked.
    line_starts: OnceCell<Vec<usize>>,
    /// The last position found: (offset, start of its line, its column).
    last: Cell<Option<(usize, usize, usize)>>,
}

impl Positions {
    /// The 1-based line and column of byte `offset` of `text` (the text is always the same).
    pub fn find(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(
                    text.bytes()
                        .enumerate()
                        .filter(|(_, b)| *b == b'\n')
                        .map(|(i, _)| i + 1),
                )
                .collect()
        });
        // The last line starting at or before `offset`; line 0 starts at 0, so there is one.
        let line = starts.partition_point(|&s| s <= offset).max(1) - 1;
        let start = starts[line];
        // A byte-order mark is no column: an editor does not show it.
        let bom = if start == 0 && text.starts_with('\u{feff}') {
            3
        } else {
            0
        };
        let count_from = |from: usize| columns(&text.as_bytes()[from.max(bom).min(offset)..offset]);
        let col = match self.last.get() {
            Some((at, from, col)) if from == start && at <= offset => col + count_from(at),
            _ => 1 + count_from(start),
        };
        self.last.set(Some((offset, start, col)));
        (line + 1, col)
    }
}

/// The position of `offset` in `text`, for a single use.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    Positions::default().find(text, offset)
}

/// Characters in `bytes`: the bytes that do not continue a UTF-8 sequence (an offset in
/// the middle of a character counts up to it, as it does from either side).
fn columns(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b & 0xc0 != 0x80).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_in_any_order() {
        let text = "\u{feff}ab\r\nçé = 1\n\nlast";
        let positions = Positions::default();
        let mut found = Vec::new();
        for offset in [0, 1, 3, 4, 12, 9, 7, 14, 15, 999, 0] {
            found.push(positions.find(text, offset));
            assert_eq!(
                *found.last().unwrap(),
                line_col(text, offset),
                "at {offset}"
            );
        }
        // Line 2 is "çé = 1": its "=" is column 4, its "1" column 6.
        let expected = [
            (1, 1),
            (1, 1),
            (1, 1),
            (1, 2),
            (2, 4),
            (2, 2),
            (2, 1),
            (2, 6),
            (2, 7),
            (4, 5),
            (1, 1),
        ];
        assert_eq!(found, expected);
    }
}
