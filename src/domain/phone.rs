use std::fmt;

/// A phone number: an optional `+` and 5…20 digits.
///
/// `Display` and `Debug` mask the middle digits so that a number never lands in a log
/// in full; `as_str` gives the number itself, for dialing and for the API.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    pub fn parse(s: &str) -> Result<Phone, &'static str> {
        let s = s.trim();
        let digits = s.strip_prefix('+').unwrap_or(s);
        if !(5..=20).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("应为可选的 + 加 5 到 20 位数字");
        }
        Ok(Phone(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `139****5678`: keeps the first three and last four digits (fewer for short numbers).
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks any string that may hold a phone number, keeping a short head and tail.
pub fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let (head, tail) = if n >= 11 {
        (3, 4)
    } else if n >= 7 {
        (2, 2)
    } else {
        (1, 1.min(n.saturating_sub(2)))
    };
    if n <= head + tail {
        return "*".repeat(n);
    }
    let mut out: String = chars[..head].iter().collect();
    out.push_str(&"*".repeat(n - head - tail));
    out.extend(&chars[n - tail..]);
    out
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_international_numbers() {
        assert_eq!(Phone::parse("13912345678").unwrap().as_str(), "13912345678");
        assert_eq!(Phone::parse(" +8613912345678 ").unwrap().as_str(), "+8613912345678");
        assert!(Phone::parse("12345").is_ok());
    }

    #[test]
    fn rejects_letters_short_and_long_numbers() {
        for bad in ["139abc45678", "1234", "123456789012345678901", "+", "", "++12345", "139 1234 5678"] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_and_debug_mask_the_middle_digits() {
        let p = Phone::parse("13912345678").unwrap();
        assert_eq!(p.to_string(), "139****5678");
        assert_eq!(format!("{p:?}"), "Phone(139****5678)");
        assert_eq!(mask("12345"), "1***5");
    }
}
