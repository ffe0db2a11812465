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

/// Parses a non-negative decimal string ("1.25", "10", "0.000001", also
/// with an exponent as JSON writes them: "1e-5", "2.5E3") into an integer
/// count of `10^-decimals` units, exactly. Digits finer than a unit are an
/// error unless they are zeros.
pub fn parse_decimal_units(text: &str, decimals: u32) -> Result<u64, DecimalError> {
    let text = text.trim();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => {
            let exp: i32 = text
                .get(i + 1..)
                .and_then(|e| e.parse().ok())
                .ok_or(DecimalError::NotANumber)?;
            (text.get(..i).unwrap_or(""), exp)
        }
        None => (text, 0),
    };
    if let Some(magnitude) = mantissa.strip_prefix('-') {
        // "-0" and "-0.0" are zero, anything else is negative.
        if !magnitude.is_empty() && magnitude.bytes().all(|b| b == b'0' || b == b'.') {
            return Ok(0);
        }
        return Err(DecimalError::Negative);
    }
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits_only(whole) || !digits_only(frac) {
        return Err(DecimalError::NotANumber);
    }
    // All digits as one integer, and the power of ten that scales it to units.
    let digits = format!("{whole}{frac}");
    let digits = digits.trim_start_matches('0');
    let shift = i64::from(decimals) + i64::from(exponent) - frac.len() as i64;
    let significant = digits.trim_end_matches('0');
    let trailing_zeros = (digits.len() - significant.len()) as i64;
    if significant.is_empty() {
        return Ok(0);
    }
    if shift + trailing_zeros < 0 {
        return Err(DecimalError::TooPrecise {
            max_decimals: decimals,
        });
    }
    let mut value: u64 = 0;
    for b in significant.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(DecimalError::TooLarge)?;
    }
    let scale = u32::try_from(shift + trailing_zeros).map_err(|_| DecimalError::TooLarge)?;
    10u64
        .checked_pow(scale)
        .and_then(|p| value.checked_mul(p))
        .ok_or(DecimalError::TooLarge)
}

/// Converts a JSON number from configuration into exact units, through
/// its decimal text (what the operator wrote), never float arithmetic.
pub fn json_number_to_units(
    value: &serde_json::Number,
    decimals: u32,
) -> Result<u64, DecimalError> {
    parse_decimal_units(&value.to_string(), decimals)
}

/// Formats micro-dollars as a plain decimal USD string without trailing
/// zeros: 7_000_000 → "7", 4_200_000 → "4.2", 1 → "0.000001".
/// The result is also a valid JSON number.
pub fn format_usd(micros: Micros) -> String {
    usd_text(micros).to_string()
}

/// [`format_usd`]'s text without an allocation (filter state and headers
/// of every priced response).
pub fn usd_text(micros: Micros) -> DecimalText {
    decimal_text(micros, 6)
}

/// A count of `10^-decimals` units as plain decimal text without trailing
/// zeros (the inverse of [`parse_decimal_units`]), on the stack;
/// `decimals` at most 19. Digits are written by hand: this runs for every
/// priced response (filter state, headers), and the formatting machinery
/// costs several times more.
pub fn decimal_text(units: u64, decimals: u32) -> DecimalText {
    let decimals = decimals.min(19) as usize;
    // Positions past the last digit are '0': at least one digit before the point.
    let (digits, used) = decimal_digits(units);
    let all = digits.get(..used.max(decimals + 1)).unwrap_or(&digits);
    let (fraction, whole) = all.split_at(decimals.min(all.len()));
    let significant = fraction.iter().position(|&d| d != b'0');
    let fraction = significant
        .and_then(|first| fraction.get(first..))
        .unwrap_or(&[]);
    let point: &[u8] = if fraction.is_empty() { b"" } else { b"." };
    let mut text = DecimalText::new();
    text.push(whole.iter().rev().copied());
    text.push(point.iter().copied());
    text.push(fraction.iter().rev().copied());
    text
}

/// Decimal text made by [`decimal_text`]: at most 20 digits of a `u64` and
/// a point (or "0." and 19 decimals).
pub type DecimalText = crate::inline_text::InlineText<21>;

/// The decimal digits of `n`, least significant first, and how many there
/// are (none for 0); the buffer's positions past them are '0'. Written by
/// hand for text made on every request, and divided as u32 once the value
/// fits: u64 division is a library call in Wasm (below $4,294 in
/// micro-dollars, nearly always).
pub(crate) fn decimal_digits(n: u64) -> ([u8; 20], usize) {
    // A u64 has at most 20 digits.
    let mut digits = [b'0'; 20];
    let mut used = 0;
    let mut put = |digit: u8| {
        if let Some(d) = digits.get_mut(used) {
            *d = b'0' + digit;
        }
        used += 1;
    };
    let mut rest = n;
    while rest > u64::from(u32::MAX) {
        put((rest % 10) as u8);
        rest /= 10;
    }
    let mut rest = rest as u32;
    while rest > 0 {
        put((rest % 10) as u8);
        rest /= 10;
    }
    (digits, used)
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
        assert_eq!(parse_decimal_units("1x5", 6), Err(DecimalError::NotANumber));
        assert_eq!(parse_decimal_units("1e5", 6), Ok(100_000_000_000));
        assert_eq!(parse_decimal_units("", 6), Err(DecimalError::NotANumber));
        assert_eq!(parse_decimal_units(".", 6), Err(DecimalError::NotANumber));
        assert_eq!(
            parse_decimal_units("99999999999999999999", 6),
            Err(DecimalError::TooLarge)
        );
    }

    fn json(text: &str) -> Result<u64, DecimalError> {
        let n: serde_json::Number = serde_json::from_str(text).unwrap();
        json_number_to_units(&n, 6)
    }

    #[test]
    fn converts_config_numbers_through_their_decimal_form() {
        assert_eq!(json("0.1"), Ok(100_000));
        assert_eq!(json("0.275"), Ok(275_000));
        assert_eq!(json("100.0"), Ok(100_000_000));
        assert_eq!(json("100"), Ok(100_000_000));
        assert_eq!(json("0.00001"), Ok(10));
        assert_eq!(json("1e-5"), Ok(10));
        assert_eq!(json("1.5E2"), Ok(150_000_000));
        assert_eq!(
            json("1e-7"),
            Err(DecimalError::TooPrecise { max_decimals: 6 })
        );
        assert_eq!(json("-2"), Err(DecimalError::Negative));
        assert_eq!(json("1e30"), Err(DecimalError::TooLarge));
    }

    #[test]
    fn exponents_in_decimal_text() {
        assert_eq!(parse_decimal_units("12.5e-1", 6), Ok(1_250_000));
        assert_eq!(parse_decimal_units("0.000000e3", 6), Ok(0));
        assert_eq!(parse_decimal_units("10000000e-13", 6), Ok(1));
        assert_eq!(parse_decimal_units("1e", 6), Err(DecimalError::NotANumber));
        assert_eq!(parse_decimal_units("e5", 6), Err(DecimalError::NotANumber));
    }

    #[test]
    fn formats_usd_without_trailing_zeros() {
        assert_eq!(format_usd(7_000_000), "7");
        assert_eq!(format_usd(4_200_000), "4.2");
        assert_eq!(format_usd(1), "0.000001");
        assert_eq!(format_usd(0), "0");
        assert_eq!(format_usd(16_500_000), "16.5");
        assert_eq!(format_usd(u64::MAX), "18446744073709.551615");
        assert_eq!(decimal_text(u64::MAX, 19), "1.8446744073709551615");
        assert_eq!(decimal_text(10, 0), "10");
        // The longest texts: all 20 digits, and a 19-decimal fraction.
        assert_eq!(decimal_text(u64::MAX, 0), "18446744073709551615");
        assert_eq!(decimal_text(1, 19), "0.0000000000000000001");
    }

    proptest::proptest! {
        /// The hand-written digits say what the formatting machinery says,
        /// and parse back to the same units.
        #[test]
        fn formatted_units_parse_back(units in proptest::prelude::any::<u64>(), decimals in 0u32..=19) {
            let text = decimal_text(units, decimals).to_string();
            let scale = 10u64.pow(decimals);
            let (whole, frac) = (units / scale, units % scale);
            let expected = if frac == 0 {
                whole.to_string()
            } else {
                let frac = format!("{frac:0width$}", width = decimals as usize);
                format!("{whole}.{}", frac.trim_end_matches('0'))
            };
            proptest::prop_assert_eq!(&text, &expected);
            if decimals <= 6 {
                proptest::prop_assert_eq!(parse_decimal_units(&text, decimals), Ok(units));
            }
        }
    }
}
