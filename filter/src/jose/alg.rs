//! The JWS signature algorithms the filter knows, by their JOSE names (RFC 7518, RFC 8037
//! for EdDSA, RFC 8812 for ES256K). `none` is not one of them, in any spelling.
//!
//! Which key verifies which algorithm is `jwks::Key::fits`; who verifies it (the host or
//! wasm) is `verify`.

use std::fmt;
use std::str::FromStr;

#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256; a shared secret of at least 32 bytes, from `local_jwks` only.
    HS256,
    /// HMAC with SHA-384; a secret of at least 48 bytes.
    HS384,
    /// HMAC with SHA-512; a secret of at least 64 bytes.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the default of every provider).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 (MGF1 SHA-256, salt of 32 bytes).
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256; signatures are `r || s`, 64 bytes.
    ES256,
    /// ECDSA on P-384 with SHA-384; 96-byte signatures.
    ES384,
    /// ECDSA on P-521 with SHA-512; 132-byte signatures (two 66-byte scalars). Verified only
    /// by the host's `verify_signature` (BoringSSL has P-521); never in wasm.
    ES512,
    /// ECDSA on secp256k1 with SHA-256 (RFC 8812); 64-byte signatures. Verified in wasm
    /// (BoringSSL has no secp256k1).
    ES256K,
    /// Ed25519 (RFC 8037); the only EdDSA curve accepted.
    EdDSA,
}

/// Kinds of key an algorithm needs (`kty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `oct`: HS*.
    Hmac,
    /// `RSA`: RS*, PS*.
    Rsa,
    /// `EC`: ES*, each on its own curve.
    Ec,
    /// `OKP`: EdDSA.
    Okp,
}

impl Algorithm {
    /// Every algorithm, in the order configuration errors list them.
    pub const ALL: [Algorithm; 14] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::ES256K,
        Algorithm::EdDSA,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
    ];

    /// The JOSE name, exactly as `alg` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::ES256K => "ES256K",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm of a JOSE name; names are case-sensitive (`es256` is not one).
    pub fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn family(self) -> Family {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Family::Rsa,
            Algorithm::ES256 | Algorithm::ES384 | Algorithm::ES512 | Algorithm::ES256K => {
                Family::Ec
            }
            Algorithm::EdDSA => Family::Okp,
        }
    }

    pub fn is_hmac(self) -> bool {
        self.family() == Family::Hmac
    }
}

impl FromStr for Algorithm {
    type Err = ();

    fn from_str(name: &str) -> Result<Self, ()> {
        Algorithm::parse(name).ok_or(())
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::parse(alg.name()), Some(alg));
            assert_eq!(alg.to_string(), format!("{alg:?}"));
        }
        for name in [
            "none", "None", "es256", "ES256k", "es256k", "ES521", "ES224", "RS1", "", "EdDSA ",
        ] {
            assert_eq!(Algorithm::parse(name), None, "{name}");
        }
        assert_eq!("ES256K".parse(), Ok(Algorithm::ES256K));
        assert_eq!("ES512".parse(), Ok(Algorithm::ES512));
    }

    #[test]
    fn families() {
        assert!(Algorithm::ALL.iter().filter(|a| a.is_hmac()).count() == 3);
        assert_eq!(Algorithm::ES256K.family(), Family::Ec);
        assert_eq!(Algorithm::ES512.family(), Family::Ec);
        assert_eq!(Algorithm::PS512.family(), Family::Rsa);
        assert_eq!(Algorithm::EdDSA.family(), Family::Okp);
    }
}
