//! Reading the parsed TOML document into the configuration's types, by hand.
//!
//! serde's derived deserializers did this before; walking the parsed tree ourselves
//! is a small fraction of their code size (this is PID 1 on small boards), and it
//! reports every bad key of a table where serde stops at the first.
//!
//! A [`Table`] hands out its keys one by one, each read as the type the caller asks
//! for through [`FromToml`]; a value of the wrong shape becomes an [`Issue`] and the
//! key is left unset. When the caller is done, every key nobody asked for is reported
//! as unknown, with the keys that were asked for as the expected ones.
//!
//! The messages keep serde's wording ("invalid type: integer `1`, expected a string",
//! "unknown field `x`, expected one of `a`, `b`, `c`"), which users know from before,
//! but name TOML's types (array, table) instead of serde's (sequence, map).

use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::de::{DeInteger, DeTable, DeValue};
use toml::Spanned;

/// Something wrong with a value's shape: where it is (a byte offset into the file)
/// and what is wrong. [`super::Source`] turns it into a `Problem` with line:col.
#[derive(Debug)]
pub struct Issue {
    pub offset: usize,
    pub message: String,
}

/// A type that can be read from a TOML value.
pub trait FromToml: Sized {
    /// Reads `value`; when it does not fit, says why in `issues` and returns `None`.
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self>;
}

/// The entries of one TOML table, taken out key by key.
pub struct Table<'i> {
    entries: DeTable<'i>,
    /// Every key asked for, in the order asked: what an unknown key could have meant.
    known: Vec<&'static str>,
    issues: Vec<Issue>,
}

impl<'i> Table<'i> {
    /// Reads a whole table with `read`, which takes its keys: returns what `read` built
    /// and every issue found, an "unknown field" for each key it did not take among them.
    pub fn read<T>(
        entries: DeTable<'i>,
        read: impl FnOnce(&mut Table<'i>) -> T,
    ) -> (T, Vec<Issue>) {
        let mut table = Table {
            entries,
            known: Vec::new(),
            issues: Vec::new(),
        };
        let built = read(&mut table);
        for (key, _) in table.entries {
            table.issues.push(Issue {
                offset: key.span().start,
                message: format!(
                    "unknown field `{}`, expected {}",
                    key.get_ref(),
                    one_of(&table.known)
                ),
            });
        }
        (built, table.issues)
    }

    /// The value of `key` read as `T`; `None` when the key is absent or its value does
    /// not fit (then an issue says why).
    pub fn take<T: FromToml>(&mut self, key: &'static str) -> Option<T> {
        let value = self.remove(key)?;
        T::from_toml(value, &mut self.issues)
    }

    /// The part of `take` that is the same for every type: kept out of line, so that
    /// each of the many `take` calls is only a call or two.
    #[inline(never)]
    fn remove(&mut self, key: &'static str) -> Option<Spanned<DeValue<'i>>> {
        self.known.push(key);
        self.entries.remove(key)
    }
}

/// A table whose keys are read by `read`, as a value of another table: `None` when
/// anything in it is wrong. `expected` says what to write when it is not a table.
pub fn table<T>(
    value: Spanned<DeValue<'_>>,
    expected: &str,
    issues: &mut Vec<Issue>,
    read: impl FnOnce(&mut Table<'_>) -> T,
) -> Option<T> {
    let offset = value.span().start;
    match value.into_inner() {
        DeValue::Table(entries) => {
            let (built, found) = Table::read(entries, read);
            let clean = found.is_empty();
            issues.extend(found);
            clean.then_some(built)
        }
        other => wrong_type(offset, &other, expected, issues),
    }
}

/// A string that must be one of `words`, each standing for a value: the enums of the
/// configuration (`type = "notify"`, `restart = "on-failure"`).
pub fn keyword<T: Copy>(
    value: Spanned<DeValue<'_>>,
    words: &[(&'static str, T)],
    issues: &mut Vec<Issue>,
) -> Option<T> {
    if let DeValue::String(text) = value.get_ref() {
        if let Some((_, meaning)) = words.iter().find(|(word, _)| word == text) {
            return Some(*meaning);
        }
    }
    let names: Vec<&str> = words.iter().map(|(word, _)| *word).collect();
    not_a_keyword(&value, &names, issues);
    None
}

/// Why `value` is none of `names`; not generic, so written once for every enum.
fn not_a_keyword(value: &Spanned<DeValue<'_>>, names: &[&str], issues: &mut Vec<Issue>) {
    let offset = value.span().start;
    let expected = one_of(names);
    match value.get_ref() {
        DeValue::String(text) => issues.push(Issue {
            offset,
            message: format!("unknown variant `{text}`, expected {expected}"),
        }),
        other => issues.push(invalid_type(offset, other, &expected)),
    }
}

/// Notes that `value` is not the type `expected` describes; `None`, for returning.
pub fn wrong_type<T>(
    offset: usize,
    value: &DeValue<'_>,
    expected: &str,
    issues: &mut Vec<Issue>,
) -> Option<T> {
    issues.push(invalid_type(offset, value, expected));
    None
}

/// "invalid type: integer `1`, expected a string", at `offset`.
fn invalid_type(offset: usize, value: &DeValue<'_>, expected: &str) -> Issue {
    Issue {
        offset,
        message: format!("invalid type: {}, expected {expected}", describe(value)),
    }
}

/// A value as messages show it: its type, and itself when it is short.
fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("string {s:?}"),
        DeValue::Integer(i) => match integer(i) {
            Some(n) => format!("integer `{n}`"),
            None => format!("integer `{i}`"),
        },
        DeValue::Float(f) => format!("floating point `{f}`"),
        DeValue::Boolean(b) => format!("boolean `{b}`"),
        DeValue::Datetime(d) => format!("datetime `{d}`"),
        DeValue::Array(_) => "array".to_owned(),
        DeValue::Table(_) => "table".to_owned(),
    }
}

/// An integer's value, whatever its radix; `None` only past 128 bits.
pub fn integer(i: &DeInteger<'_>) -> Option<i128> {
    i128::from_str_radix(i.as_str(), i.radix()).ok()
}

/// "`a`", "`a` or `b`", "one of `a`, `b`, `c`": the alternatives, as serde words them.
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

impl FromToml for String {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => wrong_type(value.span().start, other, "a string", issues),
        }
    }
}

impl FromToml for PathBuf {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        match value.get_ref() {
            DeValue::String(s) => Some(PathBuf::from(s.as_ref())),
            other => wrong_type(value.span().start, other, "path string", issues),
        }
    }
}

impl FromToml for bool {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => wrong_type(value.span().start, other, "a boolean", issues),
        }
    }
}

/// Integers of every width the configuration uses, with serde's wording when one does
/// not fit ("invalid value: integer `-1`, expected u32").
macro_rules! from_toml_integer {
    ($($t:ty),*) => {$(
        impl FromToml for $t {
            fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
                integer_value(value, stringify!($t), issues, |n| <$t>::try_from(n).ok())
            }
        }
    )*};
}
from_toml_integer!(u32, i32, u64);

/// The part of reading an integer that is the same for every width.
fn integer_value<T>(
    value: Spanned<DeValue<'_>>,
    type_name: &str,
    issues: &mut Vec<Issue>,
    fit: impl FnOnce(i128) -> Option<T>,
) -> Option<T> {
    let offset = value.span().start;
    let DeValue::Integer(i) = value.get_ref() else {
        return wrong_type(offset, value.get_ref(), type_name, issues);
    };
    let fits = integer(i).and_then(fit);
    if fits.is_none() {
        issues.push(Issue {
            offset,
            message: format!(
                "invalid value: {}, expected {type_name}",
                describe(value.get_ref())
            ),
        });
    }
    fits
}

/// Where a value was written, for checks made after reading (a dependency that is
/// not defined, a pid_file that is not absolute) to point at it.
impl<T: FromToml> FromToml for Spanned<T> {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let span = value.span();
        T::from_toml(value, issues).map(|inner| Spanned::new(span, inner))
    }
}

/// An array: every element that does not fit is reported, not only the first.
impl<T: FromToml> FromToml for Vec<T> {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let offset = value.span().start;
        match value.into_inner() {
            DeValue::Array(items) => {
                let before = issues.len();
                let mut read: Vec<T> = items
                    .into_iter()
                    .filter_map(|item| T::from_toml(item, issues))
                    .collect();
                // collect() reuses the parser's array, whose items are several times the
                // size of a T: the spec would keep all of it as long as it lives.
                read.shrink_to_fit();
                (issues.len() == before).then_some(read)
            }
            other => wrong_type(offset, &other, "an array", issues),
        }
    }
}

/// A table of arbitrary keys (`env`): every value that does not fit is reported.
impl<T: FromToml> FromToml for BTreeMap<String, T> {
    fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
        let offset = value.span().start;
        match value.into_inner() {
            DeValue::Table(entries) => {
                let before = issues.len();
                // Inserted, not collected: a collected BTreeMap sorts first, one more copy
                // of the sort in the executable.
                let mut read: BTreeMap<String, T> = BTreeMap::new();
                for (key, value) in entries {
                    if let Some(value) = T::from_toml(value, issues) {
                        read.insert(key.into_inner().into_owned(), value);
                    }
                }
                (issues.len() == before).then_some(read)
            }
            other => wrong_type(offset, &other, "a table", issues),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The issues of reading `text`'s `x` as a `T`, as "offset: message".
    fn read<T: FromToml + std::fmt::Debug>(text: &str) -> (Option<T>, Vec<String>) {
        let (root, errors) = DeTable::parse_recoverable(text);
        assert!(errors.is_empty(), "{errors:?}");
        let ((value, _), issues) = Table::read(root.into_inner(), |t| {
            let value: Option<T> = t.take("x");
            (value, ())
        });
        let issues = issues
            .into_iter()
            .map(|i| format!("{}: {}", i.offset, i.message))
            .collect();
        (value, issues)
    }

    #[test]
    fn scalars() {
        assert_eq!(read::<String>("x = 'a'"), (Some("a".into()), vec![]));
        assert_eq!(read::<bool>("x = true"), (Some(true), vec![]));
        assert_eq!(read::<u32>("x = 0x10"), (Some(16), vec![]));
        assert_eq!(
            read::<u32>("x = 4294967296"),
            (
                None,
                vec!["4: invalid value: integer `4294967296`, expected u32".into()]
            )
        );
        assert_eq!(
            read::<String>("x = 1.5"),
            (
                None,
                vec!["4: invalid type: floating point `1.5`, expected a string".into()]
            )
        );
        assert_eq!(
            read::<PathBuf>("x = 1979-05-27"),
            (
                None,
                vec!["4: invalid type: datetime `1979-05-27`, expected path string".into()]
            )
        );
        assert_eq!(
            read::<bool>("x = [true]"),
            (
                None,
                vec!["4: invalid type: array, expected a boolean".into()]
            )
        );
    }

    #[test]
    fn every_bad_element_is_reported() {
        assert_eq!(
            read::<Vec<String>>("x = [1, 'a', false]"),
            (
                None,
                vec![
                    "5: invalid type: integer `1`, expected a string".into(),
                    "13: invalid type: boolean `false`, expected a string".into(),
                ]
            )
        );
        assert_eq!(
            read::<BTreeMap<String, String>>("x = { a = 1, b = 'b', c = {} }"),
            (
                None,
                vec![
                    "10: invalid type: integer `1`, expected a string".into(),
                    "26: invalid type: table, expected a string".into(),
                ]
            )
        );
    }

    #[test]
    fn keywords() {
        #[derive(Debug, Clone, Copy, PartialEq)]
        enum Colour {
            Red,
            Green,
        }
        impl FromToml for Colour {
            fn from_toml(value: Spanned<DeValue<'_>>, issues: &mut Vec<Issue>) -> Option<Self> {
                keyword(
                    value,
                    &[("red", Colour::Red), ("green", Colour::Green)],
                    issues,
                )
            }
        }
        assert_eq!(read::<Colour>("x = 'green'"), (Some(Colour::Green), vec![]));
        assert_eq!(
            read::<Colour>("x = 'blue'"),
            (
                None,
                vec!["4: unknown variant `blue`, expected `red` or `green`".into()]
            )
        );
        assert_eq!(
            read::<Colour>("x = 1"),
            (
                None,
                vec!["4: invalid type: integer `1`, expected `red` or `green`".into()]
            )
        );
    }

    #[test]
    fn unknown_keys_list_the_known_ones() {
        let (root, _) = DeTable::parse_recoverable("b = 1\nzz = 2\na = 3\n");
        let (_, issues) = Table::read(root.into_inner(), |t| {
            let _: Option<u32> = t.take("b");
        });
        let messages: Vec<_> = issues
            .iter()
            .map(|i| (i.offset, i.message.as_str()))
            .collect();
        assert_eq!(
            messages,
            [
                (13, "unknown field `a`, expected `b`"),
                (6, "unknown field `zz`, expected `b`")
            ]
        );
    }
}
