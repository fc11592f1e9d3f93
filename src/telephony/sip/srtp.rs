//! SRTP media (RFC 3711) keyed by SDES (RFC 4568): each side puts its master key in its
//! SDP (`a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<key||salt, base64>`), and each
//! protects what it sends with its own key. Only AES_CM_128_HMAC_SHA1_80 is offered.
//!
//! The cipher, the key derivation and the packet format are webrtc-rs's `webrtc-srtp`
//! (over the RustCrypto `aes`, `ctr`, `hmac` and `sha1` crates). The `a=crypto` lines are
//! read and written here, by hand: no maintained crate does SDES, and it is one line.

use std::sync::Mutex;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

/// The one suite we offer and take.
pub const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";
/// Packets remembered against replays: libsrtp's default.
const REPLAY_WINDOW: usize = 128;
/// Master key (16 bytes) and master salt (14 bytes), as the `inline:` key carries them.
const KEY_LEN: usize = 16;
const SALT_LEN: usize = 14;

/// Whether a trunk's media is SRTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpPolicy {
    /// Plain RTP; no keys offered.
    #[default]
    Off,
    /// Keys offered on a plain RTP/AVP stream; SRTP if the answer has a key of its own,
    /// plain RTP if not.
    Optional,
    /// An RTP/SAVP stream with keys: an answer without a key of ours ends the call (488).
    Required,
}

/// One side's SDES master key and salt.
#[derive(Clone, PartialEq, Eq)]
pub struct SdesKey(pub [u8; KEY_LEN + SALT_LEN]);

impl std::fmt::Debug for SdesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SdesKey(…)")
    }
}

impl SdesKey {
    /// A fresh random key for one call.
    pub fn random() -> SdesKey {
        SdesKey(rand::random())
    }

    /// Our `a=crypto` attribute value (without `a=`).
    pub fn attribute(&self) -> String {
        let inline = base64::engine::general_purpose::STANDARD.encode(self.0);
        format!("crypto:1 {SUITE} inline:{inline}")
    }

    /// The key of an `a=crypto` attribute value (`crypto:<tag> <suite> inline:<key>[|…]`)
    /// of our suite; `None` for another suite or a malformed one.
    pub fn parse(attribute: &str) -> Option<SdesKey> {
        let mut parts = attribute.strip_prefix("crypto:")?.split_whitespace();
        let _tag = parts.next()?;
        if !parts.next()?.eq_ignore_ascii_case(SUITE) {
            return None;
        }
        // `inline:<key||salt>` with an optional `|lifetime` and `|MKI:length` after it.
        let inline = parts.next()?.strip_prefix("inline:")?.split('|').next()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(inline).ok()?;
        Some(SdesKey(bytes.try_into().ok()?))
    }

    /// `replay_window`: how many recent packets a receiving context remembers, to refuse
    /// them again (RFC 3711 §3.3.2); `None` for a sending one.
    fn context(&self, replay_window: Option<usize>) -> Context {
        let (key, salt) = self.0.split_at(KEY_LEN);
        let replay = replay_window.map(webrtc_srtp::option::srtp_replay_protection);
        Context::new(key, salt, ProtectionProfile::Aes128CmHmacSha1_80, replay, None)
            .expect("a 16-byte key and a 14-byte salt fit AES_CM_128_HMAC_SHA1_80")
    }
}

/// One call's SRTP: what we send protected with our key, what comes checked and
/// decrypted with theirs.
pub struct Srtp {
    outbound: Mutex<Context>,
    inbound: Mutex<Context>,
}

impl Srtp {
    pub fn new(ours: &SdesKey, theirs: &SdesKey) -> Srtp {
        Srtp {
            outbound: Mutex::new(ours.context(None)),
            inbound: Mutex::new(theirs.context(Some(REPLAY_WINDOW))),
        }
    }

    /// An RTP packet, encrypted and authenticated; `None` if it cannot be (the key has
    /// protected 2^48 packets).
    pub fn protect(&self, rtp: &[u8]) -> Option<Vec<u8>> {
        self.outbound.lock().expect("srtp lock").encrypt_rtp(rtp).ok().map(|b| b.to_vec())
    }

    /// An SRTP packet checked and decrypted; `None` if it fails authentication (or is a
    /// replay, or no SRTP at all).
    pub fn unprotect(&self, srtp: &[u8]) -> Option<Vec<u8>> {
        self.inbound.lock().expect("srtp lock").decrypt_rtp(srtp).ok().map(|b| b.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::sip::rtp::Header;

    #[test]
    fn a_crypto_line_written_reads_back_and_other_suites_are_not_taken() {
        let key = SdesKey::random();
        assert_eq!(SdesKey::parse(&key.attribute()), Some(key.clone()));
        // RFC 4568 §6.1's example, with a lifetime and an MKI after the key.
        let example =
            "crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4";
        assert!(SdesKey::parse(example).is_some());
        let other = "crypto:2 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        assert_eq!(SdesKey::parse(other), None);
        assert_eq!(SdesKey::parse("crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ="), None);
    }

    #[test]
    fn what_one_side_protects_the_other_reads_and_tampering_is_refused() {
        let mut material = [0u8; 30];
        material[..16].copy_from_slice(&hex("E1F97A0D3E018BE0D64FA32C06DE4139"));
        material[16..].copy_from_slice(&hex("0EC675AD498AFEEBB6960B3AABE6"));
        let key = SdesKey(material);
        let other = SdesKey::random();
        let (alice, bob) = (Srtp::new(&key, &other), Srtp::new(&other, &key));
        let rtp = Header { payload_type: 0, marker: false, seq: 7, timestamp: 160, ssrc: 0xCAFE }
            .write(&[0x55; 160]);
        let srtp = alice.protect(&rtp).unwrap();
        assert_eq!(srtp.len(), rtp.len() + 10, "an 80-bit tag");
        assert_ne!(&srtp[12..172], &rtp[12..], "the payload is encrypted");
        assert_eq!(srtp[..12], rtp[..12], "the header is not");
        assert_eq!(bob.unprotect(&srtp).as_deref(), Some(&rtp[..]));
        // A replay, a flipped bit, or a packet keyed otherwise is refused.
        assert_eq!(bob.unprotect(&srtp), None);
        let mut tampered =
            alice.protect(&Header { seq: 8, ..Header::parse(&rtp).unwrap().0 }.write(&[0x55; 160])).unwrap();
        tampered[20] ^= 1;
        assert_eq!(bob.unprotect(&tampered), None);
        assert_eq!(alice.unprotect(&srtp), None);
    }

    /// RFC 3711 Appendix B.3: from its master key and salt, the session keys are
    /// C61E7A93…, 30CBBC08… and CEBE321F…. A packet protected with that master key is
    /// decrypted and authenticated here with those session keys and the packet format of
    /// §3–4 (AES-CM, IV = salt·2^16 ⊕ SSRC·2^64 ⊕ index·2^16; HMAC-SHA1 over the packet
    /// and the ROC, 80 bits), by the primitives alone.
    #[test]
    fn packets_follow_rfc_3711_from_its_key_derivation_test_vectors() {
        use aes::cipher::{KeyIvInit, StreamCipher};
        use hmac::{Hmac, Mac};
        let mut material = [0u8; 30];
        material[..16].copy_from_slice(&hex("E1F97A0D3E018BE0D64FA32C06DE4139"));
        material[16..].copy_from_slice(&hex("0EC675AD498AFEEBB6960B3AABE6"));
        let srtp = Srtp::new(&SdesKey(material), &SdesKey::random());
        let (ssrc, seq) = (0xDEADBEEF_u32, 0x1234_u16);
        let rtp = Header { payload_type: 8, marker: true, seq, timestamp: 4000, ssrc }.write(&[0xD5; 160]);
        let packet = srtp.protect(&rtp).unwrap();
        let (protected, tag) = packet.split_at(packet.len() - 10);

        let auth_key = hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&auth_key).unwrap();
        mac.update(protected);
        mac.update(&0u32.to_be_bytes()); // the rollover counter
        assert_eq!(&mac.finalize().into_bytes()[..10], tag);

        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&hex("30CBBC08863D8C85D49DB34A9AE1"));
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in u64::from(seq).to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        let cipher_key = hex("C61E7A93744F39EE10734AFE3FF7A087");
        let mut payload = protected[12..].to_vec();
        ctr::Ctr128BE::<aes::Aes128>::new(cipher_key.as_slice().into(), &iv.into())
            .apply_keystream(&mut payload);
        assert_eq!(payload, rtp[12..]);
        assert_eq!(protected[..12], rtp[..12]);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
