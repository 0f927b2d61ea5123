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
    }
}
