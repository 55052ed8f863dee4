//! `POST /v1/events`: shop events from the shop application, one JSON
//! object per line, with `Authorization: Bearer TOKEN`. A batch is taken
//! whole or not at all: one bad line refuses it (400, naming the line), so a
//! shop that retries never sends an event twice.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};

use super::{
    metrics::AppMetrics, parse::parse_event, pipeline::Pipeline, settings::EventsListener,
};
use crate::http::{reply, serve};

pub const PATH: &str = "/v1/events";

struct Context {
    token: String,
    max_body: usize,
    pipeline: Arc<Mutex<Pipeline>>,
    metrics: AppMetrics,
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", format!("{body}\n"))
}

fn error(status: StatusCode, why: impl Into<String>) -> Response<Full<Bytes>> {
    json(status, serde_json::json!({ "error": why.into() }))
}

async fn handle(ctx: Arc<Context>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let response = answer(&ctx, request).await;
    ctx.metrics
        .event_posts
        .with_label_values(&[response.status().as_str()])
        .inc();
    response
}

async fn answer(ctx: &Arc<Context>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != PATH {
        return error(StatusCode::NOT_FOUND, format!("only {PATH} is served here"));
    }
    if request.method() != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST shop events, one JSON object per line",
        );
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|t| same(t.trim().as_bytes(), ctx.token.as_bytes())) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer TOKEN` is required",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let too_big = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} bytes", ctx.max_body),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > ctx.max_body) {
        return too_big();
    }
    let body = match Limited::new(request.into_body(), ctx.max_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_big(),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_event(line) {
            Ok(e) => events.push(e),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("line {}: {e}; nothing was accepted", n + 1),
                );
            }
        }
    }
    if events.is_empty() {
        return error(StatusCode::BAD_REQUEST, "no events in the body");
    }
    let count = events.len();
    let pipeline = ctx.pipeline.clone();
    let fed = tokio::task::spawn_blocking(move || {
        let mut p = pipeline.lock().expect("pipeline lock");
        events
            .into_iter()
            .map(|e| p.event(e))
            .filter(|r| matches!(r, super::pipeline::LineResult::Unmapped))
            .count()
    })
    .await;
    match fed {
        Ok(unmapped) => json(
            StatusCode::ACCEPTED,
            serde_json::json!({ "accepted": count, "unmapped": unmapped }),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the pipeline failed: {e}"),
        ),
    }
}

/// Binds the listener (an error names the address), then serves it until
/// the task is dropped.
pub async fn bind(config: &EventsListener) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context as _;
    tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the events listener to {}", config.listen))
}

pub async fn serve_events(
    listener: tokio::net::TcpListener,
    config: EventsListener,
    pipeline: Arc<Mutex<Pipeline>>,
    metrics: AppMetrics,
) {
    tracing::info!(listen = %config.listen, "serving shop events at {PATH}");
    let ctx = Arc::new(Context {
        token: config.token,
        max_body: config.max_body,
        pipeline,
        metrics,
    });
    serve(listener, "events", move |request| {
        handle(ctx.clone(), request)
    })
    .await;
}
