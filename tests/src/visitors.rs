//! Benign visitors with habits other than the lab shopper's: keep-alive
//! sessions, downloads at a modem's or a fibre line's pace, uptime monitors,
//! IPv6 browsers, pages pulling their assets in parallel, form posts. The
//! dataset runs them next to every scenario, so that the anomaly model learns
//! more of what normal looks like than one curl loop. Think times are random.

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Result;

use crate::lab::Lab;

/// A visitor's address and habit.
#[derive(Clone, Copy, Debug)]
pub struct Visitor {
    pub address: &'static str,
    pub habit: Habit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Habit {
    /// Four pages on one connection, then a pause.
    KeepAlive,
    /// The catalogue file at a random rate limit, or at full speed.
    Download,
    /// A HEAD request and a ping every two seconds.
    Monitor,
    /// Pages over IPv6, one connection each.
    Ipv6,
    /// A page and five assets fetched in parallel, like a browser.
    Assets,
    /// Form posts of a few kilobytes.
    Posts,
}

pub const VISITORS: &[Visitor] = &[
    Visitor {
        address: "10.77.3.10",
        habit: Habit::KeepAlive,
    },
    Visitor {
        address: "10.77.3.11",
        habit: Habit::Download,
    },
    Visitor {
        address: "10.77.3.12",
        habit: Habit::Monitor,
    },
    Visitor {
        address: "fd77::3:13",
        habit: Habit::Ipv6,
    },
    Visitor {
        address: "10.77.3.14",
        habit: Habit::Assets,
    },
    Visitor {
        address: "10.77.3.15",
        habit: Habit::Posts,
    },
];

pub struct Running {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// What a visitor's thread needs of the lab: its namespace and the shop.
#[derive(Clone)]
struct Site {
    ns: String,
    v4: String,
    v6: String,
}

impl Site {
    fn url(&self, habit: Habit, path: &str) -> String {
        if habit == Habit::Ipv6 {
            format!("http://[{}]{path}", self.v6)
        } else {
            format!("http://{}{path}", self.v4)
        }
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    /// One visit: the commands a habit runs, and the pause after them.
    fn visit(&self, v: &Visitor) -> (Vec<Command>, Duration) {
        let curl = || {
            let mut c = self.cmd("curl");
            c.args(["-s", "-o", "/dev/null", "--max-time", "10", "-g"])
                .args(["--interface", v.address]);
            c
        };
        let pages = ["/", "/product/1", "/cart", "/checkout"];
        let pause = |lo: f64, hi: f64| Duration::from_secs_f64(lo + fastrand::f64() * (hi - lo));
        match v.habit {
            Habit::KeepAlive => {
                let mut c = curl();
                for p in pages {
                    c.arg(self.url(v.habit, p));
                }
                (vec![c], pause(0.3, 3.0))
            }
            Habit::Download => {
                let mut c = curl();
                // Most downloads at a modest rate, one in three as fast as
                // the link goes (a client on a fast line pulls at line rate).
                if fastrand::u32(0..3) > 0 {
                    let rate = 100 + fastrand::u32(0..1900);
                    c.args(["--limit-rate", &format!("{rate}k")]);
                }
                c.arg(self.url(v.habit, "/static/catalog.bin"));
                (vec![c], pause(0.5, 2.0))
            }
            Habit::Monitor => {
                let mut head = curl();
                head.arg("-I").arg(self.url(v.habit, "/"));
                let mut ping = self.cmd("ping");
                ping.args(["-c", "1", "-W", "1", "-I", v.address])
                    .arg(&self.v4);
                (vec![head, ping], Duration::from_secs(2))
            }
            Habit::Ipv6 => {
                let mut c = curl();
                c.arg(self.url(v.habit, pages[fastrand::usize(0..pages.len())]));
                (vec![c], pause(0.1, 1.5))
            }
            Habit::Assets => {
                let mut c = curl();
                c.args(["--parallel", "--parallel-max", "6"])
                    .arg(self.url(v.habit, "/"));
                for p in ["/product/1", "/cart", "/checkout", "/", "/product/1"] {
                    c.args(["-o", "/dev/null"]).arg(self.url(v.habit, p));
                }
                (vec![c], pause(1.0, 4.0))
            }
            Habit::Posts => {
                let mut c = curl();
                let body = "x".repeat(500 + fastrand::usize(0..8000));
                c.args(["-X", "POST", "--data", &body])
                    .arg(self.url(v.habit, "/checkout"));
                (vec![c], pause(0.5, 2.5))
            }
        }
    }
}

/// Starts every visitor on the lab's shopper host, from addresses of its own.
pub fn start(lab: &Lab) -> Result<Vec<Running>> {
    for v in VISITORS {
        lab.shopper.add_address(v.address)?;
    }
    let site = Site {
        ns: lab.shopper.ns.name.clone(),
        v4: lab.storefront.v4.to_string(),
        v6: lab.storefront.v6.to_string(),
    };
    Ok(VISITORS
        .iter()
        .map(|v| {
            let (site, v) = (site.clone(), *v);
            repeat(move || site.visit(&v))
        })
        .collect())
}

/// Runs `visit`'s commands, then pauses as long as it says, over and over on
/// a thread of its own until stopped.
pub(crate) fn repeat(
    mut visit: impl FnMut() -> (Vec<Command>, Duration) + Send + 'static,
) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            let (cmds, pause) = visit();
            for mut c in cmds {
                let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
            let until = std::time::Instant::now() + pause;
            while std::time::Instant::now() < until && !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    Running { stop, handle }
}

/// Stops the visitors and waits for their current visit to end.
pub fn stop(running: Vec<Running>) {
    for r in &running {
        r.stop.store(true, Ordering::Relaxed);
    }
    for r in running {
        let _ = r.handle.join();
    }
}
