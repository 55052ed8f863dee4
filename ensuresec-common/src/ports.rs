//! Port policy: which TCP/UDP destination ports the protected host accepts.

use crate::maps::{PORT_WORDS, PortBitmap};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error("`{0}` is not a port (0-65535) or a range like 8000-8100")]
    Invalid(String),
    #[error("port range `{0}` runs backwards")]
    Backwards(String),
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

fn parse_port(text: &str, whole: &str) -> Result<u16, PortError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortError::Invalid(whole.to_string()));
    }
    text.parse()
        .map_err(|_| PortError::Invalid(whole.to_string()))
}

impl std::str::FromStr for PortRange {
    type Err = PortError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = text.trim();
        let (first, last) = match t.split_once('-') {
            Some((a, b)) => (parse_port(a.trim(), text)?, parse_port(b.trim(), text)?),
            None => {
                let p = parse_port(t, text)?;
                (p, p)
            }
        };
        if first > last {
            return Err(PortError::Backwards(text.to_string()));
        }
        Ok(PortRange { first, last })
    }
}

/// Builds the kernel's bitmap from ranges.
pub fn bitmap(ranges: &[PortRange]) -> Box<PortBitmap> {
    let mut words = Box::new([0u64; PORT_WORDS]);
    for r in ranges {
        for port in r.first..=r.last {
            words[port as usize / 64] |= 1 << (port % 64);
        }
    }
    words
}

/// Whether `port` is set in a bitmap (the kernel's test, for host-side checks).
pub fn allows(words: &PortBitmap, port: u16) -> bool {
    words[port as usize / 64] & (1 << (port % 64)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ports_and_ranges() {
        assert_eq!(
            "443".parse(),
            Ok(PortRange {
                first: 443,
                last: 443
            })
        );
        assert_eq!(
            " 32768 - 60999 ".parse(),
            Ok(PortRange {
                first: 32768,
                last: 60999
            })
        );
        assert_eq!(
            "65535".parse(),
            Ok(PortRange {
                first: 65535,
                last: 65535
            })
        );
    }

    #[test]
    fn rejects_bad_ports() {
        for bad in ["", "http", "65536", "-1", "80-", "1-2-3", "+80"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
        assert_eq!(
            "90-80".parse::<PortRange>(),
            Err(PortError::Backwards("90-80".into()))
        );
    }

    #[test]
    fn bitmap_sets_exactly_the_ranges() {
        let ranges: Vec<PortRange> = ["22", "80", "8000-8100", "65535"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let b = bitmap(&ranges);
        for port in 0..=u16::MAX {
            let want = port == 22 || port == 80 || (8000..=8100).contains(&port) || port == 65535;
            assert_eq!(allows(&b, port), want, "{port}");
        }
    }
}
