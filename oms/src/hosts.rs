//! Which `Host` a loopback server answers (DNS rebinding). A page on an attacker's
//! site whose name the attacker then points at 127.0.0.1 reaches `oms up` on the
//! visitor's loopback as its *own* origin: the browser lets it send anything and read
//! the answers. What tells it apart is the name it asked for: its requests carry
//! `Host: evil.example:PORT`. So a server bound to loopback (where nothing asks for
//! credentials) answers only loopback names on its own port, and the names oms.toml's
//! `[http] allowed_hosts` or `--allowed-host` add; anything else is a 403
//! `Request.HostNotAllowed` on every route. Off loopback every call needs credentials,
//! which a rebinding page does not have, and the server may be reached by any name.

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{header, HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The Host values a loopback server answers.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// The port the server is bound to: a loopback name must come with it.
    port: u16,
    /// Names given by the user: `name` (any port) or `name:port`, compared without case.
    configured: Vec<String>,
}

impl AllowedHosts {
    /// The check for a server bound to `addr`; none off loopback (credentials guard it).
    pub fn for_bound(addr: SocketAddr, configured: &[String]) -> Option<AllowedHosts> {
        addr.ip().is_loopback().then(|| AllowedHosts {
            port: addr.port(),
            configured: configured.to_vec(),
        })
    }

    /// Whether a request addressed to `authority` (its Host) is for this server.
    pub fn allows(&self, authority: &str) -> bool {
        let Ok(parsed) = authority.parse::<Authority>() else {
            return false;
        };
        // A request with no port is for port 80 (this server speaks plain HTTP).
        let port_ok = parsed.port_u16().unwrap_or(80) == self.port;
        (port_ok && is_loopback_name(parsed.host()))
            || self.configured.iter().any(|name| {
                name.eq_ignore_ascii_case(parsed.as_str())
                    || name.eq_ignore_ascii_case(parsed.host())
            })
    }
}

/// `localhost`, a name under `.localhost` (browsers resolve those to loopback
/// themselves, RFC 6761), a 127.0.0.0/8 address or `[::1]`.
fn is_loopback_name(host: &str) -> bool {
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return true;
    }
    let ip = lower
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&lower);
    ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The middleware: refuses a request addressed to a name that is not this server's.
/// A request with neither Host nor an authority in its URI (HTTP/1.0) is no browser's
/// and is served.
pub async fn guard(State(hosts): State<Arc<AllowedHosts>>, req: Request, next: Next) -> Response {
    let given = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        });
    match given {
        Some(host) if !hosts.allows(&host) => refused(&hosts, &host, &req),
        _ => next.run(req).await,
    }
}

/// The refusal, in the shape the caller reads: AWS's (`__type`, `x-amzn-ErrorType`)
/// for a Step Functions API request, the Orders API's (`code`) for anything else.
fn refused(hosts: &AllowedHosts, host: &str, req: &Request) -> Response {
    use oms_orders::code::HOST_NOT_ALLOWED;
    let port = hosts.port;
    let message = format!(
        "Host: {host} is not a name of this server: on loopback it answers only \
         localhost:{port}, 127.0.0.1:{port}, [::1]:{port} and the names of oms.toml's \
         [http] allowed_hosts or --allowed-host; a web page whose name resolves to \
         127.0.0.1 cannot call it (DNS rebinding, docs/security.md)"
    );
    if !req.headers().contains_key("x-amz-target") {
        let problem = oms_orders::Problem::new(403, HOST_NOT_ALLOWED, message);
        return crate::respond::problem_response(&problem);
    }
    let body = serde_json::json!({"__type": HOST_NOT_ALLOWED, "message": message});
    (
        StatusCode::FORBIDDEN,
        [
            (header::CONTENT_TYPE, crate::respond::CONTENT_TYPE),
            (
                HeaderName::from_static("x-amzn-errortype"),
                HOST_NOT_ALLOWED,
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_loopback(configured: &[&str]) -> AllowedHosts {
        let names: Vec<String> = configured.iter().map(|s| s.to_string()).collect();
        AllowedHosts::for_bound("127.0.0.1:8080".parse().unwrap(), &names).unwrap()
    }

    #[test]
    fn loopback_names_on_the_bound_port_are_allowed() {
        let hosts = on_loopback(&[]);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LocalHost:8080",
            "app.localhost:8080",
            "[::1]:8080",
            "127.1.2.3:8080",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example:8080",
            "evil.example",
            "127.0.0.1:8081",
            "localhost",
            "127.0.0.1.evil.example:8080",
            "localhost.evil.example:8080",
            "10.0.0.1:8080",
            "[::2]:8080",
            "",
            "a b:8080",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
    }

    #[test]
    fn configured_names_are_allowed_on_their_port_or_any() {
        let hosts = on_loopback(&["oms.internal", "Proxy.Example:443"]);
        assert!(hosts.allows("oms.internal"));
        assert!(hosts.allows("OMS.internal:9000"));
        assert!(hosts.allows("proxy.example:443"));
        assert!(
            !hosts.allows("proxy.example:8443"),
            "an entry with a port allows that port"
        );
        assert!(!hosts.allows("other.internal:8080"));
    }

    #[test]
    fn off_loopback_there_is_no_host_check() {
        assert!(AllowedHosts::for_bound("0.0.0.0:8080".parse().unwrap(), &[]).is_none());
        assert!(AllowedHosts::for_bound("[::1]:8080".parse().unwrap(), &[]).is_some());
    }
}
