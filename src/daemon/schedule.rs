//! When the daemon refreshes: the occurrences of `schedule.cron` in `schedule.time_zone`, and
//! whether a run was missed while the daemon was down (`schedule.catch_up`).
//!
//! Occurrences come from croner in the configured zone, one at a time, rather than from
//! tokio-cron-scheduler: its `Job::new_tz` fixes the zone's UTC offset when the job is
//! created, so a nightly 03:00 job drifts by an hour after a DST change until a restart, and
//! its scheduler loop wakes every 500 ms even when nothing is due.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config::ScheduleConfig;

#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    zone: Tz,
}

impl Schedule {
    /// The schedule of a validated config.
    pub fn new(config: &ScheduleConfig) -> Schedule {
        Schedule {
            cron: config
                .parsed_cron()
                .expect("schedule.cron is validated when the config loads"),
            zone: config.time_zone,
        }
    }

    /// The first occurrence strictly after `t`; none when the expression never matches again.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The last occurrence at or before `t`.
    fn previous(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.zone), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Whether a scheduled run was missed, like a systemd timer's `Persistent=`: an occurrence
    /// passed since the last successful run finished. A daemon that has tried but never
    /// succeeded has missed one too; one with no recorded run at all (a fresh install) waits
    /// for its first occurrence rather than refreshing staging at an arbitrary hour.
    pub fn missed(
        &self,
        last_success: Option<DateTime<Utc>>,
        any_run_recorded: bool,
        now: DateTime<Utc>,
    ) -> bool {
        match (last_success, self.previous(now)) {
            (Some(success), Some(previous)) => success < previous,
            (None, Some(_)) => any_run_recorded,
            (_, None) => false,
        }
    }

    /// `t` as a person in the configured zone reads it.
    pub fn local(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.zone)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, zone: &str) -> Schedule {
        Schedule::new(&ScheduleConfig {
            cron: cron.into(),
            time_zone: zone.parse().unwrap(),
            ..ScheduleConfig::default()
        })
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_nightly_run_keeps_its_local_hour_across_daylight_saving_changes() {
        let rome = schedule("0 0 3 * * *", "Europe/Rome");
        // 03:00 CET is 02:00 UTC; after the change on 2025-03-30, 03:00 CEST is 01:00 UTC.
        let before = rome.next_after(utc("2025-03-28T12:00:00Z")).unwrap();
        assert_eq!(before, utc("2025-03-29T02:00:00Z"));
        let across = rome.next_after(before).unwrap();
        assert_eq!(across, utc("2025-03-30T01:00:00Z"));
        assert_eq!(rome.local(across), "2025-03-30 03:00:00 CEST");
        // And back in October: 03:00 CET is 02:00 UTC again.
        let autumn = rome.next_after(utc("2025-10-26T00:30:00Z")).unwrap();
        assert_eq!(autumn, utc("2025-10-26T02:00:00Z"));
    }

    #[test]
    fn next_is_strictly_after() {
        let every_second = schedule("* * * * * *", "UTC");
        let t = utc("2025-01-01T00:00:00Z");
        assert_eq!(
            every_second.next_after(t),
            Some(utc("2025-01-01T00:00:01Z"))
        );
    }

    #[test]
    fn a_run_is_missed_when_an_occurrence_passed_since_the_last_success() {
        let nightly = schedule("0 0 3 * * *", "UTC");
        let now = utc("2025-06-10T09:00:00Z");
        // Succeeded at yesterday's run: today's 03:00 passed without one.
        assert!(nightly.missed(Some(utc("2025-06-09T03:20:00Z")), true, now));
        // Succeeded at today's 03:00 run.
        assert!(!nightly.missed(Some(utc("2025-06-10T03:20:00Z")), true, now));
        // Up before 03:00, having run yesterday: nothing missed.
        let early = utc("2025-06-10T02:59:00Z");
        assert!(!nightly.missed(Some(utc("2025-06-09T03:20:00Z")), true, early));
        // Runs recorded, none succeeded: missed. Nothing recorded (fresh install): wait.
        assert!(nightly.missed(None, true, now));
        assert!(!nightly.missed(None, false, now));
    }
}
