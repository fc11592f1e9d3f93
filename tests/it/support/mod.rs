//! Fake peers the tests talk to: a SIP user agent (baresip, run as a process), a scripted
//! SIP callee, and a FreeSWITCH event socket.

pub mod baresip;
pub mod esl_server;
pub mod sip_peer;
