//! Budget windows: fixed lengths aligned to the Unix epoch, or UTC calendar
//! days and months (a month with its true length).

/// How long a budget rule's spend accumulates before it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// A calendar day: 00:00 UTC to 00:00 UTC.
    Day,
    /// A calendar month: the 1st at 00:00 UTC to the next 1st.
    Month,
    /// A fixed number of seconds, windows aligned to the Unix epoch
    /// (`minute` = 60, `hour` = 3600).
    Seconds(u64),
}

const DAY_MS: u64 = 86_400_000;

/// Days since 1970-01-01 of the first day of `month` (1-12) of `year`
/// (the proleptic Gregorian calendar; years from 1970).
fn days_from_civil(year: u64, month: u64) -> u64 {
    // Howard Hinnant's algorithm, shifted so the year starts in March.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5; // day 1 of the month
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1-12) of a day counted from 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month)
}

impl Window {
    /// The window containing `now_ms`: `[start, end)` in ms since the epoch.
    pub fn bounds(self, now_ms: u64) -> (u64, u64) {
        match self {
            Window::Seconds(s) => {
                let len = s.saturating_mul(1000).max(1);
                let start = now_ms - now_ms % len;
                (start, start.saturating_add(len))
            }
            Window::Day => {
                let start = now_ms - now_ms % DAY_MS;
                (start, start + DAY_MS)
            }
            Window::Month => {
                let (year, month) = civil_from_days(now_ms / DAY_MS);
                let start = days_from_civil(year, month) * DAY_MS;
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                (start, days_from_civil(next_year, next_month) * DAY_MS)
            }
        }
    }

    /// `retry-after` for a refusal at `now`: whole seconds until the
    /// window ends, rounded up (at least 1).
    pub fn retry_after_s(self, now_ms: u64) -> u64 {
        let (_, end) = self.bounds(now_ms);
        end.saturating_sub(now_ms).div_ceil(1000).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ms since the epoch of a UTC date and time.
    fn at(year: u64, month: u64, day: u64, h: u64, m: u64, s: u64) -> u64 {
        ((days_from_civil(year, month) + day - 1) * 86_400 + h * 3600 + m * 60 + s) * 1000
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1), 0);
        assert_eq!(days_from_civil(2000, 3), 11_017);
        for days in (0..200_000).step_by(13) {
            let (y, m) = civil_from_days(days);
            let first = days_from_civil(y, m);
            assert!(first <= days && days < first + 31, "{days}");
            assert_eq!(civil_from_days(first), (y, m));
        }
        // 2026-12-02T04:41:20Z.
        assert_eq!(at(2026, 12, 2, 4, 41, 20), 1_796_186_480_000);
    }

    #[test]
    fn months_have_their_true_length() {
        let month_len = |y, m| {
            let (start, end) = Window::Month.bounds(at(y, m, 15, 12, 0, 0));
            assert_eq!(start, at(y, m, 1, 0, 0, 0));
            (end - start) / DAY_MS
        };
        assert_eq!(month_len(2026, 1), 31);
        assert_eq!(month_len(2026, 2), 28);
        assert_eq!(month_len(2028, 2), 29, "leap year");
        assert_eq!(month_len(2100, 2), 28, "not a leap year");
        assert_eq!(month_len(2000, 2), 29, "a leap year");
        assert_eq!(month_len(2026, 4), 30);
        assert_eq!(month_len(2026, 12), 31);
        // December ends at the next year's first day.
        let (_, end) = Window::Month.bounds(at(2026, 12, 31, 23, 59, 59));
        assert_eq!(end, at(2027, 1, 1, 0, 0, 0));
        // The first and last millisecond belong to their own month.
        let first = at(2026, 3, 1, 0, 0, 0);
        assert_eq!(Window::Month.bounds(first).0, first);
        assert_eq!(Window::Month.bounds(first - 1).1, first);
    }

    #[test]
    fn days_and_fixed_windows() {
        let now = at(2026, 12, 2, 4, 41, 20);
        assert_eq!(
            Window::Day.bounds(now),
            (at(2026, 12, 2, 0, 0, 0), at(2026, 12, 3, 0, 0, 0))
        );
        assert_eq!(
            Window::Seconds(3600).bounds(now),
            (at(2026, 12, 2, 4, 0, 0), at(2026, 12, 2, 5, 0, 0))
        );
        assert_eq!(
            Window::Seconds(60).bounds(now),
            (at(2026, 12, 2, 4, 41, 0), at(2026, 12, 2, 4, 42, 0))
        );
        // Aligned to the epoch, not to the day.
        let (start, end) = Window::Seconds(7).bounds(now);
        assert_eq!((start % 7000, end - start), (0, 7000));
        assert!(start <= now && now < end);
    }

    #[test]
    fn retry_after_rounds_up_to_the_window_end() {
        let now = at(2026, 12, 2, 4, 41, 20) + 1; // one millisecond past the second
        assert_eq!(
            Window::Day.retry_after_s(now),
            (at(2026, 12, 3, 0, 0, 0) - now).div_ceil(1000)
        );
        assert_eq!(Window::Day.retry_after_s(now), 19 * 3600 + 18 * 60 + 40);
        assert_eq!(
            Window::Month.retry_after_s(now),
            (at(2027, 1, 1, 0, 0, 0) - now).div_ceil(1000)
        );
        assert_eq!(Window::Seconds(60).retry_after_s(now), 40);
        // Exactly at the boundary: a whole new window.
        assert_eq!(
            Window::Seconds(60).retry_after_s(at(2026, 1, 1, 0, 0, 0)),
            60
        );
        assert_eq!(
            Window::Seconds(60).retry_after_s(at(2026, 1, 1, 0, 0, 59) + 999),
            1
        );
    }
}
