//! People's names in text, by a lookup of capitalised words in two lists: the most frequent
//! given names and surnames of the 1990 US Census (public domain; see the files in
//! `names/`). A lookup per word, not a pattern of thousands of names: the scan reads every
//! value. In running text a name is a given name followed by a surname ("Jane Doe"); a value
//! that is nothing but a name may be one word ("Jane"), unless that word is also a common
//! word ("May", "Jordan", "Brown").

use std::collections::HashSet;
use std::ops::Range;
use std::sync::LazyLock;

static GIVEN: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| list(include_str!("names/given.txt")));
static SURNAMES: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| list(include_str!("names/surnames.txt")));
static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| COMMON_WORDS.split_whitespace().collect());

/// Names that are also months, colours, places or everyday words: alone, or next to another
/// of them ("Grant Park", "Jordan Brown"), they say nothing of a person.
const COMMON_WORDS: &str = "\
    amber april art august austin ball bell bill bird black blue brown carolina case chad \
    chance charlotte china cook crystal daisy dallas day dean denver don faith field \
    florence fox frost georgia gold grant gray green grey guy hall hazel hill holly hope \
    houston hunt hunter india iris ivy jade jasmine jersey jordan joy june king lane lily \
    little long love madison major mark may north olive orlando page paris park pearl \
    price rice rich rose ruby savannah sharp short silver small snow south stone street \
    strong summer sydney victoria violet virginia west white will wolf wood york young \
    france spain kenya israel england holland london madrid march";

fn list(text: &'static str) -> HashSet<&'static str> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The longest name in the lists, in bytes: a longer word is no name of theirs.
const LONGEST: usize = 16;

/// A capitalised word of ASCII letters (the lists' alphabet; an apostrophe is left out, as
/// the lists spell O'Brien), lower-cased into `buf`.
fn lookup_form<'b>(word: &str, buf: &'b mut [u8; LONGEST]) -> Option<&'b str> {
    let bytes = word.as_bytes();
    if !bytes.first()?.is_ascii_uppercase() {
        return None;
    }
    let mut len = 0;
    for &b in bytes.iter().filter(|&&b| b != b'\'') {
        if !b.is_ascii_alphabetic() || len == LONGEST {
            return None;
        }
        buf[len] = b.to_ascii_lowercase();
        len += 1;
    }
    (len >= 2).then(|| std::str::from_utf8(&buf[..len]).expect("ASCII"))
}

/// What one word of text is, as far as names go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word {
    given: bool,
    surname: bool,
    common: bool,
}

fn word(text: &str) -> Option<Word> {
    let mut buf = [0; LONGEST];
    let lower = lookup_form(text, &mut buf)?;
    let w = Word {
        given: GIVEN.contains(lower),
        surname: SURNAMES.contains(lower),
        common: COMMON.contains(lower),
    };
    (w.given || w.surname).then_some(w)
}

/// The words of `text` (runs of letters, apostrophes and hyphens) with their byte ranges.
fn words(text: &str) -> impl Iterator<Item = (Range<usize>, &str)> {
    let is_part = |c: char| c.is_alphabetic() || c == '\'' || c == '-';
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, _) = rest.find(|&(_, c)| c.is_alphabetic())?;
        let mut end = text.len();
        while let Some(&(i, c)) = rest.peek() {
            if !is_part(c) {
                end = i;
                break;
            }
            rest.next();
        }
        Some((start..end, &text[start..end]))
    })
}

/// Whether a person's name (a given name, one space, a surname, not both common words)
/// starts within `starts` of `text`.
pub(super) fn holds_name(text: &str, starts: Range<usize>) -> bool {
    // Most values have no capital letter to start a name with.
    if !text.bytes().any(|b| b.is_ascii_uppercase()) {
        return false;
    }
    let mut previous: Option<(Range<usize>, Word)> = None;
    for (range, text_word) in words(text) {
        let this = word(text_word);
        if let (Some((before, first)), Some(second)) = (&previous, this)
            && first.given
            && second.surname
            && !(first.common && second.common)
            && text.get(before.end..range.start) == Some(" ")
            && starts.contains(&before.start)
        {
            return true;
        }
        previous = this.map(|w| (range, w));
    }
    false
}

/// Whether `value` is a person's name and nothing else: one to four capitalised words (an
/// initial may stand between them), the first a given name ("Jane Doe", or after a comma:
/// "Doe, Jane"), at least half of them names of the lists, none a common word. A single word
/// is a given name of three letters or more ("NG" or "Key" alone are codes and words).
pub(crate) fn is_name(value: &str) -> bool {
    let value = value.trim();
    if value.len() > 64 {
        return false;
    }
    // "Doe, Jane": the given name comes after the comma.
    let (before_comma, after_comma) = value.split_once(',').unwrap_or(("", value));
    let parts: Vec<&str> = after_comma
        .split(' ')
        .chain(before_comma.split(' '))
        .filter(|p| !p.is_empty() && !is_initial(p))
        .collect();
    if parts.is_empty() || parts.len() > 4 {
        return false;
    }
    let mut known = 0;
    for part in &parts {
        let first = part.chars().next().expect("parts are not empty");
        if !first.is_uppercase() || !part.chars().all(|c| c.is_alphabetic() || "'-".contains(c)) {
            return false;
        }
        match word(part) {
            Some(w) if w.common => return false,
            Some(_) => known += 1,
            None => {}
        }
    }
    let given = word(parts[0]).is_some_and(|w| w.given);
    given && known * 2 >= parts.len() && (parts.len() > 1 || parts[0].len() >= 3)
}

/// `J.` or `J`: a middle initial.
fn is_initial(part: &str) -> bool {
    let mut chars = part.chars();
    matches!((chars.next(), chars.next(), chars.next()), (Some(c), None | Some('.'), None) if c.is_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(text: &str) -> bool {
        holds_name(text, 0..text.len())
    }

    #[test]
    fn a_given_name_and_a_surname_in_text_are_a_name() {
        assert!(held("Call Jane Doe tomorrow"));
        assert!(held("{\"contact\": \"Maria Garcia\"}"));
        assert!(held("signed: MICHAEL JOHNSON"));
        assert!(
            held("Will Smith"),
            "a common given name before an uncommon surname"
        );
        // Not names: common words together, lower case, one name alone, words apart.
        assert!(!held("Jordan Brown leather boots"));
        assert!(!held("meet at Grant Park in May"));
        assert!(!held("jane doe"));
        assert!(!held("Dear Jane, thanks"));
        assert!(!held("Jane  Doe"));
        assert!(!held("Plain product description 12345"));
        assert!(!held("Customer Number 7"));
    }

    #[test]
    fn a_name_counts_where_it_starts() {
        let text = "xx Jane Doe";
        assert!(holds_name(text, 3..4));
        assert!(!holds_name(text, 4..text.len()));
        assert!(!holds_name(text, 0..3));
    }

    #[test]
    fn a_value_that_is_a_name() {
        for name in [
            "Jane",
            "Jane Doe",
            "Doe, Jane",
            "Mary J. Blige",
            "Jose Garcia Lopez",
            "Maria Oluwaseun",
            "Sean O'Brien",
        ] {
            assert!(is_name(name), "{name}");
        }
        // The country and the month are no names; neither are products, codes or sentences.
        for other in [
            "Jordan",
            "May",
            "Brown",
            "Doe",
            "NG",
            "Cold Call",
            "Bravo Systems",
            "Oluwaseun Adeyemi",
            "Product 5",
            "jane",
            "Acme Holdings",
            "Jane Doe called about her order yesterday",
            "",
        ] {
            assert!(!is_name(other), "{other}");
        }
    }
}
