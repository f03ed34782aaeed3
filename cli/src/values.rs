//! Value parsers for clap's `value_parser = ...` that several binaries share.

use std::time::Duration;

/// Seconds as a decimal (`2.5`), `>= 0`.
pub fn secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=1e9).contains(&v) {
        return Err(format!("{s:?}: seconds must be between 0 and 1e9"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Whole milliseconds (`300`).
pub fn millis(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{s:?} is not a whole number of milliseconds"))
}

/// A finite number `>= 0` (a rate).
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number >= 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(secs("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(secs("0"), Ok(Duration::ZERO));
        assert!(secs("-1").is_err() && secs("inf").is_err() && secs("x").is_err());
        assert_eq!(millis("300"), Ok(Duration::from_millis(300)));
        assert!(millis("1.5").is_err());
        assert_eq!(non_negative("20000"), Ok(20000.0));
        assert!(non_negative("-1").is_err() && non_negative("NaN").is_err());
    }
}
