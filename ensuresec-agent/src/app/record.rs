//! What the parsers make of a line: a request from an access log, an
//! authentication or rate-limit line from nginx's error log, or a shop event.
//! Fields borrow from the line where they can, so that a parsed line costs no
//! allocation on the common path.

use std::{borrow::Cow, net::IpAddr};

/// One request from an access log.
#[derive(Clone, Debug, PartialEq)]
pub struct Request<'a> {
    /// Unix seconds from the log's own timestamp, when it has one.
    pub time: Option<f64>,
    /// The TCP peer that sent the request (`$remote_addr`).
    pub peer: IpAddr,
    /// The raw `X-Forwarded-For` header, when the format logs it.
    pub forwarded_for: Option<Cow<'a, str>>,
    /// The virtual host (`Host` header or server name), when logged.
    pub host: Option<Cow<'a, str>>,
    pub method: Cow<'a, str>,
    /// Path and query as sent ("/search?q=x").
    pub target: Cow<'a, str>,
    pub status: u16,
    pub user_agent: Cow<'a, str>,
}

impl Request<'_> {
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// What a line of nginx's error log says about a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind<'a> {
    /// Basic auth: `user "x" was not found in "/etc/htpasswd"`.
    UserNotFound { user: &'a str },
    /// Basic auth: `user "x": password mismatch`.
    PasswordMismatch { user: &'a str },
    /// `limit_req`: `limiting requests, excess: 1.5 by zone "one"`.
    LimitingRequests,
}

/// One line of nginx's error log that concerns a client.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorLine<'a> {
    pub time: Option<f64>,
    pub kind: ErrorKind<'a>,
    pub client: IpAddr,
    pub host: Option<&'a str>,
}

/// The kinds of shop events (the public schema's `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    LoginFailed,
    LoginOk,
    PaymentDeclined,
    PaymentOk,
    Signup,
    PasswordReset,
}

/// One shop event, as the shop wrote it. The account and card are what the
/// shop sent; the pipeline hashes them at once and never keeps them.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct ShopEvent {
    #[serde(deserialize_with = "rfc3339")]
    pub time: time::OffsetDateTime,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub ip: IpAddr,
    #[serde(default)]
    pub storefront: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub card: Option<String>,
    #[serde(default)]
    pub amount: Option<f64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

/// A parsed line of any format.
#[derive(Clone, Debug, PartialEq)]
pub enum Record<'a> {
    Request(Request<'a>),
    Error(ErrorLine<'a>),
    Event(ShopEvent),
    /// A line the format knows and that concerns no client (an error-log
    /// line about something else).
    Other,
}

fn rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<time::OffsetDateTime, D::Error> {
    use serde::{Deserialize, de::Error};
    let text = String::deserialize(d)?;
    time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).map_err(
        |_| {
            let shown: String = text.chars().take(40).collect();
            D::Error::custom(format!("time `{shown}` is not an RFC 3339 timestamp"))
        },
    )
}
