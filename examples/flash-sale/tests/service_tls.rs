//! `flash-sale serve --tls-cert --tls-key`: a test CA and certificate for 127.0.0.1 made by
//! `rcgen` at test time; `curl --cacert` buys and reads the health over HTTPS.

mod support_service;

use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support_service::{Config, Service, TempDir};

#[test]
fn serves_https_with_the_given_certificate() {
    let pki = TempDir::new("tls-pki");
    let data = TempDir::new("tls-data");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "flash-sale test CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("leaf params");
    let key = KeyPair::generate().expect("leaf key");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).expect("leaf cert");
    let (ca_pem, cert_pem, key_pem) = (
        pki.path().join("ca.pem"),
        pki.path().join("cert.pem"),
        pki.path().join("key.pem"),
    );
    std::fs::write(&ca_pem, ca_cert.pem()).expect("write");
    std::fs::write(&cert_pem, cert.pem()).expect("write");
    std::fs::write(&key_pem, key.serialize_pem()).expect("write");

    let mut config = Config::new(1, data.path());
    config.extra_args = vec![
        "--tls-cert".into(),
        cert_pem.display().to_string(),
        "--tls-key".into(),
        key_pem.display().to_string(),
    ];
    let service = Service::start(&config);
    let url = format!("https://{}/healthz", service.addr());
    let out = Command::new("curl")
        .args(["--max-time", "10", "-sS", "--cacert"])
        .arg(&ca_pem)
        .args(["-w", " %{http_code}", &url])
        .output()
        .unwrap_or_else(|e| panic!("this test requires `curl` on PATH: {e}"));
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        body.ends_with(" 200") && body.contains(r#""status":"ok""#),
        "{body}"
    );
    service.stop_clean();
}
