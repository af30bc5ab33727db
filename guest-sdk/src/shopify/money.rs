use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// An amount of money exactly as Shopify sent it, e.g. `"598.94"`.
///
/// Shopify sends money as decimal strings so that no float ever rounds a
/// price; this type keeps the text and only interprets it on request:
///
/// * [`Money::cents`] / [`Money::minor_units`]: exact integers, for sums and
///   comparisons that must not be off by a cent;
/// * [`Money::cmp_amount`]: exact comparison of any two amounts, whatever
///   their number of decimals (`"500"` equals `"500.00"`);
/// * [`Money::as_f64`]: for display or rough maths.
///
/// It deserialises from a JSON string or number (so a route config may say
/// `"threshold": 500` or `"500.00"`) and serialises back as a string. The
/// derived `PartialEq` compares the text; use [`Money::cmp_amount`] to compare
/// values.
///
/// ```
/// use ionflux_guest::shopify::Money;
/// let total = Money::new("598.94");
/// assert_eq!(total.cents(), Some(59894));
/// assert_eq!(total.as_f64(), Some(598.94));
/// assert!(total.cmp_amount(&Money::new("500")).unwrap().is_gt());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Money(String);

impl Money {
    pub fn new(amount: impl Into<String>) -> Self {
        Money(amount.into())
    }

    /// The amount as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the text is a plain decimal number (`-12`, `3.50`, `.5`):
    /// what every other accessor needs. Exponents, `NaN` and thousands
    /// separators are not.
    pub fn is_valid(&self) -> bool {
        Decimal::parse(&self.0).is_some()
    }

    /// The amount as a float, `None` if it is not a plain decimal. Floats
    /// cannot hold most cent values exactly: compare with
    /// [`cmp_amount`](Self::cmp_amount) and add with
    /// [`minor_units`](Self::minor_units) instead.
    pub fn as_f64(&self) -> Option<f64> {
        Decimal::parse(&self.0)?;
        self.0.trim().parse().ok()
    }

    /// The amount in hundredths, exactly: `"598.94"` → `59894`. Same as
    /// `minor_units(2)`; see there for when it is `None`.
    pub fn cents(&self) -> Option<i64> {
        self.minor_units(2)
    }

    /// The amount in units of `10^-decimals`, exactly: `"1.5"` with 2
    /// decimals is `150`, with 3 decimals `1500`. Use the currency's
    /// exponent (2 for USD, 0 for JPY, 3 for KWD).
    ///
    /// `None` when the text is not a plain decimal, when it has non-zero
    /// digits beyond `decimals` (rounding would make it inexact), or when
    /// the result does not fit an `i64`.
    pub fn minor_units(&self, decimals: u32) -> Option<i64> {
        let d = Decimal::parse(&self.0)?;
        if d.frac.len() > decimals as usize {
            return None;
        }
        let mut units: i64 = 0;
        let padding = decimals as usize - d.frac.len();
        let digits = d.int.bytes().chain(d.frac.bytes()).map(|b| b - b'0');
        for digit in digits.chain(std::iter::repeat_n(0, padding)) {
            units = units.checked_mul(10)?.checked_add(i64::from(digit))?;
        }
        Some(if d.negative { -units } else { units })
    }

    /// Compares two amounts exactly, at any precision and magnitude. `None`
    /// if either is not a plain decimal.
    pub fn cmp_amount(&self, other: &Money) -> Option<Ordering> {
        Some(Decimal::parse(&self.0)?.cmp(&Decimal::parse(&other.0)?))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Money {
    fn from(s: &str) -> Self {
        Money(s.to_owned())
    }
}

impl From<String> for Money {
    fn from(s: String) -> Self {
        Money(s)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MoneyVisitor;

        impl Visitor<'_> for MoneyVisitor {
            type Value = Money;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount of money as a string or a number")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Money, E> {
                Ok(Money(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Money, E> {
                Ok(Money(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Money, E> {
                Ok(Money(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Money, E> {
                Ok(Money(v.to_string()))
            }

            // Rust prints the shortest text that reads back as the same
            // float and never uses an exponent, so `500.5` in JSON becomes
            // "500.5" here, which the decimal accessors understand.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Money, E> {
                Ok(Money(v.to_string()))
            }
        }

        deserializer.deserialize_any(MoneyVisitor)
    }
}

/// A parsed plain decimal, normalised so that equal amounts compare equal:
/// no leading zeros in `int`, no trailing zeros in `frac`, and zero is never
/// negative.
#[derive(Debug, PartialEq, Eq)]
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let text = text.trim();
        let (negative, unsigned) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        let negative = negative && !(int.is_empty() && frac.is_empty());
        Some(Decimal {
            negative,
            int,
            frac,
        })
    }

    /// Magnitudes compare by integer length, then digit by digit; with
    /// normalised parts that is exact for any number of digits.
    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac))
    }
}

impl Ord for Decimal<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

impl PartialOrd for Decimal<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        Money::new(s)
    }

    #[test]
    fn cents_are_exact() {
        for (text, cents) in [
            ("598.94", Some(59894)),
            ("0.00", Some(0)),
            ("-0.00", Some(0)),
            ("12", Some(1200)),
            ("12.5", Some(1250)),
            (".5", Some(50)),
            ("5.", Some(500)),
            ("-3.10", Some(-310)),
            (" 1.00 ", Some(100)),
            ("1.000", Some(100)),
            ("1.005", None),
            ("", None),
            ("-", None),
            (".", None),
            ("1e3", None),
            ("NaN", None),
            ("1,000.00", None),
            ("92233720368547758.08", None),
            ("92233720368547758.07", Some(i64::MAX)),
        ] {
            assert_eq!(m(text).cents(), cents, "{text:?}");
        }
        assert_eq!(m("1000").minor_units(0), Some(1000));
        assert_eq!(m("1.234").minor_units(3), Some(1234));
    }

    #[test]
    fn floats() {
        assert_eq!(m("598.94").as_f64(), Some(598.94));
        assert_eq!(m("inf").as_f64(), None);
        assert_eq!(m("1e3").as_f64(), None);
        assert!(!m("abc").is_valid());
    }

    #[test]
    fn comparison_ignores_formatting() {
        use Ordering::*;
        for (a, b, ord) in [
            ("500", "500.00", Equal),
            ("0500.0", "500", Equal),
            ("-0", "0.00", Equal),
            ("500.01", "500", Greater),
            ("499.999", "500", Less),
            ("0.5", "0.05", Greater),
            ("0.5", "0.51", Less),
            ("1000", "999.99", Greater),
            ("-1", "0", Less),
            ("-2", "-1", Less),
            ("-1.5", "-1.50", Equal),
            (
                "123456789012345678901234567890.1",
                "123456789012345678901234567890",
                Greater,
            ),
        ] {
            assert_eq!(m(a).cmp_amount(&m(b)), Some(ord), "{a} vs {b}");
            assert_eq!(m(b).cmp_amount(&m(a)), Some(ord.reverse()), "{b} vs {a}");
        }
        assert_eq!(m("x").cmp_amount(&m("1")), None);
    }

    #[test]
    fn serde_accepts_strings_and_numbers() {
        let v: Vec<Money> = serde_json::from_str(r#"["1.50", 500, -2, 500.5]"#).unwrap();
        assert_eq!(v, vec![m("1.50"), m("500"), m("-2"), m("500.5")]);
        assert_eq!(v[3].cents(), Some(50050));
        assert_eq!(serde_json::to_string(&m("9.90")).unwrap(), r#""9.90""#);
        assert!(serde_json::from_str::<Money>("true").is_err());
    }
}
