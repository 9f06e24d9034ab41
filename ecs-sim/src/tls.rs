//! HTTPS on the same listener. The official credentials libraries always call STS with
//! `https://<sts endpoint>` (credentials-python `ram_role_arn.py`/`oidc.py`, credentials-go
//! `providers/ram_role_arn.go`/`oidc.go` hard-code the scheme), so the simulator accepts TLS
//! too: a connection whose first byte is a TLS handshake record is served over TLS. The
//! certificate is made at start by a throw-away CA; `--tls-ca-out` writes that CA's certificate
//! (PEM) for clients to trust.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The first byte of a TLS record carrying a handshake (ClientHello).
pub const HANDSHAKE_RECORD: u8 = 0x16;

pub struct Tls {
    pub config: Arc<ServerConfig>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
}

/// A CA and a serving certificate for `127.0.0.1`, `::1` and `localhost`, both new each start.
pub fn generate() -> Result<Tls, String> {
    let err = |e: rcgen::Error| format!("cannot generate the TLS certificate: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.distinguished_name = DistinguishedName::new();
    // A name of its own per start: clients that trust several simulators' CAs at once (one
    // bundle) look issuers up by name.
    let suffix: u64 = rand::random();
    ca.distinguished_name
        .push(DnType::CommonName, format!("ecs-sim test CA {suffix:016x}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(err)?;
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        "localhost".to_owned(),
    ])
    .map_err(err)?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "ecs-sim");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = serving.signed_by(&key, &issuer).map_err(err)?;

    let chain = vec![
        CertificateDer::from(cert.der().to_vec()),
        CertificateDer::from(ca_cert.der().to_vec()),
    ];
    let private_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(|e| format!("TLS configuration: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        ca_pem: ca_cert.pem(),
    })
}
