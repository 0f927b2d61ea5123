//! `vigil alerts`: what is wrong now and recently, how each channel's
//! deliveries stand, and a test message through one channel. `note-stop`
//! (hidden) is the unit's ExecStopPost: it keeps how systemd says the
//! service ended, for the `daemon.restarted` alert of the next start.

use std::path::Path;

use clap::Subcommand;
use serde_json::json;

use super::{load_config, open_index, open_keyring, Failure};
use crate::base::time::format_ns;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Open alerts (with --all, the recent ones too), then each channel's deliveries.
    List {
        /// Also the latest 50 alerts, open or not.
        #[arg(long)]
        all: bool,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send a test message through CHANNEL now; exit 1 if it was not delivered.
    Test { channel: String },
    /// ExecStopPost: keep $SERVICE_RESULT / $EXIT_CODE / $EXIT_STATUS for the next start.
    #[command(hide = true)]
    NoteStop,
}

pub fn run(config_path: &Path, Args { command }: Args) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    match command {
        Command::List { all, json } => list(&config, all, json),
        Command::Test { channel } => test(&config, &channel),
        Command::NoteStop => {
            let result = std::env::var("SERVICE_RESULT").unwrap_or_default();
            if result.is_empty() || result == "success" {
                return Ok(());
            }
            let code = std::env::var("EXIT_CODE").unwrap_or_default();
            let status = std::env::var("EXIT_STATUS").unwrap_or_default();
            let index = open_index(&config)?;
            crate::db::alerts::note_stop_result(index.conn(), &format!("{result} ({code} {status})").replace(" ()", ""))
                .map_err(|e| Failure::Runtime(e.into()))
        }
    }
}

fn list(config: &crate::config::Config, all: bool, as_json: bool) -> Result<(), Failure> {
    let index = open_index(config)?;
    let c = index.conn();
    let rt = |e: rusqlite::Error| Failure::Runtime(e.into());
    let open = crate::db::alerts::open(c).map_err(rt)?;
    let recent = if all {
        crate::db::alerts::recent(c, 50).map_err(rt)?
    } else {
        Vec::new()
    };
    let stats = crate::db::alert_outbox::channel_stats(c).map_err(rt)?;
    let channels = crate::alerts::channels::all(c, &config.alerts).map_err(rt)?;
    let now = crate::base::clock::now_ns();
    if as_json {
        let alert = |a: &crate::db::alerts::Alert| -> serde_json::Value {
            let deliveries = crate::db::alert_outbox::deliveries_of_alert(c, a.id).unwrap_or_default();
            let mut v = crate::alerts::message::alert_json(a);
            v["occurrences"] = json!(a.occurrences);
            v["deliveries"] = deliveries
                .iter()
                .map(|d| {
                    json!({"channel": d.channel, "type": d.event.kind, "idempotency_key": d.event.idempotency_key,
                           "digest_key": d.digest_key, "state": d.state, "attempts": d.attempts,
                           "last_error": d.last_error, "sent_at": d.sent_ns.map(format_ns)})
                })
                .collect();
            v
        };
        let out = json!({
            "open": open.iter().map(alert).collect::<Vec<_>>(),
            "recent": recent.iter().map(alert).collect::<Vec<_>>(),
            "channels": channels.iter().map(|(ch, source)| {
                let s = stats.iter().find(|s| s.channel == ch.name).cloned().unwrap_or_default();
                json!({"name": ch.name, "kind": ch.kind.as_str(), "source": source.as_str(),
                       "sent": s.sent, "pending": s.pending, "held": s.held, "failed": s.failed,
                       "oldest_pending_seconds": s.oldest_pending_ns.map(|t| (now - t) / 1_000_000_000),
                       "last_sent": s.last_sent_ns.map(format_ns), "last_error": s.last_error})
            }).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    if open.is_empty() {
        println!("no open alerts");
    } else {
        println!("{} open alert(s):", open.len());
        for a in &open {
            println!(
                "  {:<8} {:<22} since {}  {}",
                a.severity.to_uppercase(),
                a.code,
                format_ns(a.first_seen_ns),
                a.message
            );
        }
    }
    if all {
        println!("recent:");
        for a in &recent {
            let state = a
                .cleared_ns
                .map(|t| format!("cleared {}", format_ns(t)))
                .unwrap_or_else(|| "open".into());
            println!(
                "  {:<8} {:<22} {}  {} ({state})",
                a.severity,
                a.code,
                format_ns(a.first_seen_ns),
                a.message
            );
        }
    }
    if channels.is_empty() {
        println!(
            "no alert channels: add [[alerts.channel]] to {} or use the web UI",
            config.path.display()
        );
    }
    for (ch, source) in &channels {
        let s = stats.iter().find(|s| s.channel == ch.name).cloned().unwrap_or_default();
        let kind = ch.kind.as_str();
        let oldest = s
            .oldest_pending_ns
            .map(|t| format!(", oldest waiting {} s", (now - t) / 1_000_000_000))
            .unwrap_or_default();
        let last = s
            .last_sent_ns
            .map(|t| format!(", last sent {}", format_ns(t)))
            .unwrap_or_default();
        let err = s
            .last_error
            .as_ref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        println!(
            "channel {} ({kind}, {}): {} sent, {} pending, {} held for a digest, {} failed{oldest}{last}{err}",
            ch.name,
            source.as_str(),
            s.sent,
            s.pending,
            s.held,
            s.failed
        );
    }
    Ok(())
}

fn test(config: &crate::config::Config, channel: &str) -> Result<(), Failure> {
    let index = open_index(config)?;
    let actor = crate::db::audit::cli_actor();
    let keyring = open_keyring(config, &actor)?;
    let ctx = crate::alerts::channels::context(index.conn(), &config.alerts);
    drop(index);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    let r = rt
        .block_on(crate::alerts::channels::send_test(
            &config.db_path,
            &config.alerts,
            &keyring,
            &ctx,
            channel,
            &actor,
        ))
        .map_err(Failure::Usage)?;
    match r.error {
        None => {
            println!("sent through {} in {} ms (key {})", r.channel, r.ms, r.key);
            Ok(())
        }
        Some(e) => Err(Failure::Runtime(anyhow::anyhow!(
            "not delivered through {} after {} ms: {e}",
            r.channel,
            r.ms
        ))),
    }
}
