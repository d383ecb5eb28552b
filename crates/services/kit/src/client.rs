//! [`Downstream`]: a JSON client for one other service, behind the palisade client stack configured by
//! [`DownstreamConfig`] (deadline, retry, breaker, trace, metrics, per-attempt timeout).

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use palisade::retry::RetryBody;
use palisade::stack::ClientStackService;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use crate::BoxError;
use crate::config::DownstreamConfig;

type Http = ClientStackService<Client<HttpConnector, RetryBody<Full<Bytes>>>>;

/// Why a downstream call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The downstream answered with a non-2xx status (body kept for diagnosis).
    Status(StatusCode, Bytes),
    /// Transport error, timeout, deadline or open circuit (see [`palisade::problem::problem_for_error`]).
    Call(BoxError),
    /// The body was not the expected JSON.
    Decode(serde_json::Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(status, _) => write!(f, "downstream answered {status}"),
            Self::Call(err) => write!(f, "downstream call failed: {err}"),
            Self::Decode(err) => write!(f, "downstream sent unexpected JSON: {err}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A client for one downstream service; cheap to clone (the breaker and budgets are shared).
#[derive(Clone, Debug)]
pub struct Downstream {
    base: String,
    http: Http,
}

impl Downstream {
    /// A client for `peer` at `config.url`.
    pub fn new(peer: &str, config: &DownstreamConfig) -> Result<Self, palisade::InvalidConfig> {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let http = tower::Layer::layer(&config.client_stack(peer)?, client);
        Ok(Self { base: config.url.trim_end_matches('/').to_owned(), http })
    }

    /// `GET base+path`, decoding a 2xx JSON body.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::GET, path, None::<&()>, &[]).await
    }

    /// Sends `method base+path` with an optional JSON body and extra headers (`Authorization`,
    /// `Idempotency-Key`), decoding a 2xx JSON body.
    pub async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let body = match body {
            Some(body) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(serde_json::to_vec(body).map_err(ClientError::Decode)?))
            }
            None => Full::default(),
        };
        let req = req.body(body).map_err(|e| ClientError::Call(e.into()))?;
        let res = self.http.clone().oneshot(req).await.map_err(ClientError::Call)?;
        let status = res.status();
        let bytes = res.into_body().collect().await.map_err(|e| ClientError::Call(e.into()))?.to_bytes();
        if !status.is_success() {
            return Err(ClientError::Status(status, bytes));
        }
        serde_json::from_slice(&bytes).map_err(ClientError::Decode)
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use http::StatusCode;

    use super::{ClientError, Downstream};
    use crate::config::DownstreamConfig;

    #[tokio::test]
    async fn calls_a_local_server_through_the_stack() {
        let app = Router::new()
            .route("/v1/ping", get(|| async { axum::Json(serde_json::json!({ "pong": true })) }))
            .route("/v1/missing", get(|| async { StatusCode::NOT_FOUND }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = DownstreamConfig { url: format!("http://{addr}"), ..DownstreamConfig::default() };
        let client = Downstream::new("ping", &config).unwrap();
        let body: serde_json::Value = client.get_json("/v1/ping").await.unwrap();
        assert_eq!(body["pong"], true);
        match client.get_json::<serde_json::Value>("/v1/missing").await {
            Err(ClientError::Status(status, _)) => assert_eq!(status, StatusCode::NOT_FOUND),
            other => panic!("expected a 404, got {other:?}"),
        }
    }
}
