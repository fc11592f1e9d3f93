//! G.711 (ITU-T, 1972): A-law (PCMA, RTP payload type 8) and µ-law (PCMU, payload type 0),
//! 8 kHz, one byte a sample. Written out here: it is twenty lines, and the codec crates on
//! crates.io bring far more than these two tables.

use std::sync::LazyLock;

/// The codecs a call can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Codec {
    #[serde(rename = "PCMA")]
    Pcma,
    #[serde(rename = "PCMU")]
    Pcmu,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcma => 8,
            Codec::Pcmu => 0,
        }
    }

    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            8 => Some(Codec::Pcma),
            0 => Some(Codec::Pcmu),
            _ => None,
        }
    }

    /// The encoding name in an SDP `a=rtpmap` line.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcma => "PCMA",
            Codec::Pcmu => "PCMU",
        }
    }

    pub fn from_name(name: &str) -> Option<Codec> {
        [Codec::Pcma, Codec::Pcmu].into_iter().find(|c| c.name().eq_ignore_ascii_case(name))
    }

    pub fn encode(self, pcm: &[i16]) -> Vec<u8> {
        match self {
            Codec::Pcma => pcm.iter().map(|&s| alaw_encode(s)).collect(),
            Codec::Pcmu => pcm.iter().map(|&s| ulaw_encode(s)).collect(),
        }
    }

    pub fn decode(self, payload: &[u8]) -> Vec<i16> {
        let table = match self {
            Codec::Pcma => &*ALAW_TABLE,
            Codec::Pcmu => &*ULAW_TABLE,
        };
        payload.iter().map(|&b| table[b as usize]).collect()
    }
}

static ALAW_TABLE: LazyLock<[i16; 256]> = LazyLock::new(|| std::array::from_fn(|i| alaw_decode(i as u8)));
static ULAW_TABLE: LazyLock<[i16; 256]> = LazyLock::new(|| std::array::from_fn(|i| ulaw_decode(i as u8)));

/// The segment (exponent) of a magnitude: the position of its highest set bit above `base`.
fn segment(magnitude: i32, base: i32) -> i32 {
    let mut seg = 0;
    while seg < 7 && magnitude >= (base << (seg + 1)) {
        seg += 1;
    }
    seg
}

pub fn alaw_encode(sample: i16) -> u8 {
    let s = i32::from(sample) >> 3; // 13-bit
    let (sign, magnitude) = if s >= 0 { (0x80, s) } else { (0x00, -s - 1) };
    let magnitude = magnitude.min(0xFFF);
    let code = if magnitude < 32 {
        magnitude >> 1
    } else {
        let seg = segment(magnitude, 16);
        (seg << 4) | ((magnitude >> seg) & 0x0F)
    };
    ((code | sign) ^ 0x55) as u8
}

pub fn alaw_decode(byte: u8) -> i16 {
    let a = i32::from(byte ^ 0x55);
    let seg = (a & 0x70) >> 4;
    let mantissa = a & 0x0F;
    let magnitude = match seg {
        0 => (mantissa << 4) + 8,
        _ => ((mantissa << 4) + 0x108) << (seg - 1),
    };
    (if a & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

const ULAW_BIAS: i32 = 0x84;

pub fn ulaw_encode(sample: i16) -> u8 {
    let s = i32::from(sample);
    let (sign, magnitude) = if s < 0 { (0x80, (-s).min(32635)) } else { (0x00, s.min(32635)) };
    let biased = magnitude + ULAW_BIAS;
    let seg = segment(biased, 0x80);
    let mantissa = (biased >> (seg + 3)) & 0x0F;
    !((sign | (seg << 4) | mantissa) as u8)
}

pub fn ulaw_decode(byte: u8) -> i16 {
    let u = i32::from(!byte);
    let seg = (u & 0x70) >> 4;
    let mantissa = u & 0x0F;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << seg) - ULAW_BIAS;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_match_the_itu_tables() {
        // Silence and full scale, as every G.711 implementation has them.
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
    }

    #[test]
    fn every_code_survives_a_decode_and_encode() {
        for b in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(b)), b, "A-law {b:#x}");
            // µ-law has two codes for zero (0x7F and 0xFF); both decode to 0.
            if b != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(b)), b, "µ-law {b:#x}");
            }
        }
    }

    #[test]
    fn the_quantisation_error_stays_within_a_few_percent() {
        for codec in [Codec::Pcma, Codec::Pcmu] {
            for s in (-32000i32..32000).step_by(97) {
                let back = codec.decode(&codec.encode(&[s as i16]))[0] as i32;
                let tolerance = (s.abs() / 16).max(16);
                assert!((back - s).abs() <= tolerance, "{codec:?}: {s} came back as {back}");
            }
        }
    }

    #[test]
    fn codecs_are_found_by_name_and_payload_type() {
        assert_eq!(Codec::from_name("pcma"), Some(Codec::Pcma));
        assert_eq!(Codec::from_name("PCMU"), Some(Codec::Pcmu));
        assert_eq!(Codec::from_name("G729"), None);
        assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
        assert_eq!(Codec::from_payload_type(0), Some(Codec::Pcmu));
        assert_eq!(Codec::from_payload_type(101), None);
    }
}
