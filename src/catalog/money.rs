//! Exact money: US dollars held as integer picodollars (10⁻¹² USD).
//!
//! Prices are quoted per million tokens with at most a few decimals, so the price of one token is
//! a whole number of picodollars and every sum of token costs is exact. `i64` picodollars cover
//! ±9.2 million USD, far beyond any batch.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub, SubAssign};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const PICO_PER_USD: f64 = 1e12;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(i64);

impl Usd {
    pub const ZERO: Usd = Usd(0);

    pub fn from_pico(pico: i64) -> Usd {
        Usd(pico)
    }

    pub fn pico(self) -> i64 {
        self.0
    }

    /// From a dollar amount given by a person (a budget, a price); rounded to the picodollar.
    pub fn from_dollars(dollars: f64) -> Usd {
        Usd((dollars * PICO_PER_USD).round() as i64)
    }

    /// The price of one token when `dollars` buy a million of them.
    pub fn per_million(dollars: f64) -> Usd {
        Usd((dollars * 1e6).round() as i64)
    }

    pub fn times(self, n: u64) -> Usd {
        Usd(self.0.saturating_mul(i64::try_from(n).unwrap_or(i64::MAX)))
    }

    pub fn dollars(self) -> f64 {
        self.0 as f64 / PICO_PER_USD
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, rhs: Usd) -> Usd {
        Usd(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, rhs: Usd) {
        *self = *self + rhs;
    }
}

impl Sub for Usd {
    type Output = Usd;
    fn sub(self, rhs: Usd) -> Usd {
        Usd(self.0.saturating_sub(rhs.0))
    }
}

impl SubAssign for Usd {
    fn sub_assign(&mut self, rhs: Usd) {
        *self = *self - rhs;
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Add::add)
    }
}

/// `$12.3456`: four decimals for people; reports carry the exact figure as a number.
impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.dollars();
        if d != 0.0 && d.abs() < 0.0001 { write!(f, "${d:.6}") } else { write!(f, "${d:.4}") }
    }
}

/// Serialised as a JSON number of dollars, rounded to the nano-dollar (enough to be exact for
/// any real price list, readable by any JSON consumer).
impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let nanos = (self.0 as f64 / 1000.0).round() / 1e9;
        s.serialize_f64(nanos)
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Usd, D::Error> {
        let dollars = f64::deserialize(d)?;
        Ok(Usd::from_dollars(dollars))
    }
}

#[cfg(test)]
mod tests {
    use super::Usd;

    #[test]
    fn token_prices_are_exact() {
        // 1120 image tokens of gemini-3-pro-image-preview at $120/M = $0.1344 exactly.
        let image = Usd::per_million(120.0).times(1120);
        assert_eq!(image, Usd::from_dollars(0.1344));
        // $0.30/M input is 300_000 picodollars per token.
        assert_eq!(Usd::per_million(0.30).pico(), 300_000);
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(Usd::from_dollars(12.5).to_string(), "$12.5000");
        assert_eq!(Usd::from_dollars(0.000039).to_string(), "$0.000039");
    }

    #[test]
    fn serialises_as_dollars() {
        let v = serde_json::to_string(&Usd::from_dollars(0.039)).unwrap();
        assert_eq!(v, "0.039");
        let back: Usd = serde_json::from_str(&v).unwrap();
        assert_eq!(back, Usd::from_dollars(0.039));
    }
}
