//! The OAuth 2.0 JWT bearer flow: an RS256-signed assertion exchanged for an access token.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Value as Json};
use sluice_core::{DestinationError, ErrorClass};
use tokio::sync::Mutex;

use crate::http::auth::AccessToken;

/// Assertions are valid this many seconds (Salesforce allows at most 3 minutes).
const ASSERTION_LIFETIME: u64 = 170;

/// Obtains access tokens with signed JWT assertions; no refresh token is involved.
pub(crate) struct JwtTokens {
    token_url: String,
    /// The login URL, the assertion's audience.
    audience: String,
    client_id: String,
    username: String,
    key: RsaKeyPair,
    client: reqwest::Client,
    current: Mutex<Option<AccessToken>>,
}

/// Reads a PEM private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
fn parse_key(pem: &str) -> Result<RsaKeyPair, String> {
    let pem = pem.trim().replace("\\n", "\n");
    let pkcs1 = pem.contains("BEGIN RSA PRIVATE KEY");
    if !pkcs1 && !pem.contains("BEGIN PRIVATE KEY") {
        return Err(
            "expected a PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)".into()
        );
    }
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("the PEM private key is not valid base64 ({e})"))?;
    let key = if pkcs1 { RsaKeyPair::from_der(&der) } else { RsaKeyPair::from_pkcs8(&der) };
    key.map_err(|e| format!("the private key is not a usable RSA key ({e}); use a 2048-bit or larger RSA key"))
}

/// `aud` for a login URL: production or sandbox login for My Domain URLs, else the URL itself
/// (`https://login.salesforce.com`, `https://test.salesforce.com`, a test server).
pub(crate) fn default_audience(endpoint: &reqwest::Url) -> String {
    let host = endpoint.host_str().unwrap_or_default();
    if host.ends_with(".my.salesforce.com") {
        if host.contains(".sandbox.") {
            "https://test.salesforce.com".into()
        } else {
            "https://login.salesforce.com".into()
        }
    } else {
        endpoint.as_str().trim_end_matches('/').to_string()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl JwtTokens {
    pub(crate) fn new(
        token_url: String,
        audience: String,
        client_id: String,
        username: String,
        private_key: &str,
        client: reqwest::Client,
    ) -> Result<JwtTokens, String> {
        let key = parse_key(private_key)?;
        Ok(JwtTokens { token_url, audience, client_id, username, key, client, current: Mutex::new(None) })
    }

    /// The current access token, or a new one.
    pub(crate) async fn token(&self) -> Result<AccessToken, DestinationError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref() {
            return Ok(token.clone());
        }
        let token = self.request().await?;
        *current = Some(token.clone());
        Ok(token)
    }

    /// Called after a 401: gets a new token unless another request already did.
    pub(crate) async fn refresh_after_rejection(&self, rejected: &str) -> Result<AccessToken, DestinationError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| t.access_token != rejected) {
            return Ok(token.clone());
        }
        let token = self.request().await?;
        *current = Some(token.clone());
        Ok(token)
    }

    fn assertion(&self) -> Result<String, DestinationError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let header = json!({ "alg": "RS256", "typ": "JWT" });
        let claims = json!({
            "iss": self.client_id,
            "sub": self.username,
            "aud": self.audience,
            "exp": now + ASSERTION_LIFETIME,
        });
        let signed = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signed.as_bytes(), &mut signature)
            .map_err(|_| self.error(ErrorClass::Config, "cannot sign the JWT assertion with the private key"))?;
        Ok(format!("{signed}.{}", b64(&signature)))
    }

    async fn request(&self) -> Result<AccessToken, DestinationError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &self.assertion()?)
            .finish();
        let (status, text) = crate::http::auth::post_token_form(&self.client, &self.token_url, body)
            .await
            .map_err(|e| self.error(ErrorClass::Transient, e))?;
        let parsed: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        let field = |name: &str| parsed.get(name).and_then(Json::as_str).map(str::to_string);
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(self.error(ErrorClass::Transient, format!("HTTP {}", status.as_u16())));
        }
        if !status.is_success() {
            let reason = field("error_description").or_else(|| field("error")).unwrap_or_else(|| text.clone());
            return Err(self.error(
                ErrorClass::Auth,
                format!(
                    "the JWT assertion was refused (HTTP {}): {reason}; check client_id, username, the certificate and that the user is pre-authorized",
                    status.as_u16()
                ),
            ));
        }
        let access_token =
            field("access_token").ok_or_else(|| self.error(ErrorClass::Auth, "unexpected token response"))?;
        Ok(AccessToken { access_token, expires_at: None, instance_url: field("instance_url") })
    }

    fn error(&self, class: ErrorClass, message: impl std::fmt::Display) -> DestinationError {
        DestinationError::new(class, format!("OAuth token endpoint {} (JWT bearer): {message}", self.token_url))
    }
}
