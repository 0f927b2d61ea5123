//! The rules for names that reach file names, URLs, log lines and the
//! database: cameras, secrets and users. One rule each, one place.

/// What a camera name may be, as an error message says it.
pub const CAMERA_NAME_RULE: &str = "use 1 to 64 letters, digits, '-' or '_'";

/// What a secret name may be, as an error message says it.
pub const SECRET_NAME_RULE: &str = "a secret name is 1 to 64 letters, digits, '-', '_' or '.'";

/// 1 to 64 ASCII letters, digits, '-' or '_'.
pub fn valid_camera_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// What a recorded sub stream is stored as: the camera `<name>.sub` (a '.'
/// is never in a camera name, so it cannot collide with one).
pub const SUB_STREAM_SUFFIX: &str = ".sub";

/// The name a camera's recorded sub stream is stored under.
pub fn sub_stream_name(camera: &str) -> String {
    format!("{camera}{SUB_STREAM_SUFFIX}")
}

/// The camera whose sub stream `name` is (`door.sub` -> `door`); None for
/// anything else.
pub fn main_of_sub_stream(name: &str) -> Option<&str> {
    name.strip_suffix(SUB_STREAM_SUFFIX).filter(|m| valid_camera_name(m))
}

/// A name recordings may be stored under: a camera's, or its sub stream's
/// (`<camera>.sub`). Only for reading and managing recordings; a camera is
/// never created with a '.' in its name.
pub fn valid_recorded_camera_name(name: &str) -> bool {
    valid_camera_name(name) || main_of_sub_stream(name).is_some()
}

/// 1 to 64 ASCII letters, digits, '-', '_' or '.'.
pub fn valid_secret_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// 1 to 64 ASCII letters, digits, '-', '_' or '.'.
pub fn valid_user_name(n: &str) -> bool {
    valid_secret_name(n)
}

/// What free text (a hold reason, a token name, a camera user name) may
/// hold, as an error message says it.
pub const FREE_TEXT_RULE: &str = "use at most 500 characters and no control characters (no line breaks or tabs)";

/// Free text that reaches the audit log, the database and the UI: at most
/// 500 characters, none of them a control character, so one value can never
/// print as two lines (a forged row in `vigil audit tail`) or hide text.
pub fn valid_free_text(s: &str) -> bool {
    s.chars().count() <= 500 && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_camera_name("front-door_2"));
        assert!(!valid_camera_name("front.door"));
        assert!(!valid_camera_name(""));
        assert!(!valid_camera_name(&"a".repeat(65)));
        assert_eq!(sub_stream_name("door"), "door.sub");
        assert_eq!(main_of_sub_stream("door.sub"), Some("door"));
        assert_eq!(main_of_sub_stream("door"), None);
        assert_eq!(main_of_sub_stream(".sub"), None);
        assert_eq!(main_of_sub_stream("a.b.sub"), None);
        assert!(valid_recorded_camera_name("door.sub") && valid_recorded_camera_name("door"));
        assert!(!valid_recorded_camera_name("door.main") && !valid_camera_name("door.sub"));
        assert!(valid_secret_name("camera.front-door"));
        assert!(!valid_secret_name("../etc"));
        assert!(valid_user_name("j.smith"));
        assert!(!valid_user_name("j smith"));
        assert!(valid_free_text("Case 2026-114: break-in, rear door"));
        assert!(!valid_free_text("reason\n2026-12-01 admin key.rotate ok"));
        assert!(!valid_free_text("a\rb"));
        assert!(!valid_free_text("bell\u{7}"));
        assert!(!valid_free_text("next\u{85}line"));
        assert!(!valid_free_text(&"x".repeat(501)));
    }
}
