//! SDP (RFC 4566) for one audio stream, as an offer/answer (RFC 3264) needs it: our offer,
//! and the one or two facts we take from the answer (where to send RTP, which codec).
//! Written by hand: the SDP crates parse far more than this and none builds an offer
//! with less code than the dozen lines below.

use std::net::{IpAddr, SocketAddr};

use super::g711::Codec;
use super::srtp::SdesKey;

/// The payload type we offer for RFC 4733 telephone-events (DTMF).
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// Our side of the session: what we offer, and answer again to a re-INVITE.
#[derive(Debug, Clone)]
pub struct LocalSdp {
    pub ip: IpAddr,
    pub rtp_port: u16,
    /// In order of preference.
    pub codecs: Vec<Codec>,
    /// The payload type of RFC 4733 telephone-events, if they are offered: ours
    /// (`TELEPHONE_EVENT_PT`), or in an answer the offer's own.
    pub telephone_event: Option<u8>,
    pub session_id: u64,
    /// Our SRTP key (SDES), and whether SRTP is required: the stream is then RTP/SAVP;
    /// otherwise a plain RTP/AVP stream offers the key too (taken if the answer has one).
    pub crypto: Option<(SdesKey, bool)>,
}

impl LocalSdp {
    /// The SDP body. The session version stays the same: a re-INVITE is answered with
    /// exactly this session, unchanged (RFC 3264 §8).
    pub fn render(&self) -> String {
        let family = if self.ip.is_ipv6() { "IP6" } else { "IP4" };
        let mut payloads: Vec<String> = self.codecs.iter().map(|c| c.payload_type().to_string()).collect();
        if let Some(pt) = self.telephone_event {
            payloads.push(pt.to_string());
        }
        let mut sdp = format!(
            "v=0\r\no=callcenter {id} {id} IN {family} {ip}\r\ns=callcenter\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
             m=audio {port} {profile} {payloads}\r\n",
            profile = if self.crypto.as_ref().is_some_and(|(_, required)| *required) {
                "RTP/SAVP"
            } else {
                "RTP/AVP"
            },
            id = self.session_id,
            ip = self.ip,
            port = self.rtp_port,
            payloads = payloads.join(" "),
        );
        for c in &self.codecs {
            sdp.push_str(&format!("a=rtpmap:{} {}/8000\r\n", c.payload_type(), c.name()));
        }
        if let Some(pt) = self.telephone_event {
            sdp.push_str(&format!("a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"));
        }
        if let Some((key, _)) = &self.crypto {
            sdp.push_str(&format!("a={}\r\n", key.attribute()));
        }
        sdp.push_str("a=ptime:20\r\na=sendrecv\r\n");
        sdp
    }
}

/// What the remote side's SDP settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// Where to send RTP.
    pub addr: SocketAddr,
    /// The codec to send: the first of theirs that we offered.
    pub codec: Codec,
    /// Their telephone-event payload type, if any.
    pub telephone_event: Option<u8>,
    /// Their SRTP key (SDES, of the suite we offer), if any.
    pub crypto: Option<SdesKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("no audio stream in the SDP")]
    NoAudio,
    #[error("the audio stream was rejected (port 0)")]
    Rejected,
    #[error("no connection address for the audio stream")]
    NoAddress,
    #[error("no codec in common (they offer {0})")]
    NoCommonCodec(String),
}

/// Reads the first audio stream of an SDP answer (or a re-INVITE's offer), keeping only
/// the codecs of `ours`.
pub fn parse_remote(sdp: &str, ours: &[Codec]) -> Result<RemoteMedia, SdpError> {
    let mut session_ip: Option<IpAddr> = None;
    let mut media_ip: Option<IpAddr> = None;
    let mut audio: Option<(u16, Vec<u8>)> = None;
    let mut rtpmaps: Vec<(u8, String)> = Vec::new();
    let mut crypto = None;
    let mut in_audio = false;
    let mut in_media = false;
    for line in sdp.lines().map(str::trim) {
        let Some((kind, value)) = line.split_once('=') else { continue };
        match kind {
            "m" => {
                in_media = true;
                // The first audio stream is ours; any other stream is ignored.
                in_audio = audio.is_none() && value.starts_with("audio ");
                if in_audio {
                    let mut parts = value.split_whitespace().skip(1);
                    let port = parts.next().and_then(|p| p.split('/').next()?.parse().ok()).unwrap_or(0);
                    let payloads = parts.skip(1).filter_map(|p| p.parse().ok()).collect();
                    audio = Some((port, payloads));
                }
            }
            "c" => {
                let ip = value.split_whitespace().nth(2).and_then(|a| a.split('/').next()?.parse().ok());
                if !in_media {
                    session_ip = ip;
                } else if in_audio {
                    media_ip = ip;
                }
            }
            "a" if in_audio => {
                if value.starts_with("crypto:") && crypto.is_none() {
                    crypto = SdesKey::parse(value);
                }
                if let Some(map) = value.strip_prefix("rtpmap:") {
                    let mut parts = map.split_whitespace();
                    if let (Some(Ok(pt)), Some(enc)) = (parts.next().map(str::parse), parts.next()) {
                        rtpmaps.push((pt, enc.split('/').next().unwrap_or_default().to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    let (port, payloads) = audio.ok_or(SdpError::NoAudio)?;
    if port == 0 {
        return Err(SdpError::Rejected);
    }
    let ip = media_ip.or(session_ip).ok_or(SdpError::NoAddress)?;
    let name_of = |pt: u8| rtpmaps.iter().find(|(p, _)| *p == pt).map(|(_, n)| n.as_str());
    let codec_of = |pt: u8| match name_of(pt) {
        Some(name) => Codec::from_name(name),
        None => Codec::from_payload_type(pt),
    };
    let codec = payloads
        .iter()
        .filter_map(|&pt| codec_of(pt))
        .find(|c| ours.contains(c))
        .ok_or_else(|| SdpError::NoCommonCodec(format!("{payloads:?}")))?;
    let telephone_event = payloads
        .iter()
        .copied()
        .find(|&pt| name_of(pt).is_some_and(|n| n.eq_ignore_ascii_case("telephone-event")));
    Ok(RemoteMedia { addr: SocketAddr::new(ip, port), codec, telephone_event, crypto })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> LocalSdp {
        LocalSdp {
            ip: "10.1.2.3".parse().unwrap(),
            rtp_port: 20000,
            codecs: vec![Codec::Pcma, Codec::Pcmu],
            telephone_event: Some(TELEPHONE_EVENT_PT),
            session_id: 42,
            crypto: None,
        }
    }

    #[test]
    fn srtp_is_offered_on_savp_when_required_and_on_avp_when_optional_and_their_key_is_read() {
        let key = SdesKey::random();
        let required = LocalSdp { crypto: Some((key.clone(), true)), ..ours() }.render();
        assert!(required.contains("m=audio 20000 RTP/SAVP 8 0 101\r\n"), "{required}");
        assert!(required.contains(&format!("a={}\r\n", key.attribute())), "{required}");
        let optional = LocalSdp { crypto: Some((key.clone(), false)), ..ours() }.render();
        assert!(optional.contains("m=audio 20000 RTP/AVP 8 0 101\r\n"), "{optional}");
        assert!(optional.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"), "{optional}");

        let theirs = SdesKey::random();
        let answer = format!(
            "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/SAVP 8\r\na=crypto:1 AES_CM_128_HMAC_SHA1_32 \
             inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\na={}\r\n",
            theirs.attribute().replace("crypto:1", "crypto:2")
        );
        assert_eq!(parse_remote(&answer, &[Codec::Pcma]).unwrap().crypto, Some(theirs));
        let plain = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 8\r\n";
        assert_eq!(parse_remote(plain, &[Codec::Pcma]).unwrap().crypto, None);
    }

    #[test]
    fn the_offer_lists_our_codecs_in_order_with_telephone_events() {
        let sdp = ours().render();
        assert!(sdp.contains("c=IN IP4 10.1.2.3\r\n"), "{sdp}");
        assert!(sdp.contains("m=audio 20000 RTP/AVP 8 0 101\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(sdp.contains("a=rtpmap:0 PCMU/8000\r\n"));
        assert!(sdp.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(sdp.ends_with("a=sendrecv\r\n"));

        let plain = LocalSdp { codecs: vec![Codec::Pcmu], telephone_event: None, ..ours() };
        let sdp = plain.render();
        assert!(sdp.contains("m=audio 20000 RTP/AVP 0\r\n"), "{sdp}");
        assert!(!sdp.contains("telephone-event"));
    }

    #[test]
    fn our_own_offer_parses_back() {
        let remote = parse_remote(&ours().render(), &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!(remote.addr, "10.1.2.3:20000".parse().unwrap());
        assert_eq!(remote.codec, Codec::Pcma, "their order decides");
        assert_eq!(remote.telephone_event, Some(101));
    }

    #[test]
    fn a_baresip_answer_gives_its_address_and_codec() {
        let answer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                      m=audio 10002 RTP/AVP 0 101\r\nb=AS:64\r\na=rtpmap:0 PCMU/8000\r\n\
                      a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n";
        let remote = parse_remote(answer, &[Codec::Pcma, Codec::Pcmu]).unwrap();
        assert_eq!(remote.addr, "127.0.0.1:10002".parse().unwrap());
        assert_eq!(remote.codec, Codec::Pcmu);
    }

    #[test]
    fn a_media_level_address_wins_and_unknown_payloads_are_skipped() {
        let answer = "v=0\nc=IN IP4 192.0.2.1\nm=video 5000 RTP/AVP 96\nc=IN IP4 192.0.2.9\n\
                      m=audio 6000 RTP/AVP 18 8\nc=IN IP4 192.0.2.2\na=rtpmap:18 G729/8000\n";
        let remote = parse_remote(answer, &[Codec::Pcma, Codec::Pcmu]).unwrap();
        assert_eq!(remote.addr, "192.0.2.2:6000".parse().unwrap());
        assert_eq!(remote.codec, Codec::Pcma);
        assert_eq!(remote.telephone_event, None);
    }

    #[test]
    fn unusable_answers_say_why() {
        let no_common = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        assert!(matches!(parse_remote(no_common, &[Codec::Pcma]), Err(SdpError::NoCommonCodec(_))));
        let pcmu_only = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 6000 RTP/AVP 0\r\n";
        assert!(matches!(parse_remote(pcmu_only, &[Codec::Pcma]), Err(SdpError::NoCommonCodec(_))));
        let rejected = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 8\r\n";
        assert_eq!(parse_remote(rejected, &[Codec::Pcma]), Err(SdpError::Rejected));
        assert_eq!(parse_remote("v=0\r\n", &[Codec::Pcma]), Err(SdpError::NoAudio));
        let no_addr = "v=0\r\nm=audio 6000 RTP/AVP 8\r\n";
        assert_eq!(parse_remote(no_addr, &[Codec::Pcma]), Err(SdpError::NoAddress));
    }
}
