//! The offline verifier of evidence bundles: needs none of the device's data
//! or keys. It checks the Ed25519 signature of `manifest.json` (against a
//! pinned key or fingerprint when given), every listed file's size, SHA-256
//! and SHA3-256, and that the bundle holds nothing else.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use super::key::{fingerprint, parse_public_key, verify_signature};
use super::{hash_reader, BundleManifest, FileEntry, BUNDLE_FORMAT, MANIFEST, PUBLIC_KEY, SIGNATURE};
use crate::hex;

/// How the verifier knows the device's key.
#[derive(Clone, Debug)]
pub enum Pin {
    /// Trust the key shipped in the bundle (and say so).
    None,
    PublicKey([u8; 32]),
    Fingerprint(String),
}

/// One line of the verifier's report.
#[derive(Clone, Debug)]
pub struct Finding {
    pub ok: bool,
    pub text: String,
}

#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub findings: Vec<Finding>,
    pub manifest: Option<BundleManifest>,
    /// True when the signing key was checked against a key the caller supplied.
    pub pinned: bool,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        !self.findings.is_empty() && self.findings.iter().all(|f| f.ok)
    }
    fn pass(&mut self, t: impl Into<String>) {
        self.findings.push(Finding {
            ok: true,
            text: t.into(),
        });
    }
    fn fail(&mut self, t: impl Into<String>) {
        self.findings.push(Finding {
            ok: false,
            text: t.into(),
        });
    }
}

/// What a bundle holds: names, and a way to read each.
trait BundleSource {
    fn names(&self) -> &[String];
    fn open(&mut self, name: &str) -> std::io::Result<Box<dyn Read + '_>>;
}

struct DirSource {
    dir: PathBuf,
    names: Vec<String>,
}

impl DirSource {
    fn new(dir: &Path) -> std::io::Result<Self> {
        let mut names = Vec::new();
        let mut stack = vec![PathBuf::new()];
        let mut visited = 0;
        while let Some(rel) = stack.pop() {
            visited += 1;
            if visited > 10_000 {
                return Err(std::io::Error::other("more than 10,000 directories in the bundle"));
            }
            for e in std::fs::read_dir(dir.join(&rel))? {
                let e = e?;
                let r = rel.join(e.file_name());
                let ft = e.file_type()?;
                if ft.is_dir() {
                    stack.push(r);
                } else {
                    names.push(r.to_string_lossy().to_string());
                }
            }
        }
        names.sort();
        Ok(DirSource {
            dir: dir.to_path_buf(),
            names,
        })
    }
}

impl BundleSource for DirSource {
    fn names(&self) -> &[String] {
        &self.names
    }
    fn open(&mut self, name: &str) -> std::io::Result<Box<dyn Read + '_>> {
        // Only regular files: a symlink or a device in a bundle (say, to
        // /dev/zero) must not make the verifier read outside it, or forever.
        let p = self.dir.join(name);
        if !std::fs::symlink_metadata(&p)?.file_type().is_file() {
            return Err(std::io::Error::other("not a regular file (a symlink, device or pipe)"));
        }
        Ok(Box::new(std::fs::File::open(p)?))
    }
}

struct ZipSource<R: Read + Seek> {
    zip: zip::ZipArchive<R>,
    names: Vec<String>,
}

impl<R: Read + Seek> BundleSource for ZipSource<R> {
    fn names(&self) -> &[String] {
        &self.names
    }
    fn open(&mut self, name: &str) -> std::io::Result<Box<dyn Read + '_>> {
        let f = self.zip.by_name(name).map_err(std::io::Error::other)?;
        Ok(Box::new(f))
    }
}

const MAX_MANIFEST_BYTES: u64 = 16 << 20;

fn read_small(src: &mut dyn BundleSource, name: &str) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    src.open(name)?.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut v)?;
    if v.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(std::io::Error::other("larger than 16 MiB"));
    }
    Ok(v)
}

/// Verifies a bundle (directory or zip) using only what is in it and the pin.
pub fn verify_bundle(path: &Path, pin: &Pin) -> VerifyReport {
    let mut rep = VerifyReport::default();
    let src: Result<Box<dyn BundleSource>, String> = if path.is_dir() {
        DirSource::new(path)
            .map(|s| Box::new(s) as Box<dyn BundleSource>)
            .map_err(|e| e.to_string())
    } else {
        std::fs::File::open(path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(|e| format!("not a readable zip: {e}"))
            })
            .and_then(|zip| {
                let mut names = Vec::new();
                for n in zip.file_names() {
                    let n = n.map_err(|e| format!("an entry name in the zip is unreadable: {e}"))?;
                    if !n.ends_with('/') {
                        names.push(n.to_string());
                    }
                }
                names.sort();
                Ok(Box::new(ZipSource { zip, names }) as Box<dyn BundleSource>)
            })
    };
    let mut src = match src {
        Ok(s) => s,
        Err(e) => {
            rep.fail(format!("cannot read the bundle {}: {e}", path.display()));
            return rep;
        }
    };
    verify_source(src.as_mut(), pin, &mut rep);
    rep
}

fn verify_source(src: &mut dyn BundleSource, pin: &Pin, rep: &mut VerifyReport) {
    let manifest_bytes = match read_small(src, MANIFEST) {
        Ok(b) => b,
        Err(e) => return rep.fail(format!("{MANIFEST}: cannot read it ({e}); nothing can be checked")),
    };
    let sig = read_small(src, SIGNATURE).unwrap_or_default();
    let key_text = read_small(src, PUBLIC_KEY)
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .unwrap_or_default();
    let bundled_key = parse_public_key(&key_text);

    // The key to check against: the pinned one, else the bundled one.
    let key = match (pin, &bundled_key) {
        (Pin::PublicKey(k), _) => {
            rep.pinned = true;
            if bundled_key.as_ref().ok() != Some(k) {
                rep.fail(format!(
                    "{PUBLIC_KEY} is not the key you gave (bundled fingerprint {}, yours {})",
                    bundled_key.as_ref().map(fingerprint).unwrap_or_else(|e| e.clone()),
                    fingerprint(k)
                ));
            }
            Some(*k)
        }
        (Pin::Fingerprint(fp), Ok(k)) => {
            rep.pinned = true;
            let have = fingerprint(k);
            let want: String = fp
                .to_ascii_lowercase()
                .chars()
                .filter(|c| c.is_ascii_hexdigit())
                .collect();
            if have == want {
                rep.pass(format!("device key fingerprint {have} matches the one you gave"));
                Some(*k)
            } else {
                rep.fail(format!(
                    "device key fingerprint {have} is not the one you gave ({want}): signed by another key"
                ));
                None
            }
        }
        (_, Err(e)) => {
            rep.fail(format!("{PUBLIC_KEY}: {e}"));
            None
        }
        (Pin::None, Ok(k)) => Some(*k),
    };
    match key {
        Some(k) if verify_signature(&k, &manifest_bytes, &sig) => rep.pass(format!(
            "{SIGNATURE}: valid Ed25519 signature of {MANIFEST} by key {}",
            fingerprint(&k)
        )),
        Some(_) if sig.len() != 64 => rep.fail(format!(
            "{SIGNATURE}: missing or not a 64-byte Ed25519 signature ({} bytes)",
            sig.len()
        )),
        Some(_) => rep.fail(format!(
            "{SIGNATURE}: the signature does not match {MANIFEST}: the manifest or the signature was changed"
        )),
        None => rep.fail(format!("{SIGNATURE}: not checked: no trusted key")),
    }

    let manifest: BundleManifest = match serde_json::from_slice(&manifest_bytes) {
        Ok(m) => m,
        Err(e) => return rep.fail(format!("{MANIFEST}: not a Vigil bundle manifest ({e})")),
    };
    if manifest.format != BUNDLE_FORMAT {
        rep.fail(format!("{MANIFEST}: unknown format \"{}\"", manifest.format));
    }
    if let Ok(k) = &bundled_key {
        if manifest.signing_key.public_key_hex != hex(k) {
            rep.fail(format!("{MANIFEST} names a different signing key than {PUBLIC_KEY}"));
        }
    }
    // The device's signed audit log head, when the bundle carries one.
    match (&manifest.audit_head, key) {
        (None, _) => {}
        (Some(h), Some(k)) => match h.verify(&manifest.device_id, &k) {
            Ok(()) => rep.pass(format!(
                "audit head: checkpoint {} at entry {} (hash {}), signed {}: valid signature by key {}",
                h.seq,
                h.entry_id,
                h.hash,
                h.ts,
                fingerprint(&k)
            )),
            Err(e) => rep.fail(format!("audit head: {e}")),
        },
        (Some(_), None) => rep.fail("audit head: not checked: no trusted key"),
    }

    // Every listed file: present, same size and hashes.
    let mut listed: BTreeMap<&str, &FileEntry> = BTreeMap::new();
    for f in &manifest.files {
        listed.insert(f.name.as_str(), f);
    }
    let present: std::collections::BTreeSet<String> = src.names().iter().cloned().collect();
    let mut missing = Vec::new();
    let mut present_hashes = BTreeMap::new();
    for f in &manifest.files {
        if !present.contains(&f.name) {
            missing.push(f);
            continue;
        }
        let got = src.open(&f.name).and_then(|mut r| hash_reader(&f.name, &mut r));
        match got {
            Ok(g) if g == *f => rep.pass(format!(
                "{}: {} bytes, SHA-256 and SHA3-256 match the manifest",
                f.name, f.bytes
            )),
            Ok(g) => {
                let what = if g.bytes != f.bytes {
                    format!("size {} bytes, the manifest says {}", g.bytes, f.bytes)
                } else {
                    "same size but different content (hashes differ)".into()
                };
                rep.fail(format!("{}: CHANGED: {what}", f.name));
            }
            Err(e) if e.to_string().contains("checksum") => rep.fail(format!(
                "{}: CHANGED: its bytes no longer match the zip's CRC-32 ({e})",
                f.name
            )),
            Err(e) => rep.fail(format!("{}: cannot read it: {e}", f.name)),
        }
    }
    // Files the manifest does not list.
    let fixed = [MANIFEST, SIGNATURE, PUBLIC_KEY];
    for name in &present {
        if listed.contains_key(name.as_str()) || fixed.contains(&name.as_str()) {
            continue;
        }
        let h = src.open(name).and_then(|mut r| hash_reader(name, &mut r)).ok();
        if let Some(h) = &h {
            present_hashes.insert(name.clone(), h.sha256.clone());
        }
        let renamed_from = h
            .as_ref()
            .and_then(|h| missing.iter().find(|m| m.sha256 == h.sha256 && m.bytes == h.bytes));
        match renamed_from {
            Some(m) => rep.fail(format!("{name}: RENAMED: it is {} under another name", m.name)),
            None => rep.fail(format!("{name}: ADDED: the manifest does not list this file")),
        }
    }
    for m in &missing {
        if !present_hashes.values().any(|h| *h == m.sha256) {
            rep.fail(format!(
                "{}: REMOVED: listed in the manifest but not in the bundle",
                m.name
            ));
        }
    }
    for f in fixed {
        if !present.contains(f) {
            rep.fail(format!("{f}: REMOVED from the bundle"));
        }
    }
    if manifest.files.is_empty() {
        rep.fail(format!("{MANIFEST} lists no files"));
    }
    rep.manifest = Some(manifest);
}
