//! The lab's storefront application, run behind nginx (which logs the
//! requests): a catalogue, product pages, a cart, logins against real
//! accounts, and a checkout whose fake payment processor declines bad cards.
//! It writes shop events (the public schema) to a file, as a shop's hook
//! would. `lab-shop --listen 127.0.0.1:8081 --events FILE`.

use std::{
    io::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use ensuresec_tests::shop::{GOOD_CARDS, accounts};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::json;

const PRODUCTS: u32 = 50;

struct Shop {
    events: Mutex<std::fs::File>,
    accounts: Vec<(String, String)>,
}

fn page(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("<!doctype html>{body}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html"),
    );
    r
}

impl Shop {
    fn event(&self, kind: &str, ip: &str, fields: serde_json::Value) {
        let mut e = json!({
            "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "type": kind,
            "ip": ip,
            "storefront": "lab-shop",
        });
        if let (Some(e), Some(f)) = (e.as_object_mut(), fields.as_object()) {
            e.extend(f.clone());
        }
        let mut file = self.events.lock().expect("events lock");
        let _ = writeln!(file, "{e}");
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        // nginx in front passes the client's address.
        let ip = request
            .headers()
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("127.0.0.1")
            .to_string();
        let (method, path) = (request.method().clone(), request.uri().path().to_string());
        let request_query = request.uri().query().map(String::from);
        let form: Vec<(String, String)> = if method == Method::POST {
            match Limited::new(request.into_body(), 64 * 1024).collect().await {
                Ok(body) => form_urlencoded::parse(&body.to_bytes())
                    .into_owned()
                    .collect(),
                Err(_) => return page(StatusCode::PAYLOAD_TOO_LARGE, "too large".into()),
            }
        } else {
            Vec::new()
        };
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        match (method, path.as_str()) {
            (Method::GET, "/") => {
                let links: String = (1..=PRODUCTS)
                    .map(|n| format!("<a href=/product/{n}>Product {n}</a> "))
                    .collect();
                page(StatusCode::OK, format!("<h1>Lab shop</h1><link rel=stylesheet href=/static/shop.css>{links}"))
            }
            (Method::GET, p) if p.starts_with("/product/") => {
                match p["/product/".len()..].parse::<u32>() {
                    Ok(n) if (1..=PRODUCTS).contains(&n) => page(
                        StatusCode::OK,
                        format!("<h1>Product {n}</h1><form method=post action=/cart><button>Add</button></form>"),
                    ),
                    _ => page(StatusCode::NOT_FOUND, "no such product".into()),
                }
            }
            (Method::GET, p) if p.starts_with("/static/") => page(StatusCode::OK, "/* asset */".into()),
            (_, "/cart") => page(StatusCode::OK, "<h1>Cart</h1><a href=/checkout>Checkout</a>".into()),
            (Method::GET, "/search") => {
                // Like real shops, the page says what was searched for (escaped).
                let q: String = request_query
                    .as_deref()
                    .map(|q| form_urlencoded::parse(q.as_bytes()).filter(|(k, _)| k == "q").map(|(_, v)| v.into_owned()).collect())
                    .unwrap_or_default();
                let escaped = q.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;");
                page(StatusCode::OK, format!("<h1>Results for {escaped}</h1>"))
            }
            (Method::GET, "/login") => page(
                StatusCode::OK,
                "<form method=post action=/login><input name=user><input name=pass type=password></form>".into(),
            ),
            (Method::POST, "/login") => {
                let (user, pass) = (field("user"), field("pass"));
                if self.accounts.iter().any(|(u, p)| *u == user && *p == pass) {
                    self.event("login_ok", &ip, json!({ "account": user }));
                    let mut r = page(StatusCode::FOUND, "welcome back".into());
                    r.headers_mut()
                        .insert(header::LOCATION, header::HeaderValue::from_static("/account"));
                    r
                } else {
                    self.event("login_failed", &ip, json!({ "account": user }));
                    page(StatusCode::UNAUTHORIZED, "Invalid login".into())
                }
            }
            (Method::GET, "/staff/") => page(StatusCode::OK, "<h1>Staff</h1>".into()),
            (Method::GET, "/account") => page(StatusCode::OK, "<h1>Your account</h1>".into()),
            (Method::GET, "/checkout") => page(StatusCode::OK, "<form method=post action=/checkout></form>".into()),
            (Method::POST, "/checkout") => {
                let card: String = field("card").chars().filter(char::is_ascii_digit).collect();
                let amount: f64 = field("amount").parse().unwrap_or(0.0);
                // The shop sends issuer BIN and last four, hashed.
                let fingerprint = (card.len() >= 10).then(|| {
                    let short = format!("{}{}", &card[..6], &card[card.len() - 4..]);
                    blake3::hash(short.as_bytes()).to_hex()[..32].to_string()
                });
                let fields = json!({ "card": fingerprint, "amount": amount, "currency": "EUR" });
                if GOOD_CARDS.contains(&card.as_str()) && amount > 0.0 {
                    self.event("payment_ok", &ip, fields);
                    page(StatusCode::OK, "<h1>Thank you for your order</h1>".into())
                } else {
                    let mut fields = fields;
                    fields["code"] = json!("card_declined");
                    self.event("payment_declined", &ip, fields);
                    page(StatusCode::PAYMENT_REQUIRED, "Your card was declined".into())
                }
            }
            _ => page(StatusCode::NOT_FOUND, "not found".into()),
        }
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    let listen: SocketAddr = arg("--listen").unwrap_or("127.0.0.1:8081".into()).parse()?;
    let events = arg("--events").ok_or_else(|| anyhow::anyhow!("--events FILE is required"))?;
    let shop = Arc::new(Shop {
        events: Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&events)?,
        ),
        accounts: accounts(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let shop = shop.clone();
            tokio::spawn(async move {
                let service = service_fn(move |r| {
                    let shop = shop.clone();
                    async move { Ok::<_, std::convert::Infallible>(shop.handle(r).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
