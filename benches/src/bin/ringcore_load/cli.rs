//! The command line (clap) and what is derived from it.

use std::time::Duration;

use ringcore_cli::CoreSpec;

/// An HTTP/1.1 load generator on ringcore's runtime, open loop by default.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ringcore-load",
    version,
    after_help = "--rate 0 = closed loop (max throughput)"
)]
pub(crate) struct Cli {
    /// The URL every request goes to.
    #[arg(long, value_name = "http://HOST:PORT/PATH")]
    pub(crate) url: String,
    /// Requests per second, open loop (0: closed loop, max throughput).
    #[arg(long, value_name = "R", value_parser = ringcore_cli::non_negative, conflicts_with = "rates")]
    pub(crate) rate: Option<f64>,
    /// A sweep: one run (with its own warm-up) per rate; the JSON is an array.
    #[arg(long, value_name = "R1,R2,...", value_delimiter = ',', value_parser = ringcore_cli::non_negative)]
    pub(crate) rates: Vec<f64>,
    /// Connections (spread over the cores).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) conns: u32,
    /// Most requests outstanding on one connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) depth: u32,
    /// Seconds measured.
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = ringcore_cli::secs)]
    pub(crate) duration: Duration,
    /// Seconds of warm-up before the measurement.
    #[arg(long, default_value = "1", value_name = "SECS", value_parser = ringcore_cli::secs)]
    pub(crate) warmup: Duration,
    /// Generator cores: `all`, `N` (the first N of this process's CPU set) or a list such as
    /// `0,2-3`.
    #[arg(long, default_value = "1", value_name = "all|N|LIST")]
    pub(crate) cores: CoreSpec,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// A request unanswered this long is an error (its connection reconnects).
    #[arg(long = "timeout-ms", default_value = "2000", value_name = "MS", value_parser = ringcore_cli::millis)]
    pub(crate) timeout: Duration,
    /// Request method (one upper-case token).
    #[arg(long, default_value = "GET")]
    pub(crate) method: String,
    /// Request body; every `{n}` in it becomes the request's sequence number.
    #[arg(long, value_name = "TEMPLATE")]
    pub(crate) body: Option<String>,
    /// Content-Type of the body (default application/json when a body is given).
    #[arg(long, value_name = "TYPE")]
    pub(crate) content_type: Option<String>,
    /// An extra request header, `'Name: value'` (repeatable; a `Host` here replaces the
    /// URL's).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,
    /// Exit 1 when more than this share of requests failed (resets, timeouts, malformed
    /// answers; a 503 or 429 answer is not a failure): `0.05` or `5%`.
    #[arg(long, default_value = "1%", value_name = "RATE", value_parser = parse_share)]
    pub(crate) max_error_rate: f64,
    /// Write one CSV line per measured request to FILE: scheduled send time (µs after the
    /// window's start), latency (µs), status; one run only (not with --rates).
    #[arg(long, value_name = "FILE", conflicts_with = "rates")]
    pub(crate) timeline: Option<String>,
    /// With --timeline: keep one request in N (by schedule slot, evenly over time).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) timeline_every: u64,
}

/// `Name: value` with a token name and no line break.
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: a header is 'Name: value'"))?;
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("{name:?} is not a header name"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("header {name}: no line breaks in the value"));
    }
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding") {
        return Err(format!("{name} is set by ringcore-load from --body"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// A share: `0.05` or `5%`, in `0..=1`.
fn parse_share(s: &str) -> Result<f64, String> {
    let v = match s.trim().strip_suffix('%') {
        Some(p) => ringcore_cli::non_negative(p)? / 100.0,
        None => ringcore_cli::non_negative(s)?,
    };
    if v > 1.0 {
        return Err(format!("{s:?} is above 100%"));
    }
    Ok(v)
}

#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub(crate) url: String,
    /// host:port to connect to.
    pub(crate) addr: String,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) rates: Vec<f64>,
    pub(crate) sweep: bool,
    pub(crate) conns: usize,
    pub(crate) depth: usize,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) cores: CoreSpec,
    pub(crate) json: Option<String>,
    pub(crate) progress: bool,
    pub(crate) timeout: Duration,
    pub(crate) method: String,
    pub(crate) body: Option<String>,
    pub(crate) content_type: Option<String>,
    /// Extra request headers, in order.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) max_error_rate: f64,
    /// `--timeline FILE` and its sampling (one in `.1`).
    pub(crate) timeline: Option<(String, u64)>,
}

/// Splits `http://host[:port][/path]` into (connect address, Host header, path).
pub(crate) fn parse_url(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if hostport.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let addr = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    Ok((addr, hostport.to_string(), path.to_string()))
}

impl Args {
    /// Checks what clap cannot and derives the connect address, Host and path from the URL.
    pub(crate) fn from_cli(c: Cli) -> Result<Args, String> {
        let (addr, host, path) = parse_url(&c.url)?;
        let sweep = c.rate.is_none() && !c.rates.is_empty();
        let rates = match c.rate {
            Some(r) => vec![r],
            None if c.rates.is_empty() => vec![0.0],
            None => c.rates,
        };
        let mut a = Args {
            url: c.url,
            addr,
            host,
            path,
            rates,
            sweep,
            conns: c.conns as usize,
            depth: c.depth as usize,
            duration: c.duration,
            warmup: c.warmup,
            cores: c.cores,
            json: c.json,
            progress: !c.no_progress,
            timeout: c.timeout,
            method: c.method,
            body: c.body,
            content_type: c.content_type,
            headers: c.headers,
            max_error_rate: c.max_error_rate,
            timeline: c.timeline.map(|f| (f, c.timeline_every)),
        };
        if a.duration.is_zero() {
            return Err("--duration must be > 0".into());
        }
        if a.timeout.is_zero() {
            return Err("--timeout-ms must be > 0".into());
        }
        if a.method.is_empty() || !a.method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "--method {:?}: one upper-case token such as GET or POST",
                a.method
            ));
        }
        if a.body.is_some() && a.content_type.is_none() {
            a.content_type = Some("application/json".to_string());
        }
        if let Some(ct) = &a.content_type {
            if ct.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err("--content-type: no line breaks".into());
            }
        }
        Ok(a)
    }
}

/// The command line after the program name, parsed and checked (for the tests).
#[cfg(test)]
pub(crate) fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Args, String> {
    use clap::Parser;
    let cli = Cli::try_parse_from(std::iter::once("ringcore-load".to_string()).chain(argv))
        .map_err(|e| e.to_string())?;
    Args::from_cli(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_contract() {
        let a = |s: &str| parse_args(s.split_whitespace().map(String::from));
        let x = a("--url http://127.0.0.1:8080/plaintext").unwrap();
        assert_eq!(
            (x.addr.as_str(), x.path.as_str()),
            ("127.0.0.1:8080", "/plaintext")
        );
        assert_eq!(
            (x.rates.clone(), x.sweep, x.conns, x.depth),
            (vec![0.0], false, 64, 1)
        );
        assert_eq!(
            (x.duration, x.warmup, x.timeout),
            (
                Duration::from_secs(10),
                Duration::from_secs(1),
                Duration::from_millis(2000)
            )
        );
        assert_eq!(x.cores, CoreSpec::First(1));
        let x = a(
            "--url http://127.0.0.1:1/p --rates 1000,2000 --conns 8 --depth 4 --duration 2.5 --warmup 0 \
--cores 0,2,5 --json out.json --no-progress --timeout-ms 300",
        )
        .unwrap();
        assert_eq!((x.rates.clone(), x.sweep), (vec![1000.0, 2000.0], true));
        assert_eq!(
            (x.conns, x.depth, x.duration, x.warmup),
            (8, 4, Duration::from_millis(2500), Duration::ZERO)
        );
        assert_eq!(
            (x.cores, x.json.as_deref(), x.progress),
            (CoreSpec::List(vec![0, 2, 5]), Some("out.json"), false)
        );
        assert_eq!(x.timeout, Duration::from_millis(300));
        assert_eq!(a("--url http://h/ --rate 5000").unwrap().rates, vec![5000.0]);
        assert!(a("--url https://h/").is_err());
        assert!(a("--rate 5").is_err());
        assert!(a("--url http://h/ --rate -1").is_err());
        assert!(a("--url http://h/ --bogus").is_err());
        assert_eq!(
            (x.method.as_str(), x.body.as_deref(), x.content_type.as_deref()),
            ("GET", None, None)
        );
        let x = a("--url http://h/ --method POST --body {\"user\":\"u{n}\"}").unwrap();
        assert_eq!(
            (x.method.as_str(), x.body.as_deref(), x.content_type.as_deref()),
            ("POST", Some(r#"{"user":"u{n}"}"#), Some("application/json"))
        );
        assert!(a("--url http://h/ --method post").is_err());
        assert_eq!(x.max_error_rate, 0.01);
        let x = a("--url=http://h/ --header X-A:1 --header=X-B:2 --max-error-rate=5%").unwrap();
        assert_eq!(
            (x.headers, x.max_error_rate),
            (vec![("X-A".into(), "1".into()), ("X-B".into(), "2".into())], 0.05)
        );
        assert_eq!(
            a("--url http://h/ --max-error-rate 0.2").unwrap().max_error_rate,
            0.2
        );
        for bad in [
            "--header NoColon",
            "--header Bad/Name:1",
            "--header Content-Length:5",
            "--max-error-rate 101%",
            "--max-error-rate -1",
        ] {
            assert!(a(&format!("--url http://h/ {bad}")).is_err(), "{bad}");
        }
        assert!(a("--url http://h/ --method").is_err());
        assert_eq!(x.timeline, None);
        let x = a("--url http://h/ --rate 100 --timeline t.csv --timeline-every 10").unwrap();
        assert_eq!(x.timeline, Some(("t.csv".into(), 10)));
        assert_eq!(
            a("--url http://h/ --timeline t.csv").unwrap().timeline,
            Some(("t.csv".into(), 1))
        );
        assert!(a("--url http://h/ --rates 1,2 --timeline t.csv").is_err());
        assert!(a("--url http://h/ --timeline t.csv --timeline-every 0").is_err());
    }
}
