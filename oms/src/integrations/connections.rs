//! EventBridge connections as oms.toml's `[[connections]]` define them: the
//! authorization an HTTP Task (`arn:aws:states:::http:invoke`) sends, and the extra
//! headers, query parameters and body parameters it adds (docs/integrations.md, "HTTP
//! Tasks"). This file is the one definition of the model: the TOML shape, its checks,
//! and the OAuth token cache.

use asl::Failure;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What AWS prefixes the errors of a connection with ("Connection errors" in
/// https://docs.aws.amazon.com/step-functions/latest/dg/call-https-apis.html).
pub const ERROR_PREFIX: &str = "Events.ConnectionResource.";

/// What TestState's TRACE data shows in place of a connection's secrets.
pub const MASK: &str = "*****";

/// A token is renewed this long before the `expires_in` its endpoint gave.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);

/// A `[[connections]]` section as written in oms.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// The connection's name: a task's ConnectionArn
    /// `arn:aws:events:REGION:ACCOUNT:connection/NAME/ID` names it, whatever its ID.
    pub name: String,
    /// When given, only this exact ConnectionArn names the connection.
    #[serde(default)]
    pub arn: Option<String>,
    pub authorization_type: AuthorizationType,
    #[serde(default)]
    pub api_key: Option<ApiKeyConfig>,
    #[serde(default)]
    pub basic: Option<BasicConfig>,
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
    /// EventBridge's InvocationHttpParameters: added to every request, over the task's.
    #[serde(default)]
    pub invocation: HttpParameters,
    /// The ApiEndpoint URLs (`*` matches any run) tasks may send this connection's
    /// credentials to, as an IAM `states:HTTPEndpoint` condition would say; absent, any.
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
}

/// EventBridge's AuthorizationType values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationType {
    ApiKey,
    Basic,
    OauthClientCredentials,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The header the key is sent in.
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicConfig {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The token endpoint (EventBridge's AuthorizationEndpoint).
    pub authorization_endpoint: String,
    /// GET, POST or PUT, as EventBridge allows (default POST).
    #[serde(default = "default_oauth_method")]
    pub http_method: String,
    pub client_id: String,
    pub client_secret: String,
    /// Sent as the `scope` body parameter.
    #[serde(default)]
    pub scope: Option<String>,
    /// EventBridge's OAuthHttpParameters: sent to the token endpoint.
    #[serde(default)]
    pub parameters: HttpParameters,
}

fn default_oauth_method() -> String {
    "POST".into()
}

/// Header, query string and body parameters (EventBridge's ConnectionHttpParameters).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpParameters {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub body: BTreeMap<String, String>,
}

/// A connection checked and with its `env:` secrets read.
#[derive(Debug, Clone)]
pub struct Connection {
    pub name: String,
    arn: Option<String>,
    pub auth: Auth,
    pub invocation: HttpParameters,
    endpoints: Option<Vec<String>>,
}

impl Connection {
    /// The connection with its secrets and its parameters' values masked: what
    /// TestState shows of a request unless `revealSecrets` is set.
    pub fn masked(&self) -> Connection {
        let mask_all = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            m.keys().map(|k| (k.clone(), MASK.to_string())).collect()
        };
        let mut c = self.clone();
        c.invocation = HttpParameters {
            headers: mask_all(&self.invocation.headers),
            query: mask_all(&self.invocation.query),
            body: mask_all(&self.invocation.body),
        };
        match &mut c.auth {
            Auth::ApiKey { value, .. } => *value = MASK.into(),
            Auth::Basic { password, .. } => *password = MASK.into(),
            Auth::OAuth(o) => o.client_secret = MASK.into(),
        }
        c
    }

    /// Refuses an ApiEndpoint outside the connection's `endpoints`, before anything
    /// is sent with its credentials.
    pub fn admit(&self, endpoint: &str) -> Result<(), Failure> {
        let Some(allowed) = &self.endpoints else {
            return Ok(());
        };
        if allowed
            .iter()
            .any(|p| asl::choice::wildcard_match(p, endpoint))
        {
            return Ok(());
        }
        Err(Failure::new(
            format!("{ERROR_PREFIX}AccessDenied"),
            format!(
                "the connection '{}' may be used only for the endpoints {allowed:?}, not \
                 {endpoint} (oms.toml [[connections]] endpoints)",
                self.name
            ),
        ))
    }
}

#[derive(Debug, Clone)]
pub enum Auth {
    ApiKey { header: String, value: String },
    Basic { username: String, password: String },
    OAuth(OAuth),
}

#[derive(Debug, Clone)]
pub struct OAuth {
    pub endpoint: String,
    pub method: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    pub parameters: HttpParameters,
}

/// Every connection of oms.toml, and the OAuth tokens fetched for them.
#[derive(Default)]
pub struct Connections {
    list: Vec<Connection>,
    /// By connection name: the token and when it must be renewed (`None`: when the
    /// API answers 401 or 407, as EventBridge renews it).
    tokens: Mutex<HashMap<String, (String, Option<Instant>)>>,
}

impl Connections {
    /// Checks every section, reading `env:NAME` secrets from the environment now, so a
    /// mistake is reported when `oms up` starts.
    pub fn new(configs: &[ConnectionConfig]) -> Result<Connections, String> {
        let mut list: Vec<Connection> = Vec::with_capacity(configs.len());
        for c in configs {
            let conn = resolve(c)?;
            if list.iter().any(|o| o.name == conn.name) {
                return Err(format!(
                    "[[connections]] name = \"{}\" is given twice: names are unique",
                    conn.name
                ));
            }
            list.push(conn);
        }
        Ok(Connections {
            list,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The connection a task's ConnectionArn names, or the error AWS gives for a
    /// connection that does not exist, saying which section to add.
    pub fn find(&self, field: &str, arn: &str) -> Result<&Connection, Failure> {
        let name = arn_name(arn);
        let found = self.list.iter().find(|c| match &c.arn {
            Some(a) => a == arn,
            None => name == Some(c.name.as_str()),
        });
        found.ok_or_else(|| {
            Failure::new(
                format!("{ERROR_PREFIX}ResourceNotFound"),
                format!(
                    "{field} '{arn}' names no connection of oms.toml: add a [[connections]] \
                     section with name = \"{}\" (or arn = \"{arn}\") and its authorization \
                     (docs/oms-toml.md)",
                    name.unwrap_or("NAME")
                ),
            )
        })
    }

    /// The cached OAuth token of `conn`, if it is still good.
    pub async fn cached_token(&self, conn: &str) -> Option<String> {
        let tokens = self.tokens.lock().await;
        let (token, renew_at) = tokens.get(conn)?;
        match renew_at {
            Some(t) if Instant::now() >= *t => None,
            _ => Some(token.clone()),
        }
    }

    /// Keeps a token `expires_in_s` seconds (until a 401 or 407 when `None`).
    pub async fn store_token(&self, conn: &str, token: String, expires_in_s: Option<u64>) {
        let renew_at = expires_in_s.map(|s| {
            let lifetime = Duration::from_secs(s).saturating_sub(TOKEN_MARGIN);
            Instant::now() + lifetime
        });
        self.tokens
            .lock()
            .await
            .insert(conn.to_string(), (token, renew_at));
    }

    /// Forgets a token the API refused (401 or 407): the next call fetches another.
    pub async fn forget_token(&self, conn: &str) {
        self.tokens.lock().await.remove(conn);
    }
}

/// `NAME` of `arn:aws:events:REGION:ACCOUNT:connection/NAME/ID`.
fn arn_name(arn: &str) -> Option<&str> {
    let rest = arn.split_once(":connection/")?.1;
    Some(rest.split('/').next().unwrap_or(rest)).filter(|n| !n.is_empty())
}

/// A section checked against EventBridge's rules, its secrets read.
fn resolve(c: &ConnectionConfig) -> Result<Connection, String> {
    let at = format!("[[connections]] name = \"{}\"", c.name);
    let valid_name = !c.name.is_empty()
        && c.name.len() <= 64
        && (c.name.bytes()).all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid_name {
        return Err(format!(
            "{at}: a connection name is 1 to 64 letters, digits, '.', '-' or '_' (EventBridge's rule)"
        ));
    }
    if let Some(arn) = &c.arn {
        if arn_name(arn).is_none() || !arn.starts_with("arn:") || !arn.contains(":events:") {
            return Err(format!(
                "{at}: arn = \"{arn}\" is not a connection ARN \
                 (arn:aws:events:REGION:ACCOUNT:connection/NAME/ID)"
            ));
        }
    }
    let given = [
        ("api_key", c.api_key.is_some()),
        ("basic", c.basic.is_some()),
        ("oauth", c.oauth.is_some()),
    ];
    let wanted = match c.authorization_type {
        AuthorizationType::ApiKey => "api_key",
        AuthorizationType::Basic => "basic",
        AuthorizationType::OauthClientCredentials => "oauth",
    };
    for (section, present) in given {
        if present != (section == wanted) {
            return Err(format!(
                "{at}: authorization_type {:?} takes the [connections.{wanted}] table and no other \
                 ({section} is {})",
                c.authorization_type,
                if present { "given" } else { "missing" }
            ));
        }
    }
    check_headers(&at, c)?;
    let auth = match (&c.api_key, &c.basic, &c.oauth) {
        (Some(k), _, _) => Auth::ApiKey {
            header: k.name.clone(),
            value: secret(&at, "api_key.value", &k.value)?,
        },
        (_, Some(b), _) => Auth::Basic {
            username: secret(&at, "basic.username", &b.username)?,
            password: secret(&at, "basic.password", &b.password)?,
        },
        (_, _, Some(o)) => Auth::OAuth(oauth(&at, o)?),
        _ => unreachable!("checked above: exactly one table is given"),
    };
    Ok(Connection {
        name: c.name.clone(),
        arn: c.arn.clone(),
        auth,
        invocation: c.invocation.clone(),
        endpoints: c.endpoints.clone(),
    })
}

/// Header names and values oms can send (a value given as `env:` is checked when read).
fn check_headers(at: &str, c: &ConnectionConfig) -> Result<(), String> {
    let mut headers: Vec<(&str, &str, &str)> = (c.invocation.headers.iter())
        .map(|(k, v)| ("invocation.headers", k.as_str(), v.as_str()))
        .collect();
    if let Some(o) = &c.oauth {
        headers.extend(
            (o.parameters.headers.iter())
                .map(|(k, v)| ("oauth.parameters.headers", k.as_str(), v.as_str())),
        );
    }
    if let Some(k) = &c.api_key {
        headers.push(("api_key.name", k.name.as_str(), ""));
    }
    for (field, name, value) in headers {
        let valid = axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && axum::http::HeaderValue::from_str(value).is_ok();
        if !valid {
            return Err(format!(
                "{at}: {field}: '{name}' is not a header name, or its value holds a line break"
            ));
        }
    }
    Ok(())
}

fn oauth(at: &str, o: &OAuthConfig) -> Result<OAuth, String> {
    let e = &o.authorization_endpoint;
    if !(e.starts_with("http://") || e.starts_with("https://")) {
        return Err(format!(
            "{at}: oauth.authorization_endpoint = \"{e}\" must be an http:// or https:// URL"
        ));
    }
    let method = o.http_method.to_ascii_uppercase();
    if !["GET", "POST", "PUT"].contains(&method.as_str()) {
        return Err(format!(
            "{at}: oauth.http_method = \"{}\" must be GET, POST or PUT",
            o.http_method
        ));
    }
    Ok(OAuth {
        endpoint: e.clone(),
        method,
        client_id: secret(at, "oauth.client_id", &o.client_id)?,
        client_secret: secret(at, "oauth.client_secret", &o.client_secret)?,
        scope: o.scope.clone(),
        parameters: o.parameters.clone(),
    })
}

/// A secret as written, or for `env:NAME` the variable NAME, which must be set.
fn secret(at: &str, field: &str, value: &str) -> Result<String, String> {
    match value.strip_prefix("env:") {
        None => Ok(value.to_string()),
        Some(var) => std::env::var(var).map_err(|_| {
            format!("{at}: {field} = \"{value}\" reads the environment variable {var}, which is not set")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Connections, String> {
        #[derive(Deserialize)]
        struct File {
            connections: Vec<ConnectionConfig>,
        }
        let f: File = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Connections::new(&f.connections)
    }

    #[test]
    fn a_task_names_a_connection_by_its_name_whatever_the_id() {
        let c = parse(
            "[[connections]]\nname = \"stripe\"\nauthorization_type = \"API_KEY\"\n\
             api_key = { name = \"x-api-key\", value = \"k\" }\n",
        )
        .unwrap();
        let arn = "arn:aws:events:us-east-2:123456789012:connection/stripe/81210c42-8af1";
        assert_eq!(c.find("f", arn).unwrap().name, "stripe");
        let e = c
            .find(
                "Parameters.Authentication.ConnectionArn",
                "arn:aws:events:x:1:connection/other/1",
            )
            .unwrap_err();
        assert_eq!(e.error, "Events.ConnectionResource.ResourceNotFound");
        let cause = e.cause.unwrap();
        assert!(
            cause.contains("Parameters.Authentication.ConnectionArn"),
            "{cause}"
        );
        assert!(cause.contains("[[connections]]") && cause.contains("name = \"other\""));
    }

    #[test]
    fn endpoints_limit_where_the_credentials_go() {
        let c = parse(
            "[[connections]]\nname = \"a\"\nauthorization_type = \"BASIC\"\n\
             basic = { username = \"u\", password = \"p\" }\n\
             endpoints = [\"https://api.example.com/*\"]\n",
        )
        .unwrap();
        let conn = c
            .find("f", "arn:aws:events:us-east-1:1:connection/a/1")
            .unwrap();
        assert!(conn.admit("https://api.example.com/v1/x").is_ok());
        let e = conn.admit("https://evil.example.net/").unwrap_err();
        assert_eq!(e.error, "Events.ConnectionResource.AccessDenied");
        assert!(e.cause.unwrap().contains("endpoints"));
    }

    #[test]
    fn an_arn_given_must_match_exactly() {
        let c = parse(
            "[[connections]]\nname = \"a\"\narn = \"arn:aws:events:us-east-1:1:connection/a/1\"\n\
             authorization_type = \"BASIC\"\nbasic = { username = \"u\", password = \"p\" }\n",
        )
        .unwrap();
        assert!(c
            .find("f", "arn:aws:events:us-east-1:1:connection/a/1")
            .is_ok());
        assert!(c
            .find("f", "arn:aws:events:us-east-1:1:connection/a/2")
            .is_err());
    }

    #[test]
    fn mistakes_are_named_at_start() {
        let cases = [
            (
                "name = \"a\"\nauthorization_type = \"BASIC\"\n",
                "takes the [connections.basic] table",
            ),
            (
                "name = \"a\"\nauthorization_type = \"API_KEY\"\napi_key = { name = \"h\", value = \"env:OMS_TEST_UNSET_VARIABLE\" }\n",
                "OMS_TEST_UNSET_VARIABLE, which is not set",
            ),
            (
                "name = \"a b\"\nauthorization_type = \"BASIC\"\nbasic = { username = \"u\", password = \"p\" }\n",
                "1 to 64 letters",
            ),
            (
                "name = \"a\"\nauthorization_type = \"OAUTH_CLIENT_CREDENTIALS\"\n\
                 oauth = { authorization_endpoint = \"ftp://x\", client_id = \"i\", client_secret = \"s\" }\n",
                "must be an http:// or https:// URL",
            ),
            ("name = \"a\"\nauthorization_type = \"DIGEST\"\n", "unknown variant"),
            (
                "name = \"a\"\nauthorization_type = \"API_KEY\"\napi_key = { name = \"x key\", value = \"v\" }\n",
                "api_key.name: 'x key' is not a header name",
            ),
        ];
        for (section, expected) in cases {
            let e = parse(&format!("[[connections]]\n{section}")).err().unwrap();
            assert!(e.contains(expected), "{section}: {e}");
        }
        let twice = "[[connections]]\nname = \"a\"\nauthorization_type = \"BASIC\"\n\
                     basic = { username = \"u\", password = \"p\" }\n";
        let e = parse(&format!("{twice}{twice}")).err().unwrap();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn the_documented_example_is_valid() {
        let doc = include_str!("../../../docs/oms-toml.md");
        let blocks: Vec<&str> = (doc.split("```toml\n").skip(1))
            .filter_map(|b| b.split("```").next())
            .filter(|b| b.contains("[[connections]]"))
            .collect();
        assert_eq!(
            blocks.len(),
            1,
            "docs/oms-toml.md shows one [[connections]] example"
        );
        // Its secrets are env: references; the variables are not set here.
        let text = blocks[0].replace("\"env:", "\"value-of-");
        let c = parse(&text).unwrap();
        assert_eq!(c.list.len(), 3);
        assert!(matches!(c.list[2].auth, Auth::OAuth(_)));
    }

    #[tokio::test]
    async fn tokens_are_kept_until_they_expire_or_are_refused() {
        let c = Connections::default();
        c.store_token("a", "t1".into(), Some(3600)).await;
        assert_eq!(c.cached_token("a").await.as_deref(), Some("t1"));
        // A lifetime inside the renewal margin is already due.
        c.store_token("b", "t2".into(), Some(10)).await;
        assert_eq!(c.cached_token("b").await, None);
        c.forget_token("a").await;
        assert_eq!(c.cached_token("a").await, None);
    }
}
