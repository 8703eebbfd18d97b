//! Durations as people write them in scenarios and on the command line.

use anyhow::{Result, bail};

/// Parses `"+1h"`, `"-5m"`, `"30s"`, `"250ms"`, `"2d"`, `"90"` (seconds) or `"now"` (zero)
/// into signed milliseconds.
pub fn parse_millis(text: &str) -> Result<i64> {
    let t = text.trim();
    if t == "now" {
        return Ok(0);
    }
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => (1, t),
    };
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (number, unit) = rest.split_at(digits);
    let factor = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("bad duration {text:?} (examples: +1h, -5m, 30s, 250ms, 2d)"),
    };
    match number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
    {
        Some(ms) if !number.is_empty() => Ok(sign * ms),
        _ => bail!("bad duration {text:?} (examples: +1h, -5m, 30s, 250ms, 2d)"),
    }
}

/// True when `text` looks like a relative time (`+1h`, `-5m`, `now`).
pub fn is_relative(text: &str) -> bool {
    text == "now"
        || ((text.starts_with('+') || text.starts_with('-')) && parse_millis(text).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_signs() {
        assert_eq!(parse_millis("+1h").unwrap(), 3_600_000);
        assert_eq!(parse_millis("-5m").unwrap(), -300_000);
        assert_eq!(parse_millis("250ms").unwrap(), 250);
        assert_eq!(parse_millis("90").unwrap(), 90_000);
        assert_eq!(parse_millis("now").unwrap(), 0);
        assert!(parse_millis("+").is_err());
        assert!(parse_millis("1y").is_err());
        assert!(is_relative("+1h") && !is_relative("1h") && !is_relative("+x"));
    }
}
