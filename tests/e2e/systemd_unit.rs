//! The shipped systemd files: `systemd-analyze verify` is clean on the
//! service (with ExecStart pointed at the binary just built),
//! `systemd-analyze security --offline=yes` rates it 2.5 or lower (the
//! figure is printed), and sysusers/tmpfiles parse.

use std::process::Command;

use vigil_e2e::*;

#[test]
fn the_service_verifies_and_rates_2_5_or_lower() {
    let unit = std::fs::read_to_string(workspace().join("systemd/vigil.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/vigil "),
        "the unit runs /usr/bin/vigil"
    );
    let d = tempfile::tempdir().unwrap();
    let local = d.path().join("vigil.service");
    std::fs::write(&local, unit.replace("/usr/bin/vigil", &vigil_bin().to_string_lossy())).unwrap();

    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .output()
        .expect("systemd-analyze");
    println!("systemd-analyze verify: {}", text(&o));
    assert!(
        o.status.success() && text(&o).trim().is_empty(),
        "verify is not clean: {}",
        text(&o)
    );

    // The first-boot provisioning unit, pointed at the repository's script.
    let prov = std::fs::read_to_string(workspace().join("systemd/vigil-provision.service")).unwrap();
    assert!(prov.contains("ExecStart=/usr/libexec/vigil/provision "));
    let local_prov = d.path().join("vigil-provision.service");
    let script = workspace().join("scripts/provision");
    std::fs::write(
        &local_prov,
        prov.replace("/usr/libexec/vigil/provision", &script.to_string_lossy()),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local_prov)
        .output()
        .unwrap();
    assert!(o.status.success() && text(&o).trim().is_empty(), "verify: {}", text(&o));

    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&local)
        .output()
        .expect("systemd-analyze security");
    let t = text(&o);
    let line = t
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure figure: {t}"));
    println!("{line}");
    let figure: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the figure in: {line}"));
    println!("systemd-analyze security exposure: {figure}");
    assert!(figure <= 2.5, "exposure {figure} > 2.5:\n{t}");

    // sysusers and tmpfiles parse (dry run / root elsewhere).
    let o = Command::new("systemd-sysusers")
        .arg("--dry-run")
        .arg(workspace().join("systemd/vigil.sysusers"))
        .output()
        .unwrap();
    assert!(o.status.success(), "sysusers: {}", text(&o));
    assert!(text(&o).contains("vigil"), "{}", text(&o));
    // Into an empty root: sysusers makes the user, then tmpfiles the directories.
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let o = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg(workspace().join("systemd/vigil.sysusers"))
        .output()
        .unwrap();
    assert!(o.status.success(), "sysusers --root: {}", text(&o));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    assert!(
        passwd.contains("vigil:x:") && passwd.contains("/usr/sbin/nologin"),
        "{passwd}"
    );
    let o = Command::new("systemd-tmpfiles")
        .arg("--create")
        .arg(format!("--root={}", root.display()))
        .arg(workspace().join("systemd/vigil.tmpfiles"))
        .output()
        .unwrap();
    println!("tmpfiles: {}", text(&o));
    assert!(
        root.join("var/lib/vigil/exports").is_dir(),
        "tmpfiles created nothing: {}",
        text(&o)
    );
}
