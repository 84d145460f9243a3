//! The value types written as text in the config file: durations ("26h"), sizes ("512MiB"),
//! time zones ("Europe/Rome"), table names ("public.users") and the media delete limit ("10%"
//! or a count), with the serde deserializers the schema names in `deserialize_with`.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::table::TableName;

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;

/// How many staging-only media objects a run may delete.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxDelete {
    Count(u64),
    Percent(f64),
}

impl MaxDelete {
    /// The largest number of deletes allowed in a target holding `target_objects`.
    pub fn limit(self, target_objects: u64) -> u64 {
        match self {
            MaxDelete::Count(n) => n,
            MaxDelete::Percent(p) => (target_objects as f64 * p / 100.0).floor() as u64,
        }
    }
}

impl FromStr for MaxDelete {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("expected a count like 500 or a percentage like \"10%\", got {s:?}");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(MaxDelete::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse().map(MaxDelete::Count).map_err(|_| bad()),
        }
    }
}

impl<'de> Deserialize<'de> for MaxDelete {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(MaxDelete::Count(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?} ({e}); use a form like \"26h\" or \"90s\""))
}

pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// A duration that may be switched off: "off" or "0" is `None`.
pub fn de_watch<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    if ["off", "0"].contains(&text.trim()) {
        return Ok(None);
    }
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A size in bytes: a plain number, or a number with a unit such as "512MiB", "5 GiB", "64MB"
/// (bytesize's units: KB is 1000 bytes, KiB 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| {
            format!("invalid size {text:?}; use a form like \"512MiB\", \"5GiB\" or \"64MB\"")
        })
}

pub fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(n) => Ok(n),
        Raw::Text(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

pub fn de_time_zone<'de, D: Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown time zone {text:?}; use an IANA name like \"Europe/Rome\""
        ))
    })
}

pub fn de_table<'de, D: Deserializer<'de>>(d: D) -> Result<TableName, D::Error> {
    let text = String::deserialize(d)?;
    TableName::parse(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{MINIMAL, key_of, load};

    #[test]
    fn the_watch_defaults_to_15_minutes_and_switches_off() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.schedule.watch, Some(Duration::from_secs(900)));
        for off in ["off", "0"] {
            let c = load(&format!("{MINIMAL}[schedule]\nwatch = \"{off}\"\n"), &[]).unwrap();
            assert_eq!(c.schedule.watch, None);
        }
        let c = load(&format!("{MINIMAL}[schedule]\nwatch = \"2s\"\n"), &[]).unwrap();
        assert_eq!(c.schedule.watch, Some(Duration::from_secs(2)));
        let err = load(&format!("{MINIMAL}[schedule]\nwatch = \"often\"\n"), &[]).unwrap_err();
        assert_eq!(key_of(err), "schedule.watch");
    }

    #[test]
    fn max_delete_parses_counts_and_percentages() {
        assert_eq!("10%".parse::<MaxDelete>().unwrap().limit(1000), 100);
        assert_eq!("250".parse::<MaxDelete>().unwrap().limit(10), 250);
        assert!("150%".parse::<MaxDelete>().is_err());
    }

    #[test]
    fn sizes_parse_with_units_and_name_their_key() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 * MIB);
        assert_eq!(parse_size("5 GiB").unwrap(), 5 * GIB);
        assert_eq!(parse_size("64MB").unwrap(), 64_000_000);
        assert_eq!(parse_size("1048576").unwrap(), MIB);
        assert!(parse_size("5 parsecs").is_err());
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.media.multipart_threshold, 5 * GIB);
        assert_eq!(c.media.part_size, 512 * MIB);
        let media =
            "[media]\nenabled = false\nmultipart_threshold = \"8MiB\"\npart_size = 6291456\n";
        let c = load(&format!("{MINIMAL}{media}"), &[]).unwrap();
        assert_eq!(
            (c.media.multipart_threshold, c.media.part_size),
            (8 * MIB, 6 * MIB)
        );
        let err = load(&format!("{MINIMAL}[media]\npart_size = \"lots\"\n"), &[]).unwrap_err();
        assert_eq!(key_of(err), "media.part_size");
    }
}
