//! OAuth2 for HTTP destinations: refresh-token grants whose access tokens are kept, sealed, in
//! the state store and reused across runs and syncs of one account.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sluice_core::{CredentialStore, DestinationError, ErrorClass};
use tokio::sync::Mutex;

/// Access tokens are renewed this long before they expire, so a request never carries one
/// that lapses in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// `oauth: { client_id, client_secret, refresh_token }` in a destination's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret; never printed or stored.
    pub client_secret: String,
    /// The long-lived refresh token from the app's install or consent flow.
    pub refresh_token: String,
}

/// An access token as kept in the credential store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessToken {
    pub access_token: String,
    /// Seconds since the Unix epoch; `None` when the tool does not say.
    pub expires_at: Option<u64>,
    /// Salesforce's instance URL, which comes with the token.
    pub instance_url: Option<String>,
}

impl AccessToken {
    fn is_fresh(&self) -> bool {
        match self.expires_at {
            Some(at) => now_seconds() + EXPIRY_MARGIN.as_secs() < at,
            None => true,
        }
    }
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Obtains and renews OAuth2 access tokens with the refresh-token grant.
pub struct OAuthTokens {
    token_url: String,
    config: OAuthConfig,
    /// Name under which the current access token is stored, e.g. `hubspot/crm/oauth`.
    credential: String,
    store: Option<Arc<dyn CredentialStore>>,
    client: reqwest::Client,
    current: Mutex<Option<AccessToken>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
    instance_url: Option<String>,
}

impl OAuthTokens {
    /// Tokens from `token_url`; with a store, a token refreshed by one run is reused by the
    /// next, and by other syncs of the same account.
    pub fn new(
        token_url: String,
        config: OAuthConfig,
        credential: String,
        store: Option<Arc<dyn CredentialStore>>,
        client: reqwest::Client,
    ) -> OAuthTokens {
        OAuthTokens { token_url, config, credential, store, client, current: Mutex::new(None) }
    }

    /// A valid access token: the one in memory, else the stored one, else a new one.
    pub async fn token(&self) -> Result<AccessToken, DestinationError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| t.is_fresh()) {
            return Ok(token.clone());
        }
        if let Some(store) = &self.store {
            let stored = store.load(&self.credential).await.map_err(|e| self.error(ErrorClass::Transient, e))?;
            if let Some(token) = stored.and_then(|text| serde_json::from_str::<AccessToken>(&text).ok()) {
                if token.is_fresh() {
                    *current = Some(token.clone());
                    return Ok(token);
                }
            }
        }
        let token = self.refresh_now().await?;
        *current = Some(token.clone());
        Ok(token)
    }

    /// Called after a 401: renews the token unless another request already did.
    pub async fn refresh_after_rejection(&self, rejected: &str) -> Result<AccessToken, DestinationError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| t.access_token != rejected && t.is_fresh()) {
            return Ok(token.clone());
        }
        let token = self.refresh_now().await?;
        *current = Some(token.clone());
        Ok(token)
    }

    async fn refresh_now(&self) -> Result<AccessToken, DestinationError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("client_secret", &self.config.client_secret)
            .append_pair("refresh_token", &self.config.refresh_token)
            .finish();
        let (status, text) = post_token_form(&self.client, &self.token_url, body)
            .await
            .map_err(|e| self.error(ErrorClass::Transient, e))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(self.error(ErrorClass::Transient, format!("HTTP {}: {}", status.as_u16(), reason(&text))));
        }
        if !status.is_success() {
            // invalid_grant, invalid_client…: the credentials are wrong; every record would fail.
            return Err(self.error(
                ErrorClass::Auth,
                format!("the refresh token was refused (HTTP {}): {}", status.as_u16(), reason(&text)),
            ));
        }
        let parsed: TokenResponse = serde_json::from_str(&text)
            .map_err(|e| self.error(ErrorClass::Auth, format!("unexpected token response ({e})")))?;
        let token = AccessToken {
            access_token: parsed.access_token,
            expires_at: parsed.expires_in.map(|seconds| now_seconds() + seconds),
            instance_url: parsed.instance_url,
        };
        if parsed.refresh_token.is_some_and(|r| r != self.config.refresh_token) {
            tracing::warn!(
                token_url = %self.token_url,
                "the tool rotated the refresh token; update the project's refresh_token before the old one expires"
            );
        }
        if let Some(store) = &self.store {
            let text = serde_json::to_string(&token).map_err(|e| self.error(ErrorClass::Transient, e.to_string()))?;
            store.save(&self.credential, &text).await.map_err(|e| self.error(ErrorClass::Transient, e))?;
        }
        Ok(token)
    }

    fn error(&self, class: ErrorClass, message: impl std::fmt::Display) -> DestinationError {
        DestinationError::new(class, format!("OAuth token endpoint {}: {message}", self.token_url))
    }
}

/// POSTs a form-encoded token request and returns the status and body; a transport failure
/// comes back as its text, for the caller to classify as transient.
pub(crate) async fn post_token_form(
    client: &reqwest::Client,
    token_url: &str,
    body: String,
) -> Result<(reqwest::StatusCode, String), String> {
    let response = client
        .post(token_url)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("token request failed: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, text))
}

/// The most useful part of an OAuth error body (`error_description`, `message` or `error`).
fn reason(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).and_then(|v| v.as_str()).map(String::from);
    field("error_description")
        .or_else(|| field("message"))
        .or_else(|| field("error"))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::routing::post;
    use axum::Router;

    use super::*;

    #[derive(Default)]
    struct MemoryStore(std::sync::Mutex<HashMap<String, String>>);

    #[async_trait::async_trait]
    impl CredentialStore for MemoryStore {
        async fn load(&self, name: &str) -> Result<Option<String>, String> {
            Ok(self.0.lock().unwrap().get(name).cloned())
        }
        async fn save(&self, name: &str, value: &str) -> Result<(), String> {
            self.0.lock().unwrap().insert(name.into(), value.into());
            Ok(())
        }
    }

    /// A token endpoint that issues `token-N` for the right refresh token.
    async fn token_server() -> (String, Arc<AtomicU32>) {
        let issued = Arc::new(AtomicU32::new(0));
        let counter = issued.clone();
        let app = Router::new().route(
            "/oauth/v1/token",
            post(move |body: String| {
                let counter = counter.clone();
                async move {
                    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                    if form.get("refresh_token").map(String::as_str) != Some("good")
                        || form.get("grant_type").map(String::as_str) != Some("refresh_token")
                    {
                        return (
                            axum::http::StatusCode::BAD_REQUEST,
                            r#"{"status":"BAD_REFRESH_TOKEN","message":"missing or unknown refresh token"}"#
                                .to_string(),
                        );
                    }
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    (
                        axum::http::StatusCode::OK,
                        format!(r#"{{"access_token":"token-{n}","refresh_token":"good","expires_in":1800}}"#),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{address}/oauth/v1/token"), issued)
    }

    fn tokens(url: &str, refresh: &str, store: Option<Arc<dyn CredentialStore>>) -> OAuthTokens {
        let config =
            OAuthConfig { client_id: "id".into(), client_secret: "secret".into(), refresh_token: refresh.into() };
        OAuthTokens::new(url.into(), config, "hubspot/oauth".into(), store, reqwest::Client::new())
    }

    #[tokio::test]
    async fn tokens_are_refreshed_once_stored_and_reused_by_the_next_run() {
        let (url, issued) = token_server().await;
        let store: Arc<dyn CredentialStore> = Arc::new(MemoryStore::default());
        let first = tokens(&url, "good", Some(store.clone()));
        assert_eq!(first.token().await.unwrap().access_token, "token-1");
        assert_eq!(first.token().await.unwrap().access_token, "token-1", "kept in memory");
        let next_run = tokens(&url, "good", Some(store.clone()));
        assert_eq!(next_run.token().await.unwrap().access_token, "token-1", "reused from the store");
        assert_eq!(issued.load(Ordering::SeqCst), 1);

        // A 401 on token-1 renews it once, however many requests saw the 401.
        assert_eq!(next_run.refresh_after_rejection("token-1").await.unwrap().access_token, "token-2");
        assert_eq!(next_run.refresh_after_rejection("token-1").await.unwrap().access_token, "token-2");
        assert_eq!(issued.load(Ordering::SeqCst), 2);
        let stored = store.load("hubspot/oauth").await.unwrap().unwrap();
        assert!(stored.contains("token-2"), "{stored}");
    }

    #[tokio::test]
    async fn a_refused_refresh_token_is_an_auth_error_with_the_tools_message() {
        let (url, _) = token_server().await;
        let error = tokens(&url, "revoked", None).token().await.unwrap_err();
        assert_eq!(error.class, ErrorClass::Auth);
        assert!(error.message.contains("missing or unknown refresh token"), "{}", error.message);
        assert!(!error.message.contains("secret"), "{}", error.message);
    }

    #[tokio::test]
    async fn an_unreachable_token_endpoint_is_transient() {
        let error = tokens("http://127.0.0.1:9/oauth/v1/token", "good", None).token().await.unwrap_err();
        assert_eq!(error.class, ErrorClass::Transient);
    }
}
