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
