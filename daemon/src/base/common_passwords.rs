//! The list of common passwords a new password may not be: about 6,000 of
//! 12 to 64 characters (shorter ones are refused by the length rule
//! anyway), lower case, in `common_passwords.txt`. They are the head of the
//! public SecLists top lists (xato.net's ten million), the frequent long
//! ones from public breach lists, and those words with the padding people
//! add to pass a length rule (`123456`, `!`, a year, the word twice).
//! `scripts/gen-common-passwords` makes the file.

use std::collections::HashSet;
use std::sync::OnceLock;

const LIST: &str = include_str!("common_passwords.txt");

fn list() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| LIST.lines().filter(|l| !l.is_empty()).collect())
}

/// Whether `password` is on the list, compared case-insensitively.
pub fn is_common(password: &str) -> bool {
    list().contains(password.to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_lower_case_and_long_enough_to_matter() {
        assert!(list().len() > 5_000, "{}", list().len());
        for p in list() {
            assert_eq!(*p, p.to_lowercase(), "{p}");
            assert!((12..=64).contains(&p.chars().count()), "{p}");
        }
    }

    #[test]
    fn common_passwords_are_found_whatever_their_case() {
        for p in [
            "password1234",
            "Password1234",
            "PASSWORD1234",
            "qwertyuiop123",
            "123456789012",
            "administrator",
            "iloveyou1234",
            "Password2026!",
            "1qaz2wsx3edc",
        ] {
            assert!(is_common(p), "{p}");
        }
        for p in [
            "admin password 2026",
            "a long enough password",
            "correct horse battery staple, but mine",
            "",
        ] {
            assert!(!is_common(p), "{p}");
        }
    }
}
