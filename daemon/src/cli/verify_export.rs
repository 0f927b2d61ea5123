//! `vigil verify-export`: check an evidence bundle offline (signature, every
//! file, nothing added or removed, the signed audit head). Needs no device,
//! database or key.
//!
//! Exit status: 0 `RESULT: INTACT` (checked against the key you pinned with
//! `--pubkey` or `--fingerprint`); 3 `RESULT: INTACT, ORIGIN NOT VERIFIED`
//! (no pin: checked only against the key the bundle carries, which anyone
//! re-signing it can replace); 1 `RESULT: NOT INTACT`; 2 usage.

use std::path::{Path, PathBuf};

use super::Failure;

/// Exit status: 0 intact and signed by the pinned key; 3 intact but ORIGIN
/// NOT VERIFIED (no --pubkey/--fingerprint: checked only with the key the
/// bundle carries); 1 not intact; 2 usage.
#[derive(clap::Args)]
pub struct Args {
    bundle: PathBuf,
    /// The device public key (PEM, from `vigil device`) to check the signature against.
    #[arg(long, alias = "public-key", conflicts_with = "fingerprint")]
    pubkey: Option<PathBuf>,
    /// The device key fingerprint (SHA-256 hex, from `vigil device`).
    #[arg(long)]
    fingerprint: Option<String>,
}

pub fn run(
    Args {
        bundle,
        pubkey,
        fingerprint,
    }: Args,
) -> Result<(), Failure> {
    verify_export(&bundle, pubkey.as_deref(), fingerprint)
}

fn verify_export(bundle: &Path, pubkey: Option<&Path>, fingerprint: Option<String>) -> Result<(), Failure> {
    use vigil_format::bundle::Pin;
    let pin = match (pubkey, fingerprint) {
        (Some(p), _) => {
            let text = std::fs::read_to_string(p).map_err(|e| Failure::Usage(format!("{}: {e}", p.display())))?;
            Pin::PublicKey(
                vigil_format::bundle::key::parse_public_key(&text)
                    .map_err(|e| Failure::Usage(format!("{}: {e}", p.display())))?,
            )
        }
        (None, Some(f)) => {
            let hexd: String = f.chars().filter(|c| c.is_ascii_hexdigit()).collect();
            if hexd.len() != 64 {
                return Err(Failure::Usage(format!(
                    "\"{f}\": a fingerprint is 64 hex digits (SHA-256)"
                )));
            }
            Pin::Fingerprint(hexd)
        }
        (None, None) => Pin::None,
    };
    let rep = vigil_format::bundle::verify_bundle(bundle, &pin);
    println!("Vigil evidence bundle: {}", bundle.display());
    if let Some(m) = &rep.manifest {
        println!("  device      {}", m.device_id);
        println!(
            "  export      {} by {} at {} ({})",
            m.export_id, m.operator, m.exported_utc, m.software
        );
        println!(
            "  clock       {} (max error {} us)",
            if m.time_sync.synchronised {
                "synchronised"
            } else {
                "NOT synchronised"
            },
            m.time_sync.max_error_us
        );
        println!("  requested   {} to {}", m.requested.start_utc, m.requested.end_utc);
        for c in &m.clips {
            println!(
                "  clip        {}: camera {}, {} to {}, {} frames, from recording(s) {:?}",
                c.file,
                c.camera,
                c.actual.start_utc,
                c.actual.end_utc,
                c.frames,
                c.source_recordings.iter().map(|r| r.id).collect::<Vec<_>>()
            );
        }
        println!("  image type  {}", m.image_type);
        match &m.audit_head {
            Some(h) => println!(
                "  audit head  checkpoint {} at entry {}, hash {}, signed {} by key {}",
                h.seq, h.entry_id, h.hash, h.ts, h.public_key_fingerprint
            ),
            None => println!("  audit head  none (a bundle from before signed audit checkpoints)"),
        }
    }
    for f in &rep.findings {
        println!("{} {}", if f.ok { "  ok  " } else { "  FAIL" }, f.text);
    }
    if !rep.pinned {
        println!(
            "  note  the signature was checked with the key shipped in the bundle; to prove which device signed it, \
             run again with --fingerprint (from `vigil device` on the recorder) or --pubkey"
        );
    }
    if rep.ok() && rep.pinned {
        println!("RESULT: INTACT");
        Ok(())
    } else if rep.ok() {
        println!("RESULT: INTACT, ORIGIN NOT VERIFIED");
        Err(Failure::OriginNotVerified(
            "intact, but the origin is not verified: no --pubkey or --fingerprint was given (exit status 3)".into(),
        ))
    } else {
        println!(
            "RESULT: NOT INTACT: {} problem(s)",
            rep.findings.iter().filter(|f| !f.ok).count()
        );
        Err(Failure::Integrity("the bundle failed verification".into()))
    }
}
