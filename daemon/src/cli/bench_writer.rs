//! `vigil bench-writer` (hidden, for scripts/bench): the recording writer's
//! throughput, sealing alone and seal + write + fdatasync.

use std::path::PathBuf;

use super::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value_t = 256)]
    mib: usize,
    #[arg(long, default_value_t = 64)]
    record_kib: usize,
}

pub fn run(Args { dir, mib, record_kib }: Args) -> Result<(), Failure> {
    let (bytes, secs) = super::bench::seal_throughput(mib, record_kib)?;
    println!(
        "seal: {:.1} MiB as {record_kib} KiB records in {secs:.3} s = {:.1} MB/s (ring ChaCha20-Poly1305, in memory)",
        bytes as f64 / 1048576.0,
        bytes as f64 / secs / 1e6
    );
    let (bytes, secs) = super::bench::writer_throughput(&dir, mib, record_kib)?;
    println!(
        "writer: {:.1} MiB as {record_kib} KiB records in {secs:.3} s = {:.1} MB/s (seal + write + fdatasync per record)",
        bytes as f64 / 1048576.0,
        bytes as f64 / secs / 1e6
    );
    Ok(())
}
