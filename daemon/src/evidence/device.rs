//! The device's identity: a random device id and the Ed25519 device signing
//! key that signs evidence manifests.
//!
//! The private key (PKCS#8) lives in the encrypted secrets store, so it is
//! sealed, through the KEK, by the TPM like every other secret. The public
//! key and the device id sit in the `device` table in the clear, so listing
//! them needs no unsealing. The public key is published as an SPKI PEM
//! (`openssl pkeyutl -verify` reads it) and named by its fingerprint: the
//! SHA-256 of the 32 raw public-key bytes, in hex (both made by
//! [`vigil_format::bundle::key`], which the offline verifier uses too).

use ring::rand::SecureRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use vigil_format::bundle::key::{fingerprint, public_key_pem};

use crate::keys::keyring::Keyring;
use crate::keys::secrets::{self, SecretError};

pub const SIGNING_KEY_SECRET: &str = "device.signing-key";

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the device signing key in the secrets store is not a valid Ed25519 key: {0}")]
    BadKey(String),
    #[error("the device signing key does not match the public key recorded for this device")]
    KeyMismatch,
    #[error("no random numbers available")]
    Random,
    #[error(
        "the device identity is gone from the database but its signed audit checkpoints or its creation \
         entry remain: it was removed, and a new one is not made over its log (run `vigil audit verify`)"
    )]
    IdentityRemoved,
}

/// The device's public identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub device_id: String,
    pub public_key: [u8; 32],
}

impl DeviceIdentity {
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_key)
    }
    pub fn public_key_pem(&self) -> String {
        public_key_pem(&self.public_key)
    }
}

/// The device id and public key, if the signing key was made.
pub fn identity(conn: &rusqlite::Connection) -> rusqlite::Result<Option<DeviceIdentity>> {
    Ok(crate::db::device::identity(conn)?.map(|(device_id, public_key)| DeviceIdentity { device_id, public_key }))
}

/// The device signing key, unsealed.
pub struct DeviceKey {
    pair: Ed25519KeyPair,
    identity: DeviceIdentity,
}

impl DeviceKey {
    /// Unseals the signing key; makes it (and the device id) on first use.
    pub fn load_or_create(keyring: &Keyring, why: &str) -> Result<DeviceKey, DeviceError> {
        let conn = rusqlite::Connection::open(keyring.db_path())?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        if let Some(identity) = identity(&conn)? {
            let pkcs8 = secrets::get(keyring, SIGNING_KEY_SECRET, why)?;
            let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| DeviceError::BadKey(e.to_string()))?;
            if pair.public_key().as_ref() != identity.public_key {
                return Err(DeviceError::KeyMismatch);
            }
            return Ok(DeviceKey { pair, identity });
        }
        if crate::db::device::identity_was_made(&conn)? {
            return Err(DeviceError::IdentityRemoved);
        }
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| DeviceError::Random)?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| DeviceError::BadKey(e.to_string()))?;
        let mut id = [0u8; 16];
        rng.fill(&mut id).map_err(|_| DeviceError::Random)?;
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(pair.public_key().as_ref());
        let identity = DeviceIdentity {
            device_id: format!("vigil-{}", vigil_format::hex(&id)),
            public_key,
        };
        // The secret first: a crash in between leaves a key and no device row,
        // and the next call makes a fresh pair (rotate overwrites the secret).
        secrets::set(keyring, SIGNING_KEY_SECRET, pkcs8.as_ref(), None)?;
        let inserted = crate::db::device::insert_identity(
            &conn,
            &identity.device_id,
            &identity.public_key,
            crate::base::clock::now_ns(),
        )?;
        if !inserted {
            // Another process made it first: use theirs.
            return Self::load_or_create(keyring, why);
        }
        let _ = crate::db::audit::append(
            &conn,
            keyring.actor(),
            "device.signing-key.create",
            &identity.device_id,
            crate::db::audit::Outcome::Ok,
            &format!("fingerprint {}", identity.fingerprint()),
        );
        let key = DeviceKey { pair, identity };
        // The first signed checkpoint: from now on a log with none was cut.
        let id = &key.identity;
        let now = crate::base::clock::now_ns();
        if let Err(e) = crate::db::audit_checkpoint::record(&conn, &id.device_id, &id.public_key, now, &|m| key.sign(m))
        {
            tracing::warn!("first audit checkpoint not written: {e}");
        }
        Ok(key)
    }

    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

/// Notes in the audit log that the device was provisioned (`vigil provision`)
/// by `actor`: its identity and how the first admin stands (`admin`).
/// Provisioning changes nothing here itself, so a failure to write the entry
/// is only logged.
pub fn record_provisioning(conn: &rusqlite::Connection, actor: &str, identity: &DeviceIdentity, admin: &str) {
    if let Err(e) = crate::db::audit::append(
        conn,
        actor,
        "device.provision",
        &identity.device_id,
        crate::db::audit::Outcome::Ok,
        &format!("signing key {}, admin {admin}", identity.fingerprint()),
    ) {
        tracing::warn!("audit entry of the provisioning not written: {e}");
    }
}
