//! DTMF: the keys a callee presses, as every carrier reports them, and the turn a key
//! press becomes (`[按键 1]`), which both agents read.

/// The callee's turn for a key press.
pub fn turn(key: char) -> String {
    format!("[按键 {key}]")
}

/// The key of a turn made by [`turn`], if it is one.
pub fn key_of_turn(text: &str) -> Option<char> {
    let key = text.strip_prefix("[按键 ")?.strip_suffix(']')?;
    let mut chars = key.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => key_named(c.encode_utf8(&mut [0; 4])),
        _ => None,
    }
}

/// The key of an RFC 4733 event code: 0-9, then `*` (10), `#` (11) and `A`-`D` (12-15);
/// other events (flash, tones) are no key.
pub fn key_of_event(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// A key as text names it: `5`, `*`, `#`, `A`-`D` (either case), or an event code
/// `10`-`15` as some SIP INFO senders write `*`, `#` and `A`-`D`.
pub fn key_named(name: &str) -> Option<char> {
    let name = name.trim();
    let mut chars = name.chars();
    match (chars.next(), chars.next()) {
        (Some(c @ ('0'..='9' | '*' | '#')), None) => Some(c),
        (Some(c @ ('A'..='D' | 'a'..='d')), None) => Some(c.to_ascii_uppercase()),
        _ => name.parse::<u8>().ok().filter(|&code| (10..=15).contains(&code)).and_then(key_of_event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_codes_map_to_the_keypad() {
        let keys: String = (0..=15).filter_map(key_of_event).collect();
        assert_eq!(keys, "0123456789*#ABCD");
        assert_eq!(key_of_event(16), None, "flash is no key");
    }

    #[test]
    fn keys_are_read_by_name_or_code() {
        assert_eq!(key_named("5"), Some('5'));
        assert_eq!(key_named(" # "), Some('#'));
        assert_eq!(key_named("d"), Some('D'));
        assert_eq!(key_named("10"), Some('*'));
        assert_eq!(key_named("11"), Some('#'));
        assert_eq!(key_named("16"), None);
        assert_eq!(key_named("E"), None);
        assert_eq!(key_named(""), None);
        assert_eq!(key_named("12a"), None);
    }

    #[test]
    fn a_key_turn_reads_back_and_speech_is_no_key() {
        assert_eq!(turn('1'), "[按键 1]");
        for key in "0123456789*#ABCD".chars() {
            assert_eq!(key_of_turn(&turn(key)), Some(key));
        }
        assert_eq!(key_of_turn("按键 1"), None);
        assert_eq!(key_of_turn("[按键 10]"), None);
        assert_eq!(key_of_turn("[语音 3秒]"), None);
    }
}
