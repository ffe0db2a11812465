//! Money as integers: micro-dollars (1 USD = 1,000,000 µ$).
//!
//! Configuration arrives as JSON numbers; they are converted through their
//! shortest decimal representation, never through float arithmetic, so
//! `1.25` is exactly 1_250_000 µ$ and `0.1` is exactly 100_000 µ$.

/// Micro-dollars.
pub type Micros = u64;

pub const MICROS_PER_USD: u64 = 1_000_000;

/// Why a decimal could not be converted exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecimalError {
    Negative,
    NotANumber,
    TooPrecise { max_decimals: u32 },
    TooLarge,
}

impl std::fmt::Display for DecimalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecimalError::Negative => write!(f, "must not be negative"),
            DecimalError::NotANumber => write!(f, "must be a finite number"),
            DecimalError::TooPrecise { max_decimals } => {
                write!(f, "has more than {max_decimals} decimal places")
            }
            DecimalError::TooLarge => write!(f, "is too large"),
        }
    }
}

/// Parses a non-negative decimal string ("1.25", "10", "0.000001") into an
/// integer count of `10^-decimals` units, exactly. More digits than
/// `decimals` after the point is an error unless they are zeros.
pub fn parse_decimal_units(text: &str, decimals: u32) -> Result<u64, DecimalError> {
    let text = text.trim();
    if let Some(magnitude) = text.strip_prefix('-') {
        // "-0" and "-0.0" are zero, anything else is negative.
        if magnitude.bytes().all(|b| b == b'0' || b == b'.') {
            return Ok(0);
        }
        return Err(DecimalError::Negative);
    }
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits_only(whole) || !digits_only(frac) {
        return Err(DecimalError::NotANumber);
    }
    let significant_frac = frac.trim_end_matches('0');
    if significant_frac.len() > decimals as usize {
        return Err(DecimalError::TooPrecise {
            max_decimals: decimals,
        });
    }
    let scale = 10u64.pow(decimals);
    let mut whole_units: u64 = 0;
    for b in whole.bytes() {
        whole_units = whole_units
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(DecimalError::TooLarge)?;
    }
    let mut frac_units: u64 = 0;
    for b in significant_frac.bytes() {
        frac_units = frac_units * 10 + u64::from(b - b'0');
    }
    frac_units *= 10u64.pow(decimals - significant_frac.len() as u32);
    whole_units
        .checked_mul(scale)
        .and_then(|v| v.checked_add(frac_units))
        .ok_or(DecimalError::TooLarge)
}

/// Converts a JSON number from configuration into exact units. The number's
/// shortest round-trip decimal form (what the operator wrote, for any value
/// with up to 15 significant digits) is what gets parsed.
pub fn number_to_units(value: f64, decimals: u32) -> Result<u64, DecimalError> {
    if !value.is_finite() {
        return Err(DecimalError::NotANumber);
    }
    parse_decimal_units(&format!("{value}"), decimals)
}

/// Formats micro-dollars as a plain decimal USD string without trailing
/// zeros: 7_000_000 → "7", 4_200_000 → "4.2", 1 → "0.000001".
/// The result is also a valid JSON number.
pub fn format_usd(micros: Micros) -> String {
    let whole = micros / MICROS_PER_USD;
    let frac = micros % MICROS_PER_USD;
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:06}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(parse_decimal_units("1.25", 6), Ok(1_250_000));
        assert_eq!(parse_decimal_units("0.125", 6), Ok(125_000));
        assert_eq!(parse_decimal_units("10", 6), Ok(10_000_000));
        assert_eq!(parse_decimal_units("0.000001", 6), Ok(1));
        assert_eq!(parse_decimal_units("0.0000010", 6), Ok(1));
        assert_eq!(parse_decimal_units(".5", 6), Ok(500_000));
        assert_eq!(parse_decimal_units("-0", 6), Ok(0));
    }

    #[test]
    fn rejects_inexact_or_invalid_decimals() {
        assert_eq!(
            parse_decimal_units("0.0000001", 6),
            Err(DecimalError::TooPrecise { max_decimals: 6 })
        );
        assert_eq!(parse_decimal_units("-1", 6), Err(DecimalError::Negative));
        assert_eq!(parse_decimal_units("1e5", 6), Err(DecimalError::NotANumber));
        assert_eq!(parse_decimal_units("", 6), Err(DecimalError::NotANumber));
        assert_eq!(parse_decimal_units(".", 6), Err(DecimalError::NotANumber));
        assert_eq!(
            parse_decimal_units("99999999999999999999", 6),
            Err(DecimalError::TooLarge)
        );
    }

    #[test]
    fn converts_config_numbers_through_their_decimal_form() {
        assert_eq!(number_to_units(0.1, 6), Ok(100_000));
        assert_eq!(number_to_units(0.275, 6), Ok(275_000));
        assert_eq!(number_to_units(100.0, 6), Ok(100_000_000));
        assert_eq!(number_to_units(0.00001, 6), Ok(10));
        assert_eq!(
            number_to_units(1e-7, 6),
            Err(DecimalError::TooPrecise { max_decimals: 6 })
        );
        assert_eq!(number_to_units(f64::NAN, 6), Err(DecimalError::NotANumber));
    }

    #[test]
    fn formats_usd_without_trailing_zeros() {
        assert_eq!(format_usd(7_000_000), "7");
        assert_eq!(format_usd(4_200_000), "4.2");
        assert_eq!(format_usd(1), "0.000001");
        assert_eq!(format_usd(0), "0");
        assert_eq!(format_usd(16_500_000), "16.5");
    }
}
