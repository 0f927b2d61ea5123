//! `vigil.toml`: parsing and validation. Every error names the file, the line
//! and the key, in one line.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub const DEFAULT_PATH: &str = "/etc/vigil/vigil.toml";

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    storage: Spanned<RawStorage>,
    keys: Spanned<RawKeys>,
    #[serde(default)]
    recording: Option<Spanned<RawRecording>>,
    #[serde(default)]
    camera: Vec<Spanned<RawCamera>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    dir: Spanned<PathBuf>,
    db: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    source: Spanned<String>,
    file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecording {
    segment_seconds: Option<Spanned<u32>>,
    stall_timeout_seconds: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCamera {
    name: Spanned<String>,
    url: Spanned<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// Where a value came from, for errors found after parsing (e.g. a missing key file).
#[derive(Clone, Debug)]
pub struct Origin {
    pub file: String,
    pub line: usize,
    pub key: String,
}

impl Origin {
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line,
            key: self.key.clone(),
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug)]
pub enum KeySourceConfig {
    File { path: PathBuf, origin: Origin },
}

#[derive(Clone, Debug)]
pub struct CameraConfig {
    pub name: String,
    pub url: url::Url,
    pub username: Option<String>,
    pub password: Option<String>,
    pub enabled: bool,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub storage_dir: PathBuf,
    pub db_path: PathBuf,
    pub keys: KeySourceConfig,
    pub segment_duration: Duration,
    pub stall_timeout: Duration,
    pub cameras: Vec<CameraConfig>,
}

struct Src<'a> {
    file: String,
    text: &'a str,
}

impl Src<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text[..offset].bytes().filter(|&b| b == b'\n').count() + 1
    }
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line_of(span.start),
            key: key.to_string(),
            message: message.into(),
        }
    }
    fn origin(&self, span: Range<usize>, key: &str) -> Origin {
        Origin {
            file: self.file.clone(),
            line: self.line_of(span.start),
            key: key.to_string(),
        }
    }

    /// For a parse error at `offset`: the dotted key written on that line, with
    /// the table header in force there (`camera.url`, `storage.dir`).
    fn key_at(&self, offset: usize) -> String {
        let line_no = self.line_of(offset);
        let mut table = String::new();
        let mut key = String::new();
        for (i, line) in self.text.lines().enumerate() {
            if i + 1 > line_no {
                break;
            }
            let t = line.trim();
            if let Some(h) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
                table = h.trim().to_string();
            } else if let Some(h) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
                table = h.trim().to_string();
            }
            if i + 1 == line_no {
                if let Some((k, _)) = t.split_once('=') {
                    key = k.trim().trim_matches('"').to_string();
                }
            }
        }
        match (table.is_empty(), key.is_empty()) {
            (true, true) => "(top level)".to_string(),
            (false, true) => table,
            (true, false) => key,
            (false, false) => format!("{table}.{key}"),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let src = Src {
            file: path.display().to_string(),
            text,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e.message().trim().replace('\n', " ");
            src.err(offset..offset, &src.key_at(offset), msg)
        })?;

        let storage = raw.storage.into_inner();
        let dir = absolute(&src, storage.dir, "storage.dir")?;
        let db = absolute(&src, storage.db, "storage.db")?;

        let keys_span = raw.keys.span();
        let keys = raw.keys.into_inner();
        let keys = match keys.source.get_ref().as_str() {
            "file" => {
                let Some(f) = keys.file else {
                    return Err(src.err(
                        keys_span,
                        "keys.file",
                        "source = \"file\" needs `file = \"/path/to/master.key\"`",
                    ));
                };
                let origin = src.origin(f.span(), "keys.file");
                let path = absolute(&src, f, "keys.file")?;
                KeySourceConfig::File { path, origin }
            }
            other => {
                return Err(src.err(
                    keys.source.span(),
                    "keys.source",
                    format!("unknown key source \"{other}\" (this build supports \"file\")"),
                ))
            }
        };

        let mut segment_duration = Duration::from_secs(60);
        let mut stall_timeout = Duration::from_secs(5);
        if let Some(rec) = raw.recording {
            let rec = rec.into_inner();
            if let Some(s) = rec.segment_seconds {
                if !(1..=3600).contains(s.get_ref()) {
                    return Err(src.err(s.span(), "recording.segment_seconds", "must be between 1 and 3600"));
                }
                segment_duration = Duration::from_secs(u64::from(*s.get_ref()));
            }
            if let Some(s) = rec.stall_timeout_seconds {
                if !(1..=10).contains(s.get_ref()) {
                    return Err(src.err(s.span(), "recording.stall_timeout_seconds", "must be between 1 and 10"));
                }
                stall_timeout = Duration::from_secs(u64::from(*s.get_ref()));
            }
        }

        let mut names = HashSet::new();
        let mut cameras = Vec::new();
        for cam in raw.camera {
            let cam = cam.into_inner();
            let name = cam.name.get_ref().clone();
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(src.err(
                    cam.name.span(),
                    "camera.name",
                    format!("\"{name}\": use 1 to 64 letters, digits, '-' or '_'"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(src.err(
                    cam.name.span(),
                    "camera.name",
                    format!("duplicate camera name \"{name}\""),
                ));
            }
            let url = url::Url::parse(cam.url.get_ref()).map_err(|e| {
                src.err(
                    cam.url.span(),
                    "camera.url",
                    format!("invalid URL \"{}\": {e}", cam.url.get_ref()),
                )
            })?;
            if url.scheme() != "rtsp" {
                return Err(src.err(
                    cam.url.span(),
                    "camera.url",
                    format!("unsupported URL scheme \"{}\" (expected rtsp://)", url.scheme()),
                ));
            }
            if url.host_str().is_none_or(|h| h.is_empty()) {
                return Err(src.err(cam.url.span(), "camera.url", "URL has no host"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(src.err(
                    cam.url.span(),
                    "camera.url",
                    "put credentials in username/password, not in the URL",
                ));
            }
            cameras.push(CameraConfig {
                name,
                url,
                username: cam.username,
                password: cam.password,
                enabled: cam.enabled,
            });
        }

        Ok(Config {
            path: path.to_path_buf(),
            storage_dir: dir,
            db_path: db,
            keys,
            segment_duration,
            stall_timeout,
            cameras,
        })
    }

    pub fn camera(&self, name: &str) -> Option<&CameraConfig> {
        self.cameras.iter().find(|c| c.name == name)
    }
}

fn absolute(src: &Src<'_>, p: Spanned<PathBuf>, key: &str) -> Result<PathBuf, ConfigError> {
    let span = p.span();
    let p = p.into_inner();
    if !p.is_absolute() {
        return Err(src.err(span, key, format!("\"{}\" must be an absolute path", p.display())));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[storage]
dir = "/srv/vigil/recordings"
db = "/var/lib/vigil/vigil.db"

[keys]
source = "file"
file = "/var/lib/vigil/master.key"

[recording]
segment_seconds = 10

[[camera]]
name = "front-door"
url = "rtsp://127.0.0.1:8554/h264"
"#;

    fn err(text: &str) -> ConfigError {
        Config::parse(Path::new("/etc/vigil/vigil.toml"), text).unwrap_err()
    }

    #[test]
    fn good_config_parses() {
        let c = Config::parse(Path::new("/x.toml"), GOOD).unwrap();
        assert_eq!(c.segment_duration, Duration::from_secs(10));
        assert_eq!(c.cameras[0].name, "front-door");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = err(&GOOD.replace("segment_seconds = 10", "segment_seconds = 10\nsegment_secs = 3"));
        assert_eq!(e.line, 12, "{e}");
        assert_eq!(e.key, "recording.segment_secs", "{e}");
    }

    #[test]
    fn bad_url_and_duplicate_name() {
        let e = err(&GOOD.replace("rtsp://127.0.0.1:8554/h264", "rtsp//nope"));
        assert_eq!((e.line, e.key.as_str()), (15, "camera.url"), "{e}");
        let dup = format!("{GOOD}\n[[camera]]\nname = \"front-door\"\nurl = \"rtsp://127.0.0.1/x\"\n");
        let e = err(&dup);
        assert_eq!((e.line, e.key.as_str()), (18, "camera.name"), "{e}");
    }
}
