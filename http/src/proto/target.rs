//! Request-target forms (RFC 9112 section 3.2): origin-form, absolute-form (parsed down to
//! where its path starts), authority-form for CONNECT, asterisk-form for OPTIONS.

use http::Method;

use super::head::{bad, Reject};

/// Checks the request-target's form (RFC 9112 section 3.2); returns where its path and query
/// start: 0 except for absolute-form, where they follow the authority. `target` is visible
/// ASCII (the request-line scanner admitted nothing else), and `fragment` says whether it
/// holds a `#` (the scanner noted it).
pub(super) fn validate_target(method: &Method, target: &[u8], fragment: bool) -> Result<usize, Reject> {
    let Some(&first) = target.first() else {
        return Err(bad("empty request target"));
    };
    if fragment {
        return Err(bad("fragment in request target"));
    }
    if *method == Method::CONNECT {
        // authority-form only (RFC 9112 section 3.2.3): host:port.
        return if first != b'/' && target.contains(&b':') && !target.contains(&b'/') {
            Ok(0)
        } else {
            Err(bad("CONNECT needs authority-form"))
        };
    }
    if first == b'/' {
        return Ok(0); // origin-form
    }
    if target == b"*" {
        return if *method == Method::OPTIONS {
            Ok(0) // asterisk-form
        } else {
            Err(bad("asterisk-form is only for OPTIONS"))
        };
    }
    absolute_form(target).ok_or_else(|| bad("invalid request target"))
}

/// Parses an absolute-form target, `http[s]://authority[path-abempty][?query]` with the scheme
/// in any case (RFC 9112 section 3.2.2, RFC 3986 section 3); returns where the authority ends
/// (the path and query follow: a `/`, a `?`, or nothing). The authority ends at the first `/`
/// or `?`, so in `http://a?/x` the path is `/` and the query `/x`. `None`: another scheme, or
/// an authority that is not `[userinfo "@"] host [":" port]` with a non-empty host (RFC 9110
/// section 4.2.1 forbids an empty one). The userinfo is checked and ignored, like the Host
/// header: the router sees only the path.
fn absolute_form(t: &[u8]) -> Option<usize> {
    let scheme = t.iter().position(|&b| b == b':')?;
    if !t[..scheme].eq_ignore_ascii_case(b"http") && !t[..scheme].eq_ignore_ascii_case(b"https") {
        return None;
    }
    let start = scheme + 3;
    if t.get(scheme..start)? != b"://" {
        return None;
    }
    let end = t[start..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .map_or(t.len(), |i| start + i);
    let authority = &t[start..end];
    // userinfo = *( unreserved / pct-encoded / sub-delims / ":" ): no `@`, so the last `@`
    // ends it (a second one fails the check).
    let host_port = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => {
            if !uri_chars(&authority[..at], b":") {
                return None;
            }
            &authority[at + 1..]
        }
        None => authority,
    };
    let port_at = if host_port.first() == Some(&b'[') {
        // IP-literal = "[" ( IPv6address / IPvFuture ) "]"
        let close = host_port.iter().position(|&b| b == b']')?;
        let inner = &host_port[1..close];
        if inner.is_empty() || !uri_chars(inner, b":") {
            return None;
        }
        close + 1
    } else {
        // IPv4address / reg-name, possibly empty (refused below)
        let colon = host_port
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(host_port.len());
        if colon == 0 || !uri_chars(&host_port[..colon], b"") {
            return None;
        }
        colon
    };
    match &host_port[port_at..] {
        [] => Some(end),
        [b':', port @ ..] if port.iter().all(u8::is_ascii_digit) => Some(end),
        _ => None,
    }
}

/// True if `s` is `*( unreserved / pct-encoded / sub-delims / extra )` (RFC 3986 section 2).
fn uri_chars(s: &[u8], extra: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            if !(s.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        let ok = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) || extra.contains(&b);
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    /// The path and query of an accepted GET to `target`, or the status it got.
    fn routed(target: &str) -> Result<String, StatusCode> {
        match validate_target(&Method::GET, target.as_bytes(), target.contains('#')) {
            Ok(at) => Ok(target[at..].to_string()),
            Err(r) => Err(r.status),
        }
    }

    #[test]
    fn absolute_form_authority_ends_at_the_first_slash_or_question_mark() {
        for (target, pq) in [
            ("/plain?x=1", "/plain?x=1"),
            ("http://a/x?q", "/x?q"),
            ("http://a", ""),
            ("http://a?/plaintext", "?/plaintext"),
            ("http://a:8080/p", "/p"),
            ("http://a:/p", "/p"),
            ("HTTP://A/p", "/p"),
            ("HtTpS://a/p", "/p"),
            ("https://a?q", "?q"),
            ("http://user@a/p", "/p"),
            ("http://user:pw%41@a:1/p", "/p"),
            ("http://user@a?/admin", "?/admin"),
            ("http://[::1]:8080/p", "/p"),
            ("http://[v7.fe80::1]/p", "/p"),
            ("http://127.0.0.1/p@q", "/p@q"),
            ("http://a%2Eb/", "/"),
            ("http://a/", "/"),
        ] {
            assert_eq!(routed(target).as_deref(), Ok(pq), "{target}");
        }
        for target in [
            "http://",
            "http:///p",
            "http://?q",
            "http://:80/p",
            "http://user@/p",
            "http://a@b@c/p",
            "http://a:b/p",
            "http://a:80:80/p",
            "http://[::1/p",
            "http://[]/p",
            "http://[::1]x/p",
            "http://a%2/p",
            "http://a\"b/p",
            "http://a<b/p",
            "http:/a/p",
            "http:a/p",
            "ftp://a/p",
            "httpx://a/p",
            "://a/p",
            "a/p",
        ] {
            assert_eq!(routed(target), Err(StatusCode::BAD_REQUEST), "{target}");
        }
    }
}
