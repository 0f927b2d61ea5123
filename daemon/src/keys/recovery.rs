//! The recovery key: 160 random bits shown once at `keys init`, written as 8
//! groups of 5 Crockford base-32 characters (4 data + 1 check character per
//! group), e.g. `7K3QD-M2XCA-...`. A typo names its group.
//!
//! Vigil keeps only the recovery key's X25519 *public* key. Each KEK is
//! escrowed to it (ephemeral X25519, HKDF-SHA-256, ChaCha20-Poly1305), so a
//! KEK rotation escrows the new KEK without anyone typing the recovery key,
//! and a party that learned an old KEK learns nothing about the new one.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::hkdf;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::keys::sealing::Kek;
use crate::keys::{random_bytes, KeyError};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const GROUPS: usize = 8;
const DATA_CHARS: usize = 4;
pub const ESCROW_LEN: usize = 32 + 32 + 16;

/// The recovery secret. Never logged; zeroed on drop.
pub struct RecoveryKey {
    bytes: Zeroizing<[u8; 20]>,
}

fn value_of(c: char) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    let c = match c {
        'O' => '0',
        'I' | 'L' => '1',
        other => other,
    };
    ALPHABET.iter().position(|&a| a as char == c).map(|p| p as u8)
}

/// Luhn mod 32 over the group number and the group's 4 data characters, so a
/// wrong character, most swaps of neighbours and a group typed in the wrong
/// place are all caught.
fn check_value(group: usize, data: &[u8]) -> u8 {
    let mut factor = 2u32;
    let mut sum = 0u32;
    let seq: Vec<u32> = std::iter::once(group as u32 % 32)
        .chain(data.iter().map(|&d| u32::from(d)))
        .collect();
    for &v in seq.iter().rev() {
        let p = v * factor;
        sum += p / 32 + p % 32;
        factor = if factor == 2 { 1 } else { 2 };
    }
    ((32 - sum % 32) % 32) as u8
}

impl RecoveryKey {
    pub fn generate() -> Result<Self, KeyError> {
        Ok(RecoveryKey {
            bytes: Zeroizing::new(random_bytes::<20>()?),
        })
    }

    /// 8 groups `XXXXC` joined by `-`.
    pub fn to_display(&self) -> Zeroizing<String> {
        let mut bits: u128 = 0;
        let mut nbits = 0;
        let mut vals = Vec::with_capacity(GROUPS * DATA_CHARS);
        for &b in self.bytes.iter() {
            bits = (bits << 8) | u128::from(b);
            nbits += 8;
            while nbits >= 5 {
                nbits -= 5;
                vals.push(((bits >> nbits) & 31) as u8);
            }
        }
        let mut out = Zeroizing::new(String::with_capacity(GROUPS * 6));
        for (g, chunk) in vals.chunks(DATA_CHARS).enumerate() {
            if g > 0 {
                out.push('-');
            }
            for &v in chunk {
                out.push(ALPHABET[v as usize] as char);
            }
            out.push(ALPHABET[check_value(g, chunk) as usize] as char);
        }
        vals.iter_mut().for_each(|v| *v = 0);
        out
    }

    /// Parses what an installer typed: case, spaces and dashes do not matter;
    /// O/I/L are read as 0/1/1. A wrong check character names the group.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let chars: Zeroizing<Vec<char>> =
            Zeroizing::new(text.chars().filter(|c| !c.is_whitespace() && *c != '-').collect());
        let want = GROUPS * (DATA_CHARS + 1);
        if chars.len() != want {
            return Err(KeyError::Recovery(format!(
                "expected {GROUPS} groups of {} characters ({want} in all), got {} characters",
                DATA_CHARS + 1,
                chars.len()
            )));
        }
        let mut vals = Zeroizing::new(Vec::with_capacity(GROUPS * DATA_CHARS));
        for (g, group) in chars.chunks(DATA_CHARS + 1).enumerate() {
            let mut gv = [0u8; DATA_CHARS + 1];
            for (i, &c) in group.iter().enumerate() {
                gv[i] = value_of(c).ok_or_else(|| {
                    KeyError::Recovery(format!("group {} has a character that is not in the alphabet", g + 1))
                })?;
            }
            if check_value(g, &gv[..DATA_CHARS]) != gv[DATA_CHARS] {
                return Err(KeyError::Recovery(format!(
                    "group {} has a typo (its check character does not match)",
                    g + 1
                )));
            }
            vals.extend_from_slice(&gv[..DATA_CHARS]);
        }
        let mut bytes = Zeroizing::new([0u8; 20]);
        let mut acc: u64 = 0;
        let mut nbits = 0;
        let mut i = 0;
        for &v in vals.iter() {
            acc = (acc << 5) | u64::from(v);
            nbits += 5;
            while nbits >= 8 {
                nbits -= 8;
                bytes[i] = ((acc >> nbits) & 0xff) as u8;
                i += 1;
            }
        }
        Ok(RecoveryKey { bytes })
    }

    fn secret(&self) -> StaticSecret {
        let mut k = Zeroizing::new([0u8; 32]);
        hkdf_expand(
            &self.bytes[..],
            b"vigil recovery v1",
            b"x25519 static secret",
            &mut k[..],
        );
        StaticSecret::from(*k)
    }

    /// The public half Vigil keeps.
    pub fn public_key(&self) -> [u8; 32] {
        PublicKey::from(&self.secret()).to_bytes()
    }

    /// Opens an escrow blob made by [`escrow`] for this recovery key.
    pub fn open_escrow(&self, recovery_pub: &[u8; 32], kek_id: &[u8; 8], blob: &[u8]) -> Result<Kek, KeyError> {
        if self.public_key() != *recovery_pub {
            return Err(KeyError::Recovery(
                "this is not the recovery key of this keyring (its public key does not match)".into(),
            ));
        }
        let mut k = self.open_sealed(ESCROW_INFO, &escrow_aad(kek_id), blob, "escrowed key-encryption key")?;
        let kek = Kek::from_bytes(*k);
        zeroize::Zeroize::zeroize(&mut *k);
        if kek.id() != *kek_id {
            return Err(KeyError::Keyring(
                "escrowed key-encryption key does not match its id".into(),
            ));
        }
        Ok(kek)
    }

    /// Opens a data key that a box wrapped to this recovery key for its
    /// off-box replica ([`wrap_replica_key`]).
    pub fn open_replica_key(
        &self,
        key_id: &[u8; 8],
        device_id: &str,
        blob: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.open_sealed(
            REPLICA_INFO,
            &replica_aad(key_id, device_id),
            blob,
            "replicated data key",
        )
    }

    /// Opens `eph_pub || ciphertext || tag` sealed to this key's public half
    /// under the HKDF label `info` and the associated data `aad`.
    fn open_sealed(&self, info: &[u8], aad: &[u8], blob: &[u8], what: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        if blob.len() != ESCROW_LEN {
            return Err(KeyError::Keyring(format!("{what} has the wrong length")));
        }
        let recovery_pub = self.public_key();
        let mut eph = [0u8; 32];
        eph.copy_from_slice(&blob[..32]);
        let shared = self.secret().diffie_hellman(&PublicKey::from(eph));
        if !shared.was_contributory() {
            return Err(KeyError::Keyring(format!("{what} carries a degenerate public key")));
        }
        let key = sealing_key(shared.as_bytes(), &eph, &recovery_pub, info);
        let mut buf = Zeroizing::new(blob[32..].to_vec());
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::from(aad), &mut buf)
            .map_err(|_| {
                KeyError::Keyring(format!(
                    "{what} failed to authenticate (not sealed to this recovery key, or altered)"
                ))
            })?;
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(plain);
        Ok(k)
    }
}

fn hkdf_expand(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    // Lengths here are 32 bytes, far below HKDF's 255 * 32 limit.
    if let Ok(okm) = prk.expand(&info, Len(out.len())) {
        let _ = okm.fill(out);
    }
}

const ESCROW_INFO: &[u8] = b"vigil kek escrow v1";
const REPLICA_INFO: &[u8] = b"vigil replica dek v1";

fn sealing_key(shared: &[u8; 32], eph_pub: &[u8; 32], recovery_pub: &[u8; 32], info: &[u8]) -> LessSafeKey {
    let mut k = Zeroizing::new([0u8; 32]);
    let salt = [eph_pub.as_slice(), recovery_pub.as_slice()].concat();
    hkdf_expand(shared, &salt, info, &mut k[..]);
    // A 32-byte key is always a valid ChaCha20-Poly1305 key.
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &k[..]).unwrap_or_else(|_| unreachable!());
    LessSafeKey::new(unbound)
}

fn escrow_aad(kek_id: &[u8; 8]) -> [u8; 28] {
    let mut a = [0u8; 28];
    a[..20].copy_from_slice(b"vigil-kek-escrow-v1\0");
    a[20..].copy_from_slice(kek_id);
    a
}

/// The associated data of a replicated data key: the key id and the device
/// it belongs to, so a wrapped key moved to another name or box no longer opens.
fn replica_aad(key_id: &[u8; 8], device_id: &str) -> Vec<u8> {
    [
        b"vigil-replica-dek-v1\0".as_slice(),
        key_id.as_slice(),
        device_id.as_bytes(),
    ]
    .concat()
}

/// Seals 32 secret bytes to the recovery public key: an ephemeral X25519
/// key, HKDF-SHA-256 (label `info`), ChaCha20-Poly1305 with `aad`.
/// Returns `eph_pub || ciphertext || tag`.
fn seal_to(recovery_pub: &[u8; 32], info: &[u8], aad: &[u8], secret: &[u8; 32]) -> Result<Vec<u8>, KeyError> {
    let eph = StaticSecret::from(random_bytes::<32>()?);
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*recovery_pub));
    if !shared.was_contributory() {
        return Err(KeyError::Keyring("the stored recovery public key is degenerate".into()));
    }
    let key = sealing_key(shared.as_bytes(), &eph_pub, recovery_pub, info);
    let mut buf = Zeroizing::new(secret.to_vec());
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(aad), &mut *buf)
        .map_err(|_| KeyError::Keyring("sealing to the recovery key failed".into()))?;
    let mut out = Vec::with_capacity(ESCROW_LEN);
    out.extend_from_slice(&eph_pub);
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Encrypts `kek` to the recovery public key: `eph_pub || ciphertext || tag`.
pub fn escrow(kek: &Kek, recovery_pub: &[u8; 32]) -> Result<Vec<u8>, KeyError> {
    seal_to(recovery_pub, ESCROW_INFO, &escrow_aad(&kek.id()), kek.bytes())
}

/// Wraps a recording's data key to the recovery public key for the off-box
/// replica: only the escrowed recovery key opens it
/// ([`RecoveryKey::open_replica_key`]).
pub fn wrap_replica_key(
    recovery_pub: &[u8; 32],
    key_id: &[u8; 8],
    device_id: &str,
    key: &[u8; 32],
) -> Result<Vec<u8>, KeyError> {
    seal_to(recovery_pub, REPLICA_INFO, &replica_aad(key_id, device_id), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parses_back_and_tolerates_case_and_lookalikes() {
        let r = RecoveryKey::generate().unwrap();
        let s = r.to_display();
        assert_eq!(s.len(), 8 * 5 + 7);
        let back = RecoveryKey::parse(&s).unwrap();
        assert_eq!(*back.bytes, *r.bytes);
        let sloppy = s.to_lowercase().replace('-', " ").replace('0', "o").replace('1', "l");
        assert_eq!(*RecoveryKey::parse(&sloppy).unwrap().bytes, *r.bytes);
    }

    #[test]
    fn every_single_character_typo_is_caught_and_named() {
        let r = RecoveryKey::generate().unwrap();
        let s: Vec<char> = r.to_display().chars().collect();
        for i in (0..s.len()).filter(|&i| s[i] != '-') {
            for &a in ALPHABET.iter() {
                if a as char == s[i] {
                    continue;
                }
                let mut t = s.clone();
                t[i] = a as char;
                let t: String = t.into_iter().collect();
                match RecoveryKey::parse(&t) {
                    Err(KeyError::Recovery(m)) => assert!(m.contains(&format!("group {}", i / 6 + 1)), "{m}"),
                    other => panic!("typo at {i} not caught: {:?}", other.is_ok()),
                }
            }
        }
    }

    #[test]
    fn swapped_groups_are_caught() {
        let r = RecoveryKey::generate().unwrap();
        let s = r.to_display();
        let g: Vec<&str> = s.split('-').collect();
        let mut h = g.clone();
        h.swap(0, 1);
        if g[0] != g[1] {
            assert!(RecoveryKey::parse(&h.join("-")).is_err());
        }
    }

    #[test]
    fn escrow_opens_only_with_the_right_recovery_key() {
        let r = RecoveryKey::generate().unwrap();
        let kek = Kek::generate().unwrap();
        let blob = escrow(&kek, &r.public_key()).unwrap();
        assert_eq!(blob.len(), ESCROW_LEN);
        let back = r.open_escrow(&r.public_key(), &kek.id(), &blob).unwrap();
        assert_eq!(back.bytes(), kek.bytes());
        let other = RecoveryKey::generate().unwrap();
        assert!(matches!(
            other.open_escrow(&r.public_key(), &kek.id(), &blob),
            Err(KeyError::Recovery(_))
        ));
        let mut bad = blob.clone();
        bad[40] ^= 1;
        assert!(r.open_escrow(&r.public_key(), &kek.id(), &bad).is_err());
    }

    #[test]
    fn a_replica_key_opens_only_with_its_recovery_key_id_and_device() {
        let r = RecoveryKey::generate().unwrap();
        let dek = [7u8; 32];
        let blob = wrap_replica_key(&r.public_key(), b"keyid123", "vigil-box-a", &dek).unwrap();
        assert_eq!(*r.open_replica_key(b"keyid123", "vigil-box-a", &blob).unwrap(), dek);
        assert!(r.open_replica_key(b"keyid124", "vigil-box-a", &blob).is_err());
        assert!(r.open_replica_key(b"keyid123", "vigil-box-b", &blob).is_err());
        assert!(RecoveryKey::generate()
            .unwrap()
            .open_replica_key(b"keyid123", "vigil-box-a", &blob)
            .is_err());
        // Not interchangeable with a KEK escrow of the same bytes.
        let kek = Kek::from_bytes(dek);
        let escrowed = escrow(&kek, &r.public_key()).unwrap();
        assert!(r.open_replica_key(&kek.id(), "vigil-box-a", &escrowed).is_err());
        let mut bad = blob.clone();
        bad[50] ^= 1;
        assert!(r.open_replica_key(b"keyid123", "vigil-box-a", &bad).is_err());
    }
}
