//! Peers the tests talk to: a SIP user agent (baresip, run as a process), a scripted SIP
//! callee, a FreeSWITCH event socket, and two recognisers: pocketsphinx behind the
//! OpenAI-compatible protocol (transcriber.py, run as a process) and a FunASR runtime's
//! websocket protocol.

pub mod baresip;
pub mod esl_server;
pub mod funasr_peer;
pub mod kamailio;
pub mod sip_peer;
pub mod test_ca;
pub mod transcriber;
