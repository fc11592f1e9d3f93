//! A certificate authority made by the test, for the TLS tests: its certificate (what the
//! server is told to trust) and a peer certificate it signed for the name `localhost` (no
//! address: a trunk reached by IP would not match it), in one PEM file with its key, as
//! baresip takes it.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tempfile::TempDir;

pub struct TestCa {
    _dir: TempDir,
    /// The CA's certificate (PEM).
    pub ca_file: PathBuf,
    /// The peer's certificate and key (PEM), signed by the CA.
    pub peer_file: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let peer_key = KeyPair::generate().unwrap();
        let peer_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let peer = peer_params.signed_by(&peer_key, &ca).unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let peer_file = dir.path().join("peer.pem");
        std::fs::write(&peer_file, peer.pem() + &peer_key.serialize_pem()).unwrap();
        TestCa { _dir: dir, ca_file, peer_file }
    }
}
