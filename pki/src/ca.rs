//! The cluster's root certificate authority. It lives in the Raft state, so
//! every controller can sign; the identity in what it signs comes from the
//! controller (node id, role, cluster), never from the certificate request.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateSigningRequestDer;
use time::OffsetDateTime;

use crate::{Bundle, CertInfo, Identity, PkiError};

/// Certificates are valid from one hour before they are issued: a node whose
/// clock runs a little behind still accepts them.
pub const BACKDATE: Duration = Duration::from_secs(3600);
/// A root lasts 20 years, as Swarm's.
pub const ROOT_LIFETIME: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Node certificates last 90 days unless the cluster says otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// The admin bundle `--init` writes lasts a year whatever the node lifetime:
/// nodes renew themselves, people do not.
pub const ADMIN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before_ms: i64,
    pub not_after_ms: i64,
}

impl Validity {
    /// From `now_ms` minus [`BACKDATE`] to `now_ms + lifetime`.
    pub fn starting_at(now_ms: i64, lifetime: Duration) -> Validity {
        Validity {
            not_before_ms: now_ms - BACKDATE.as_millis() as i64,
            not_after_ms: now_ms.saturating_add(lifetime.as_millis() as i64),
        }
    }
}

/// A certificate the CA signed, with what it says.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub info: CertInfo,
}

pub struct Authority {
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn time_of(ms: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map_err(|e| PkiError::BadCertificate(format!("validity out of range: {e}")))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and of full length (RFC 5280: at most 20 octets, positive).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from(bytes.to_vec())
}

impl Authority {
    /// A new self-signed root for `cluster_id`. Each root has a name of its
    /// own (a CA rotation trusts two at once).
    pub fn create(cluster_id: &str, now_ms: i64) -> Result<Authority, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::Generate)?;
        let params = Self::root_params(cluster_id, now_ms)?;
        let cert = params.self_signed(&key).map_err(PkiError::Generate)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            key,
        })
    }

    fn root_params(cluster_id: &str, now_ms: i64) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        let tag = hex::encode(rand::random::<[u8; 4]>());
        name.push(DnType::CommonName, format!("berth root CA {tag}"));
        name.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let validity = Validity::starting_at(now_ms, ROOT_LIFETIME);
        params.not_before = time_of(validity.not_before_ms)?;
        params.not_after = time_of(validity.not_after_ms)?;
        params.serial_number = Some(random_serial());
        Ok(params)
    }

    /// A new root for the same cluster, and its certificate signed by this
    /// CA: the intermediate that lets whoever trusts only this root trust what
    /// the new one signs, while a rotation runs (Swarm's cross-signed root).
    pub fn successor(
        &self,
        cluster_id: &str,
        now_ms: i64,
    ) -> Result<(Authority, String), PkiError> {
        let key = KeyPair::generate().map_err(PkiError::Generate)?;
        let params = Self::root_params(cluster_id, now_ms)?;
        let root = params.self_signed(&key).map_err(PkiError::Generate)?;
        let mut cross = params;
        // Only leaves below it.
        cross.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        cross.serial_number = Some(random_serial());
        cross.use_authority_key_identifier_extension = true;
        let cross = cross
            .signed_by(&key, &self.issuer()?)
            .map_err(PkiError::Generate)?;
        Ok((
            Authority {
                cert_pem: root.pem(),
                key,
            },
            cross.pem(),
        ))
    }

    /// The key id of this CA (what its certificates name as their authority).
    pub fn key_id(&self) -> Result<Vec<u8>, PkiError> {
        let der = crate::bundle::certificates(&self.cert_pem)?;
        let (_, cert) = x509_parser::prelude::FromDer::from_der(der[0].as_ref())
            .map_err(|e: x509_parser::nom::Err<_>| PkiError::BadCertificate(e.to_string()))?;
        let cert: x509_parser::certificate::X509Certificate<'_> = cert;
        for ext in cert.extensions() {
            if let x509_parser::prelude::ParsedExtension::SubjectKeyIdentifier(id) =
                ext.parsed_extension()
            {
                return Ok(id.0.to_vec());
            }
        }
        Err(PkiError::BadCertificate(
            "the CA certificate has no subject key identifier".into(),
        ))
    }

    /// The CA kept in the cluster state.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Authority, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::BadKey(e.to_string()))?;
        // Parse once now, so a bad stored certificate fails here, not at the first join.
        Issuer::from_ca_cert_pem(cert_pem, &key)
            .map_err(|e| PkiError::BadCertificate(format!("CA certificate: {e}")))?;
        Ok(Authority {
            cert_pem: cert_pem.to_string(),
            key,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn leaf_params(identity: &Identity, validity: Validity) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, identity.node_id.as_str());
        name.push(DnType::OrganizationalUnitName, identity.role.as_str());
        name.push(DnType::OrganizationName, identity.cluster_id.as_str());
        params.distinguished_name = name;
        let server_name = identity
            .role
            .server_name()
            .try_into()
            .map_err(PkiError::Generate)?;
        params.subject_alt_names = vec![SanType::DnsName(server_name)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = time_of(validity.not_before_ms)?;
        params.not_after = time_of(validity.not_after_ms)?;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)
            .map_err(|e| PkiError::BadCertificate(format!("CA certificate: {e}")))
    }

    /// Signs the key of `csr_der` (whose signature is checked) for `identity`.
    /// Everything the request asks for besides its key is ignored.
    pub fn issue(
        &self,
        csr_der: &[u8],
        identity: &Identity,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let csr =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(PkiError::BadCsr)?;
        let params = Self::leaf_params(identity, validity)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer()?)
            .map_err(PkiError::Generate)?;
        let info = CertInfo::from_der(cert.der())?;
        Ok(Issued {
            cert_pem: cert.pem(),
            info,
        })
    }

    /// A new key and its certificate for `identity`, as a bundle that trusts
    /// this CA: what init writes for the first controller and the admin.
    pub fn issue_bundle(
        &self,
        identity: &Identity,
        validity: Validity,
    ) -> Result<Bundle, PkiError> {
        self.issue_bundle_for_ips(identity, validity, &[])
    }

    /// As [`Authority::issue_bundle`], valid for these IP addresses too: for
    /// peers that check a server by its address (etcd in the benchmarks).
    pub fn issue_bundle_for_ips(
        &self,
        identity: &Identity,
        validity: Validity,
        ips: &[std::net::IpAddr],
    ) -> Result<Bundle, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::Generate)?;
        let mut params = Self::leaf_params(identity, validity)?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(PkiError::Generate)?;
        Ok(Bundle {
            ca_pem: self.cert_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A new private key (P-256, PKCS#8 PEM) and a certificate request for it.
/// The request names nothing: the CA decides the identity.
pub fn new_key_and_csr() -> Result<(String, Vec<u8>), PkiError> {
    let key = KeyPair::generate().map_err(PkiError::Generate)?;
    let csr = csr_for(&key)?;
    Ok((key.serialize_pem(), csr))
}

/// A certificate request for an existing key (a node keeps its key to prove,
/// when it rejoins, that it is the node it says).
pub fn csr_for_key_pem(key_pem: &str) -> Result<Vec<u8>, PkiError> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::BadKey(e.to_string()))?;
    csr_for(&key)
}

fn csr_for(key: &KeyPair) -> Result<Vec<u8>, PkiError> {
    let params = CertificateParams::new(Vec::<String>::new()).map_err(PkiError::Generate)?;
    let csr = params.serialize_request(key).map_err(PkiError::Generate)?;
    Ok(csr.der().to_vec())
}

/// SHA-256 of the public key a CSR carries (after checking its signature).
pub fn csr_public_key_sha256(csr_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    use rcgen::PublicKeyData;
    use sha2::Digest;
    let csr =
        CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
            .map_err(PkiError::BadCsr)?;
    Ok(sha2::Sha256::digest(csr.public_key.subject_public_key_info()).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn identity() -> Identity {
        Identity {
            node_id: "n1".into(),
            role: Role::Agent,
            cluster_id: "c1".into(),
        }
    }

    #[test]
    fn issued_certificate_carries_the_identity_the_ca_chose() {
        let now = crate::now_ms();
        let ca = Authority::create("c1", now).unwrap();
        let (_key, csr) = new_key_and_csr().unwrap();
        let validity = Validity::starting_at(now, Duration::from_secs(60));
        let issued = ca.issue(&csr, &identity(), validity).unwrap();
        assert_eq!(issued.info.identity, identity());
        assert_eq!(
            issued.info.not_after_ms / 1000,
            validity.not_after_ms / 1000
        );
        assert_eq!(issued.info.not_before_ms / 1000, (now - 3_600_000) / 1000);
        assert_eq!(
            issued.info.public_key_sha256,
            csr_public_key_sha256(&csr).unwrap()
        );
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let ca = Authority::create("c1", crate::now_ms()).unwrap();
        let (_key, mut csr) = new_key_and_csr().unwrap();
        let last = csr.len() - 1;
        csr[last] ^= 0x01;
        let err = ca
            .issue(
                &csr,
                &identity(),
                Validity::starting_at(0, DEFAULT_LIFETIME),
            )
            .unwrap_err();
        assert!(err.to_string().contains("request is invalid"), "{err}");
    }

    #[test]
    fn a_cross_signed_root_chains_new_leaves_to_the_old_root() {
        let now = crate::now_ms();
        let old = Authority::create("c1", now).unwrap();
        let (new, cross) = old.successor("c1", now).unwrap();
        let (_key, csr) = new_key_and_csr().unwrap();
        let leaf = new
            .issue(
                &csr,
                &identity(),
                Validity::starting_at(now, DEFAULT_LIFETIME),
            )
            .unwrap();
        assert_eq!(leaf.info.authority_key_id, new.key_id().unwrap());
        // A verifier that trusts only the old root accepts leaf + cross.
        let roots = crate::tls::root_store_for_tests(old.cert_pem());
        let leaf_der = crate::bundle::certificates(&leaf.cert_pem).unwrap();
        let cross_der = crate::bundle::certificates(&cross).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let now_unix = rustls::pki_types::UnixTime::now();
        assert!(
            verifier
                .verify_client_cert(&leaf_der[0], &cross_der, now_unix)
                .is_ok()
        );
        assert!(
            verifier
                .verify_client_cert(&leaf_der[0], &[], now_unix)
                .is_err()
        );
        assert_ne!(old.key_id().unwrap(), new.key_id().unwrap());
    }

    #[test]
    fn the_ca_survives_a_round_trip_through_pem() {
        let ca = Authority::create("c1", crate::now_ms()).unwrap();
        let again = Authority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let bundle = again
            .issue_bundle(
                &identity(),
                Validity::starting_at(crate::now_ms(), DEFAULT_LIFETIME),
            )
            .unwrap();
        assert_eq!(bundle.info().unwrap().identity, identity());
    }
}
