//! How a reported model name relates to a price table's names.
//!
//! Only two rewrites are allowed, both of names OpenAI itself derives from a
//! base model: a **snapshot date** suffix (`gpt-5-mini-2025-08-07` →
//! `gpt-5-mini`, `gpt-4-0613` → `gpt-4`) and a **fine-tune** suffix
//! (`ft:gpt-4o-mini-2024-07-18:org::id` → `ft:gpt-4o-mini-2024-07-18`).
//! Anything else is a different model: `gpt-5.5` is not `gpt-5`.

/// The name without its snapshot date, if it ends in one: `-YYYY-MM-DD`
/// or `-MMDD` (both forms OpenAI uses).
pub fn strip_snapshot_date(name: &str) -> Option<&str> {
    let long = name.len().checked_sub(11).and_then(|at| {
        let (base, suffix) = (name.get(..at)?, name.get(at..)?.as_bytes());
        let ok = matches!(suffix, [b'-', y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2]
            if [y1, y2, y3, y4].iter().all(|b| b.is_ascii_digit())
                && is_month_day(*m1, *m2, *d1, *d2));
        ok.then_some(base)
    });
    long.or_else(|| {
        let at = name.len().checked_sub(5)?;
        let (base, suffix) = (name.get(..at)?, name.get(at..)?.as_bytes());
        let ok = matches!(suffix, [b'-', m1, m2, d1, d2] if is_month_day(*m1, *m2, *d1, *d2));
        ok.then_some(base)
    })
    .filter(|base| !base.is_empty())
}

fn is_month_day(m1: u8, m2: u8, d1: u8, d2: u8) -> bool {
    let digit = |b: u8| b.is_ascii_digit().then(|| u32::from(b - b'0'));
    match (digit(m1), digit(m2), digit(d1), digit(d2)) {
        (Some(m1), Some(m2), Some(d1), Some(d2)) => {
            let (month, day) = (m1 * 10 + m2, d1 * 10 + d2);
            (1..=12).contains(&month) && (1..=31).contains(&day)
        }
        _ => false,
    }
}

/// A fine-tuned model's base entry name: `ft:<base>:<org>:<suffix>:<id>` → `ft:<base>`.
pub fn fine_tune_base(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("ft:")?;
    let base_len = rest.find(':')?;
    name.get(..3 + base_len)
}

/// The names a reported model may be priced under, most specific first:
/// the name itself, its fine-tune base, and each without a snapshot date.
pub fn candidates(reported: &str) -> impl Iterator<Item = &str> {
    let fine_tune = fine_tune_base(reported);
    let names = [Some(reported), fine_tune];
    names
        .into_iter()
        .flatten()
        .flat_map(|n| [Some(n), strip_snapshot_date(n)])
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_both_date_forms_and_nothing_else() {
        assert_eq!(
            strip_snapshot_date("gpt-5-mini-2025-08-07"),
            Some("gpt-5-mini")
        );
        assert_eq!(strip_snapshot_date("gpt-4o-2024-05-13"), Some("gpt-4o"));
        assert_eq!(strip_snapshot_date("gpt-4-0613"), Some("gpt-4"));
        assert_eq!(
            strip_snapshot_date("gpt-3.5-turbo-0125"),
            Some("gpt-3.5-turbo")
        );
        for not_dated in [
            "gpt-5.5",
            "gpt-5.4-mini",
            "gpt-realtime-2",
            "gpt-6-sol",
            "gpt-5",
            "gpt-4-1106-preview",
            "text-embedding-3-small",
            "o4-mini",
            "gpt-4-1399",
            "gpt-4-2025-13-01",
            "-0613",
            "",
        ] {
            assert_eq!(strip_snapshot_date(not_dated), None, "{not_dated}");
        }
    }

    #[test]
    fn fine_tunes_resolve_to_their_base_entry() {
        assert_eq!(
            fine_tune_base("ft:gpt-4o-mini-2024-07-18:acme::9xYz"),
            Some("ft:gpt-4o-mini-2024-07-18")
        );
        assert_eq!(fine_tune_base("ft:gpt-4o-mini-2024-07-18"), None);
        assert_eq!(fine_tune_base("gpt-4o"), None);
        let all: Vec<&str> = candidates("ft:gpt-4.1-2025-04-14:acme:x:1").collect();
        assert_eq!(
            all,
            [
                "ft:gpt-4.1-2025-04-14:acme:x:1",
                "ft:gpt-4.1-2025-04-14",
                "ft:gpt-4.1"
            ]
        );
        let all: Vec<&str> = candidates("gpt-5.5").collect();
        assert_eq!(all, ["gpt-5.5"]);
    }
}
