//! Waiting for a condition instead of sleeping a fixed time.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Polls `check` every 20 ms until it returns `Some`, for at most `timeout`;
/// fails naming `what` when time runs out.
pub fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
