//! A bounded queue into the detection thread that wakes it: the thread
//! sleeps in poll(2) on the kernel's ring buffer, and an eventfd in the same
//! poll set brings it back at once when an application finding arrives, so
//! a deciding log line is not left waiting for the next tick.

use std::{
    os::fd::RawFd,
    sync::{
        Arc,
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
};

use super::wake::EventFd;
use crate::error::Result;

/// The sending side; cheap to clone.
pub struct Sender<T> {
    tx: SyncSender<T>,
    wake: Arc<EventFd>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            wake: self.wake.clone(),
        }
    }
}

/// Why an item was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The detection thread is behind by the whole bound.
    Full,
    /// The detection thread has ended.
    Closed,
}

impl<T> Sender<T> {
    /// Queues without blocking: the caller counts what was refused.
    pub fn send(&self, item: T) -> Result<(), Refused> {
        match self.tx.try_send(item) {
            Ok(()) => {
                self.wake.signal();
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(Refused::Full),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Closed),
        }
    }
}

pub struct Inbox<T> {
    rx: Receiver<T>,
    wake: Arc<EventFd>,
}

impl<T> Inbox<T> {
    /// The descriptor to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.wake.fd()
    }

    /// Everything queued now.
    pub fn take(&self) -> Vec<T> {
        self.wake.clear();
        self.rx.try_iter().collect()
    }
}

pub fn inbox<T>(bound: usize) -> Result<(Sender<T>, Inbox<T>)> {
    let (tx, rx) = sync_channel(bound);
    let wake = Arc::new(EventFd::new()?);
    Ok((
        Sender {
            tx,
            wake: wake.clone(),
        },
        Inbox { rx, wake },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd, timeout_ms: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) == 1 }
    }

    #[test]
    fn a_send_wakes_the_poller_and_the_bound_holds() {
        let (tx, rx) = inbox::<u32>(2).unwrap();
        assert!(!readable(rx.fd(), 0));
        tx.send(1).unwrap();
        assert!(readable(rx.fd(), 1000));
        tx.send(2).unwrap();
        assert_eq!(tx.send(3), Err(Refused::Full));
        assert_eq!(rx.take(), [1, 2]);
        assert!(!readable(rx.fd(), 0), "taken: no longer readable");
        drop(rx);
        assert_eq!(tx.send(4), Err(Refused::Closed));
    }
}
