//! `vigil run`: recover, then record every enabled camera (and serve the
//! HTTPS API and web UI) until SIGTERM.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::base::clock::SystemClock;
use crate::config::{CameraPassword, Config};
use crate::db::Index;
use crate::keys::keyring::Keyring;
use crate::keys::KeyLookup;
use crate::storage::Storage;

use super::{load_config, open_keyring, Failure};

/// `vigil run`: a camera password that cannot be resolved, or a recordings
/// directory refused for being unencrypted, is a configuration error.
pub fn run(config_path: &Path) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let keyring = match open_keyring(&config, "daemon") {
        Ok(k) => {
            unseal_alert(&config, None);
            k
        }
        Err(e) => {
            unseal_alert(&config, Some(&e));
            return Err(e);
        }
    };
    match run_daemon(config, keyring) {
        Ok(()) => Ok(()),
        Err(e) => match e.downcast::<PasswordError>() {
            Ok(p) => Err(Failure::Usage(format!("config error: {}", p.0))),
            Err(e) => match e.downcast::<UnencryptedVolume>() {
                Ok(v) => Err(Failure::Usage(v.0)),
                Err(e) => Err(Failure::Runtime(e)),
            },
        },
    }
}

/// Raises `keys.unseal_failed` when the keyring cannot be opened (kept in
/// the index, sent by the next start that can unseal the channel secrets;
/// MQTT's last will says "offline" meanwhile), or clears it.
fn unseal_alert(config: &Config, failure: Option<&Failure>) {
    if !config.db_path.exists() {
        return;
    }
    let Ok(index) = Index::open_existing(&config.db_path) else {
        return;
    };
    let problem = failure.map(|f| {
        format!(
            "The key-encryption key could not be unsealed at start, so Vigil records nothing: {f}; see docs/runbook.md"
        )
    });
    let r = crate::db::alerts::set_now(
        index.conn(),
        crate::db::alerts::Kind::KeysUnsealFailed,
        "",
        problem.as_deref(),
        crate::base::clock::now_ns(),
    );
    if let Err(e) = r {
        tracing::warn!("cannot store the key alert: {e}");
    }
}

/// After an unclean stop (the running mark still set): `daemon.restarted`,
/// saying how systemd says the last run ended when it told us.
fn restart_alert(index: &Index, recovered: usize) {
    let now = crate::base::clock::now_ns();
    let prev = match crate::db::alerts::mark_running(index.conn(), now) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot keep the running mark: {e}");
            return;
        }
    };
    let Some(result) = prev else { return };
    let how = match result.as_deref() {
        Some(r) if r.starts_with("watchdog") => {
            "the systemd watchdog restarted it after it stopped responding".to_string()
        }
        Some(r) => format!("it stopped unexpectedly ({r}) and systemd restarted it"),
        None => "it was not stopped cleanly (a power cut, a crash or kill -9)".to_string(),
    };
    let message = format!("Vigil started again: {how}; {recovered} interrupted recording(s) recovered");
    tracing::warn!("{message}");
    let r = crate::db::alerts::raise_now(
        index.conn(),
        &crate::db::alerts::Raise::new(crate::db::alerts::Kind::DaemonRestarted, "", &message),
        now,
    );
    if let Err(e) = r {
        tracing::warn!("cannot store the restart alert: {e}");
    }
}

/// Holds an exclusive lock so that two daemons never write one index.
fn lock_instance(config: &Config) -> anyhow::Result<File> {
    let mut p = config.db_path.clone().into_os_string();
    p.push(".lock");
    let f = File::create(&p).with_context(|| format!("creating lock file {}", p.to_string_lossy()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(_) => anyhow::bail!("another vigil is already running on {}", config.db_path.display()),
    }
}

/// The file beside the database that holds the first admin's one-time
/// password (mode 0600).
pub const ONE_TIME_PASSWORD_FILE: &str = "admin-one-time-password";

/// When there is no web user at all: makes `admin` with a one-time password
/// and writes that password to [`ONE_TIME_PASSWORD_FILE`] beside the
/// database, readable only by the service's user. The log and the journal
/// get only the file's path: the daemon's output is the journal, so the
/// password is never printed. A stale file (from an earlier database) is
/// replaced; when the file cannot be written, there is no admin either.
fn first_admin(index: &Index, db_path: &Path) -> anyhow::Result<()> {
    let file = db_path.with_file_name(ONE_TIME_PASSWORD_FILE);
    let deliver = |pw: &str| -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        f.write_all(format!("{pw}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", file.display()))
    };
    if crate::db::users::ensure_first_admin(index, "daemon", "first start", &SystemClock, deliver)? {
        tracing::warn!(
            "FIRST START: web user \"admin\" made; its one-time password is in the file {} (mode 0600); \
             it must be changed at first login (then delete the file)",
            file.display()
        );
    }
    Ok(())
}

/// A camera password the daemon cannot resolve: a configuration error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PasswordError(pub crate::config::ConfigError);

/// The password to log in to `cam` with: from the secrets store (audited),
/// or the plaintext in the config (with a warning saying how to move it).
pub(super) fn camera_password(
    config: &Config,
    cam: &crate::config::CameraConfig,
    keyring: &Keyring,
) -> anyhow::Result<Option<zeroize::Zeroizing<String>>> {
    match &cam.password {
        CameraPassword::None => Ok(None),
        CameraPassword::Plain(p) => {
            let line = cam.password_origin.as_ref().map(|o| o.line).unwrap_or(0);
            tracing::warn!(
                camera = %cam.name,
                "camera password is stored in plain text in {}:{line}; move it to the encrypted store: \
                 `vigil secrets set {}-password` (value on stdin), then replace `password = ...` with \
                 `password_secret = \"{}-password\"`",
                config.path.display(),
                cam.name,
                cam.name
            );
            Ok(Some(zeroize::Zeroizing::new(p.clone())))
        }
        CameraPassword::Secret { name, origin } => {
            match crate::keys::secrets::get(keyring, name, &format!("camera {} login", cam.name)) {
                Ok(v) => {
                    let s = String::from_utf8(v.to_vec())
                        .map_err(|_| PasswordError(origin.error(format!("secret \"{name}\" is not UTF-8 text"))))?;
                    Ok(Some(zeroize::Zeroizing::new(s)))
                }
                Err(crate::keys::secrets::SecretError::NotFound(_)) => Err(PasswordError(origin.error(format!(
                    "no secret named \"{name}\"; add it with `vigil secrets set {name}` (value on stdin)"
                )))
                .into()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// The recordings directory is not on a dm-crypt (LUKS2) volume and the
/// override is not set: recording is refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnencryptedVolume(pub String);

/// Refuses a recordings directory that is not on a LUKS2 volume unless
/// `[storage] allow_unencrypted_volume = true`; then returns the warning
/// health shows.
fn check_volume(config: &Config, storage: &Storage) -> anyhow::Result<Option<String>> {
    let v = crate::base::host::volume(storage.dir())
        .with_context(|| format!("cannot inspect the volume of {}", storage.dir().display()))?;
    if v.is_luks2() {
        tracing::info!(volume = %v.describe(), "recordings are on an encrypted volume");
        return Ok(None);
    }
    let what = format!(
        "the recordings directory {} is on {}, not a dm-crypt LUKS2 volume",
        storage.dir().display(),
        v.describe()
    );
    if !config.allow_unencrypted_volume {
        return Err(UnencryptedVolume(format!(
            "{}: {what}; refusing to record. Put it on the encrypted volume (scripts/provision), \
             or set [storage] allow_unencrypted_volume = true (development only)",
            config.path.display()
        ))
        .into());
    }
    tracing::warn!("UNENCRYPTED VOLUME: {what} (allowed by [storage] allow_unencrypted_volume); recordings are still chunk-encrypted");
    Ok(Some(format!("{what} (allowed by allow_unencrypted_volume)")))
}

/// Recovers interrupted recordings, starts the cameras, the background
/// threads and the web server, tells systemd it is ready, and stops it all
/// cleanly at SIGTERM or SIGINT.
pub fn run_daemon(config: Config, keyring: Arc<Keyring>) -> anyhow::Result<()> {
    let keys: Arc<dyn KeyLookup> = keyring.clone();
    let storage = Storage::new(&config.storage_dir);
    let mut storage = storage;
    storage.ensure()?;
    let volume_warning = check_volume(&config, &storage)?;
    let mut index = Index::open(&config.db_path)?;
    let _lock = lock_instance(&config)?;

    // Only the recordings left open are recovered before recording starts;
    // the walk of the whole archive runs once the daemon is ready.
    let rep = storage.recover_interrupted(&mut index, keys.as_ref())?;
    for r in &rep.recovered {
        tracing::warn!(
            recording = r.id,
            file = %r.file_name,
            frames_kept = r.frames_kept,
            frames_indexed = r.frames_indexed,
            bytes_cut = r.truncated_bytes,
            "recovered an interrupted recording"
        );
    }
    report_file_problems(&rep);
    for (id, e) in &rep.failed {
        tracing::error!(recording = id, "cannot recover: {e}");
    }
    restart_alert(&index, rep.recovered.len());

    match keyring.prune_unused(crate::base::clock::now_ns()) {
        Ok(ids) if !ids.is_empty() => tracing::info!(count = ids.len(), "destroyed data keys no recording uses"),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot prune unused data keys: {e}"),
    }
    // The device identity exists from the first start, so exports made
    // later by the daemon and the CLI never race to create it.
    match crate::evidence::device::DeviceKey::load_or_create(&keyring, "daemon start") {
        Ok(k) => tracing::info!(
            device = %k.identity().device_id,
            signing_key = %k.identity().fingerprint(),
            "device signing key loaded"
        ),
        Err(e) => tracing::error!("device signing key unavailable; evidence bundles will fail: {e}"),
    }
    // The cameras to run: vigil.toml's, then those added from the web UI.
    let mut cameras: Vec<crate::config::CameraConfig> = config.cameras.clone();
    for m in crate::db::cameras::managed(&index)? {
        if config.camera(&m.name).is_some() {
            tracing::warn!(camera = %m.name, "a camera added from the web UI has the name of one in vigil.toml; the file's wins");
            continue;
        }
        match m.to_config() {
            Some(c) => cameras.push(c),
            None => tracing::error!(camera = %m.name, url = %m.url, "stored camera has an unusable URL; skipped"),
        }
    }
    let mut passwords = Vec::new();
    for cam in cameras.iter().filter(|c| c.enabled) {
        passwords.push(camera_password(&config, cam, &keyring)?);
    }
    index.reset_camera_states(crate::base::clock::now_ns())?;
    let web = match &config.http {
        Some(http) => {
            let (tls, fingerprint) = crate::web::tls::server_config(http, &keyring)?;
            first_admin(&index, &config.db_path)?;
            Some((http.clone(), tls, fingerprint))
        }
        None => {
            tracing::info!("no [http] section: the HTTPS API and web UI are off");
            None
        }
    };
    // Blocking work (SQLite, file reads, password hashing) runs on a small,
    // bounded pool: every extra thread would keep its own malloc arena.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let ingest = IngestThread::start()?;
    let live = Arc::new(crate::ingest::live::LiveHub::new());
    let supervisor = Arc::new(
        crate::run::cameras::Supervisor::new(
            ingest.handle.clone(),
            storage.clone(),
            config.db_path.clone(),
            keys.clone(),
            live.clone(),
            config.segment_duration,
            config.stall_timeout,
            config.cameras.iter().map(|c| c.name.clone()).collect(),
        )
        .with_camera_configs(config.cameras.clone())
        .with_sync_interval(config.sync_interval)
        .with_alerts(
            std::time::Duration::from_secs(config.alerts.offline_after_seconds),
            std::time::Duration::from_secs(config.alerts.gap_after_seconds),
        ),
    );
    // Retention and the fixity scrub: plain threads with their own index
    // connections, stopped through one flag at shutdown.
    let background_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let replication = Arc::new(crate::replica::upload::Stats::default());
    let mut background = Vec::new();
    {
        let (st, db, policy, stop) = (
            storage.clone(),
            config.db_path.clone(),
            config.retention.clone(),
            background_stop.clone(),
        );
        background.push(
            std::thread::Builder::new()
                .name("retention".into())
                .spawn(move || crate::archive::retention::run_thread(st, db, policy, stop))?,
        );
        let (st, db, cfg, stop) = (
            storage.clone(),
            config.db_path.clone(),
            config.fixity.clone(),
            background_stop.clone(),
        );
        background.push(
            std::thread::Builder::new()
                .name("fixity".into())
                .spawn(move || crate::archive::fixity::run_thread(st, db, cfg, stop, crate::base::clock::system()))?,
        );
        let anchor = crate::run::audit_anchor::spawn(&config.db_path, &keyring, &background_stop)?;
        background.push(anchor);
        let dispatcher = crate::alerts::dispatch::Dispatcher {
            db_path: config.db_path.clone(),
            keyring: keyring.clone(),
            config: config.alerts.clone(),
            ctx: crate::alerts::channels::context(index.conn(), &config.alerts),
        };
        background.push(crate::alerts::dispatch::spawn(dispatcher, background_stop.clone())?);
        match &config.replication {
            Some(r) => {
                let uploader = crate::replica::upload::Uploader {
                    db_path: config.db_path.clone(),
                    storage: storage.clone(),
                    keyring: keyring.clone(),
                    config: r.clone(),
                    keep_local: config.retention.keep_until_replicated,
                    stats: replication.clone(),
                };
                background.push(crate::replica::upload::spawn(uploader, background_stop.clone())?);
            }
            None => {
                if let Ok(n @ 1..) = crate::db::replication::release_all(index.conn()) {
                    tracing::info!(
                        recordings = n,
                        "replication is off: recordings kept for it may be pruned again"
                    );
                }
            }
        }
    }
    let mut tasks = Vec::new();
    let mut egress = None;
    for (cam, password) in cameras.iter().filter(|c| c.enabled).zip(passwords) {
        supervisor.start(cam, password)?;
    }
    if let Some((http, tls, fingerprint)) = web {
        let listener = runtime
            .block_on(async { crate::web::server::bind(http.listen) })
            .with_context(|| format!("cannot listen on {} ([http] listen)", http.listen))?;
        let bound = listener.local_addr().unwrap_or(http.listen);
        tracing::info!(
            listen = %bound,
            fingerprint = %fingerprint,
            tls = if http.tls12 { "1.3, 1.2" } else { "1.3 only" },
            "HTTPS API listening; compare the certificate fingerprint with the browser's"
        );
        let mut state = crate::web::AppState::new(
            config.db_path.clone(),
            keyring.clone(),
            storage.clone(),
            supervisor.clone(),
            fingerprint,
            live.clone(),
            crate::base::clock::system(),
        );
        state.require_admin_mfa = http.require_mfa_for_admins;
        state.transcoders = Arc::new(crate::ingest::transcode::Transcoders::new(http.max_transcodes));
        state.volume_warning = volume_warning.clone();
        state.retention = config.retention.clone();
        state.alerts = config.alerts.clone();
        state.onvif = config.onvif.clone();
        state.replication = config
            .replication
            .as_ref()
            .map(|r| (r.lag_alert_after_ns + r.schedule.closed_ns(), replication.clone()));
        state.provisioned_urls = config
            .cameras
            .iter()
            .map(|c| (c.name.clone(), c.url.to_string()))
            .collect();
        let state = Arc::new(state);
        egress = Some(state.egress.clone());
        if let Some((addr, action)) = http.plain {
            let plain = runtime
                .block_on(async { crate::web::server::bind(addr) })
                .with_context(|| format!("cannot listen on {addr} ([http] plain_listen)"))?;
            tracing::info!(
                listen = %plain.local_addr().unwrap_or(addr),
                ?action,
                "plain HTTP listener (redirects to HTTPS or refuses; serves nothing)"
            );
            tasks.push(runtime.spawn(crate::web::server::serve_plain(
                plain,
                crate::web::tls::redirect_host_name(&http),
                bound.port(),
                action,
                crate::web::limits::ServerLimits::of(&http),
                shutdown_rx.clone(),
            )));
        }
        tasks.push(runtime.spawn(crate::web::server::serve(
            state,
            listener,
            tokio_rustls::TlsAcceptor::from(tls),
            crate::web::limits::ServerLimits::of(&http),
            shutdown_rx.clone(),
        )));
    }
    // The runtime's heartbeat: one tick a second from a task on it.
    let runtime_beat = Arc::new(std::sync::atomic::AtomicI64::new(crate::base::clock::mono_ms()));
    {
        let beat = runtime_beat.clone();
        let mut shutdown = shutdown_rx.clone();
        runtime.spawn(async move {
            loop {
                beat.store(crate::base::clock::mono_ms(), std::sync::atomic::Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        });
    }
    // Database open, keys loaded, listeners bound: ready.
    let notifier = crate::run::notify::Notifier::from_env();
    notifier.send(&format!(
        "READY=1\nSTATUS={} camera(s) starting",
        supervisor.running().len()
    ));
    if notifier.enabled() {
        tracing::info!(watchdog = ?notifier.watchdog(), "told systemd we are ready");
    }
    {
        let hs = crate::run::health::HealthSupervisor {
            notifier,
            board: crate::run::health::BoardIo::open(&config.board),
            cameras: supervisor.clone(),
            db_path: config.db_path.clone(),
            storage: storage.clone(),
            runtime_beat,
        };
        let stop = background_stop.clone();
        background.push(
            std::thread::Builder::new()
                .name("health".into())
                .spawn(move || hs.run(stop))?,
        );
    }
    tracing::info!(
        cameras = supervisor.running().len(),
        storage = %config.storage_dir.display(),
        "vigil running"
    );
    check_files_in_background(&storage, &config.db_path)?;

    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        }
        crate::run::notify::Notifier::from_env().send("STOPPING=1\nSTATUS=stopping: finalising recordings");
        let _ = shutdown_tx.send(true);
        supervisor.stop_all().await;
        ingest.stop();
        for t in tasks {
            let _ = t.await;
        }
        // Footage streams are over: write the end entries still pending
        // (before the audit anchor's last checkpoint).
        if let Some(e) = &egress {
            e.close_idle();
        }
        anyhow::Ok(())
    })?;
    background_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    storage.alarm().raise();
    for t in background {
        let _ = t.join();
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Err(e) = crate::db::alerts::mark_stopped(index.conn()) {
        tracing::warn!("cannot clear the running mark: {e}");
    }
    tracing::info!("stopped; every open recording was finalised");
    Ok(())
}

/// The cameras' ingest (RTSP sessions, V4L2 readers and their supervisors)
/// runs on one thread of its own with a single-threaded runtime, apart from
/// the web server's: a camera's packets wake one thread instead of handing
/// work between two workers (fewer futex wake-ups and context switches per
/// packet, see docs/performance.md), and a burst of HTTPS work never
/// delays a camera's reads.
struct IngestThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IngestThread {
    fn start() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("ingest".into()).spawn(move || {
            let _ = rt.block_on(stopped);
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        })?;
        Ok(IngestThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Ends the thread once every camera task has stopped.
    fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Logs what reconciliation found wrong between the files and the index.
fn report_file_problems(rep: &crate::storage::Reconciliation) {
    for r in &rep.missing_files {
        tracing::error!(recording = r.id, file = %r.file_name, "index row has no file (row kept; see `vigil verify`)");
    }
    for f in &rep.orphan_files {
        tracing::error!(file = %f, "file has no index row (file kept; see `vigil verify`)");
    }
}

/// The second half of start-up reconciliation (rows without files, files
/// without rows) on a thread of its own, so that a large archive never
/// delays READY or the cameras. Read-only; ends when done.
fn check_files_in_background(storage: &Storage, db_path: &Path) -> anyhow::Result<()> {
    let storage = storage.clone();
    let db_path = db_path.to_path_buf();
    std::thread::Builder::new().name("reconcile".into()).spawn(move || {
        let t = std::time::Instant::now();
        let result = Index::open(&db_path)
            .map_err(crate::storage::StorageError::from)
            .and_then(|index| storage.check_files(&index));
        match result {
            Ok(rep) => {
                report_file_problems(&rep);
                tracing::info!(
                    missing = rep.missing_files.len(),
                    orphans = rep.orphan_files.len(),
                    ms = t.elapsed().as_millis() as u64,
                    "archive checked against the index"
                );
            }
            Err(e) => tracing::error!("cannot check the archive against the index: {e}"),
        }
    })?;
    Ok(())
}
