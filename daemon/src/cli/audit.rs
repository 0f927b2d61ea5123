//! `vigil audit`: the tamper-evident audit log (its latest entries; its hash
//! chain, signed checkpoints and journal copy).

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{load_config, open_index, Failure};
use crate::base::time as cli_time;
use crate::db::{audit, audit_verify};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The latest entries (control characters shown escaped: `\n`, `\u{7}`).
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
    },
    /// Check the hash chain, the signed checkpoints and the journal's copy.
    ///
    /// Names what it finds: an edited, deleted or reordered entry; entries
    /// cut off the end (`truncated`); a chain rewritten and rehashed
    /// (`rewritten`, by the checkpoint whose signed head no longer matches);
    /// a checkpoint with a bad or foreign signature, or missing. Entries
    /// written after the newest checkpoint are "not yet anchored" (not an
    /// error). The daemon's journal (`journalctl -u vigil.service`) is
    /// cross-checked when it holds audit lines of this device.
    Verify {
        /// Cross-check against this saved daemon log (its stderr, or
        /// `journalctl -u vigil.service -o cat` output) instead of the journal.
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
    },
}

pub fn run(cli_config: &Path, Args { command }: Args) -> Result<(), Failure> {
    let config = load_config(cli_config)?;
    let index = open_index(&config)?;
    match command {
        Command::Tail { n } => {
            for e in audit::tail(index.conn(), n).map_err(|e| Failure::Runtime(e.into()))? {
                println!(
                    "{:>6} {} {:<16} {:<20} {:<24} {:<7} {}",
                    e.id,
                    cli_time::format_ns(e.ts_ns),
                    escape(&e.actor),
                    escape(&e.action),
                    escape(&e.target),
                    escape(&e.outcome),
                    escape(&e.detail)
                );
            }
            Ok(())
        }
        Command::Verify { log } => verify(&index, log.as_deref()),
    }
}

fn verify(index: &crate::db::Index, log: Option<&Path>) -> Result<(), Failure> {
    let conn = index.conn();
    let device = crate::db::device::identity(conn).map_err(|e| Failure::Runtime(e.into()))?;
    let text = match log {
        Some(p) => Some(
            std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| Failure::Usage(format!("--log {}: {e}", p.display())))?,
        ),
        None => journal(),
    };
    // Parsed whatever the database says of its device: a database whose
    // device row was removed or replaced is checked against the device the
    // log knows.
    let copy = text
        .as_deref()
        .map(|t| audit_verify::parse_log(t, device.as_ref().map(|(id, _)| id.as_str())));
    let rep = audit_verify::verify(conn, device.as_ref().map(|(id, pk)| (id.as_str(), pk)), copy.as_ref())
        .map_err(|e| Failure::Runtime(e.into()))?;
    if rep.intact() {
        println!("audit log intact: {} entries, hash chain verified", rep.entries);
    }
    println!("{}", rep.anchor_line());
    for n in &rep.notes {
        println!("{n}");
    }
    if rep.intact() {
        return Ok(());
    }
    for p in &rep.problems {
        println!("PROBLEM: {p}");
    }
    Err(Failure::Integrity(format!("audit log: {}", rep.problems.join("; "))))
}

/// The vigil unit's journal, if `journalctl` runs and shows any line.
fn journal() -> Option<String> {
    let out = std::process::Command::new("journalctl")
        .args(["-u", "vigil.service", "-o", "cat", "--no-pager", "-q"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    (out.status.success() && !out.stdout.is_empty()).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A field as one printable line: `\` as `\\`, a line feed as `\n`, a
/// carriage return as `\r`, a tab as `\t`, any other control character as
/// `\u{..}`; so a stored line break can never print as a fake row.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn a_multi_line_field_prints_as_one_line() {
        let hostile = "case 7\n    99 2026-01-01T00:00:00Z admin key.rotate ok\r\u{7}\u{1b}[2J\u{85}\\";
        let shown = escape(hostile);
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert_eq!(
            shown,
            "case 7\\n    99 2026-01-01T00:00:00Z admin key.rotate ok\\r\\u{7}\\u{1b}[2J\\u{85}\\\\"
        );
        assert_eq!(escape("Case 2026-114: rear door"), "Case 2026-114: rear door");
    }
}
