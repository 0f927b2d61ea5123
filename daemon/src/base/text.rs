//! Text from outside (a camera's error, a receiver's answer) made fit to
//! store and to send as one line: no control character can break a log
//! line, an SMS or a terminal, and its length is bounded.

/// `s` with every control character replaced by a space, cut to
/// `max_chars` characters, with "…" when it was cut.
pub fn one_line(s: &str, max_chars: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect();
    if s.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_spaces_and_long_text_is_cut() {
        assert_eq!(one_line("a\nb\u{1b}[31m", 20), "a b [31m");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("abc", 3), "abc");
    }
}
