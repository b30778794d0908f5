//! Certificates for TLS listeners in tests, made in-process.

/// A self-signed certificate for 127.0.0.1 named `name`: (certificate PEM,
/// key PEM, DER).
pub fn certificate(name: &str) -> (String, String, Vec<u8>) {
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}
