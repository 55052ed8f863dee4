//! What requests say about their senders, shipped as a versioned list:
//! probes for files no shop serves (`/.env`, `/.git/`), exploit paths,
//! traversal and injection markers; the user agents of attack tools; and
//! which paths are static assets (cheap to serve, so discounted by the
//! flood detector). Matching is case-insensitive on the percent-decoded
//! request, with one automaton for all patterns.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::Deserialize;

/// Bumped whenever the shipped lists change; reported in `status`.
pub const VERSION: &str = "2026.12.1";

/// How sure a hit makes us.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Counted; several make a scanner.
    Medium,
    /// No shopper sends it: one hit is enough.
    High,
}

/// One pattern, shipped or from `[[app.signatures]]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub id: String,
    /// A substring of the decoded, lower-cased path and query.
    pub pattern: String,
    pub confidence: Confidence,
}

const SHIPPED: &[(&str, &str, Confidence)] = {
    use Confidence::{High, Medium};
    &[
        // Secrets and repositories left in the web root.
        ("env-file", "/.env", High),
        ("git-repo", "/.git/", High),
        ("svn-repo", "/.svn/", High),
        ("hg-repo", "/.hg/", High),
        ("htpasswd", "/.htpasswd", High),
        ("aws-credentials", "/.aws/", High),
        ("ssh-keys", "/.ssh/", High),
        ("ds-store", "/.ds_store", Medium),
        ("config-backup", "config.php.bak", High),
        ("config-old", "config.php.old", High),
        ("sql-dump", ".sql", Medium),
        ("backup-archive", "/backup", Medium),
        ("archive-zip", ".zip", Medium),
        ("archive-tar", ".tar.gz", Medium),
        ("editor-swap", ".swp", Medium),
        // Traversal and local files.
        ("traversal", "../", High),
        ("traversal-win", "..\\", High),
        ("etc-passwd", "/etc/passwd", High),
        ("proc-environ", "/proc/self/", High),
        ("win-ini", "win.ini", High),
        ("php-wrapper", "php://", High),
        ("null-byte", "\0", Medium),
        // Injection markers.
        ("sqli-union", "union select", High),
        ("sqli-union-all", "union all select", High),
        ("sqli-schema", "information_schema", High),
        ("sqli-sleep", "sleep(", Medium),
        ("sqli-benchmark", "benchmark(", Medium),
        ("sqli-waitfor", "waitfor delay", High),
        ("sqli-tautology", "' or '1'='1", High),
        ("sqli-tautology-num", " or 1=1", High),
        ("sqli-comment", "'--", Medium),
        // Unbalanced quotes of both kinds side by side: how injection probes
        // test a parameter.
        ("sqli-quote-probe", "'\"", Medium),
        ("sqli-quote-probe-2", "\"'", Medium),
        ("sqli-concat", "concat(0x", High),
        ("xss-script", "<script", High),
        ("xss-handler", "onerror=", Medium),
        ("xss-js-uri", "javascript:", Medium),
        ("ssti", "{{7*7}}", High),
        ("log4shell", "${jndi:", High),
        ("shellshock", "() {", High),
        ("cmd-injection", ";cat /", High),
        ("cmd-wget", "wget http", High),
        // Exploit and admin-tool paths.
        ("phpunit-rce", "/phpunit/", High),
        ("cgi-bin", "/cgi-bin/", Medium),
        ("phpmyadmin", "/phpmyadmin", Medium),
        ("adminer", "/adminer", Medium),
        ("wp-login", "/wp-login.php", Medium),
        ("xmlrpc", "/xmlrpc.php", Medium),
        ("boaform", "/boaform/", High),
        ("hnap", "/hnap1", High),
        ("actuator", "/actuator/", Medium),
        ("server-status", "/server-status", Medium),
        ("solr-admin", "/solr/admin", Medium),
        ("shell-php", "/shell.php", High),
        ("eval-stdin", "eval-stdin.php", High),
    ]
};

/// User agents of attack tools (a hit bans), and of generic HTTP libraries
/// (counted only: monitoring, integrations and shops' own jobs use them).
const ATTACK_TOOLS: &[&str] = &[
    "sqlmap",
    "nikto",
    "nuclei",
    "hydra",
    "wfuzz",
    "fuzz faster u fool",
    "ffuf",
    "gobuster",
    "dirbuster",
    "feroxbuster",
    "zgrab",
    "masscan",
    "wapiti",
    "nmap scripting engine",
    "acunetix",
    "netsparker",
    "w3af",
    "commix",
    "whatweb",
    "openvas",
    "jaeles",
    "xsstrike",
    "havij",
    "zmeu",
];

const GENERIC_CLIENTS: &[&str] = &[
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww-perl",
    "apache-httpclient",
    "axios",
    "node-fetch",
    "guzzlehttp",
    "ruby",
];

const ASSET_EXTENSIONS: &[&str] = &[
    "css", "js", "mjs", "map", "png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "woff",
    "woff2", "ttf", "eot", "otf", "mp4", "webm",
];

/// A request's verdict from the lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hits {
    /// The strongest signature the request matched, if any.
    pub signature: Option<(String, Confidence)>,
    pub attack_tool: Option<&'static str>,
    pub generic_client: Option<&'static str>,
}

/// User agents whose verdicts are kept, and the longest kept.
const AGENTS_KEPT: usize = 4096;
const AGENT_KEPT_LEN: usize = 256;

/// What the lists say of one user agent.
#[derive(Clone, Debug, Default)]
struct AgentHits {
    /// Index of the strongest signature in it.
    signature: Option<usize>,
    attack_tool: Option<&'static str>,
    generic_client: Option<&'static str>,
}

pub struct Signatures {
    ids: Vec<(String, Confidence)>,
    patterns: AhoCorasick,
    tools: AhoCorasick,
    generic: AhoCorasick,
    agents: std::collections::HashMap<Box<str>, AgentHits>,
}

fn automaton<I, P>(patterns: I) -> AhoCorasick
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(patterns)
        .expect("the patterns are literal strings")
}

/// Percent-decodes (twice, for double encoding) and turns `+` into a space.
fn decode(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return text.into();
    }
    let once = |t: &str| -> String {
        let b = t.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(v) => {
                            out.push(v);
                            i += 3;
                        }
                        None => {
                            out.push(b'%');
                            i += 1;
                        }
                    }
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    once(&once(text)).into()
}

impl Signatures {
    /// The shipped list without the `disabled` ids, plus `extra`.
    pub fn new(extra: &[Signature], disabled: &[String]) -> Self {
        let mut list: Vec<(String, String, Confidence)> = SHIPPED
            .iter()
            .filter(|(id, _, _)| !disabled.iter().any(|d| d == id))
            .map(|(id, p, c)| (id.to_string(), p.to_string(), *c))
            .collect();
        list.extend(
            extra
                .iter()
                .map(|s| (s.id.clone(), s.pattern.to_lowercase(), s.confidence)),
        );
        Self {
            patterns: automaton(list.iter().map(|(_, p, _)| p)),
            ids: list.into_iter().map(|(id, _, c)| (id, c)).collect(),
            tools: automaton(ATTACK_TOOLS),
            generic: automaton(GENERIC_CLIENTS),
            agents: Default::default(),
        }
    }

    /// Ids of the shipped signatures, to check `disabled_signatures`.
    pub fn shipped_ids() -> impl Iterator<Item = &'static str> {
        SHIPPED.iter().map(|(id, _, _)| *id)
    }

    /// What the lists say of a request. The user agent's verdict is kept
    /// for the next requests with the same agent (most traffic repeats a
    /// few agents), up to `AGENTS_KEPT` of them.
    pub fn check(&mut self, target: &str, user_agent: &str) -> Hits {
        let agent = match self.agents.get(user_agent) {
            Some(a) => a.clone(),
            None => {
                let a = self.check_agent(user_agent);
                // Long agents are not kept: the cache stays small.
                if user_agent.len() <= AGENT_KEPT_LEN {
                    if self.agents.len() >= AGENTS_KEPT {
                        self.agents.clear();
                    }
                    self.agents.insert(user_agent.into(), a.clone());
                }
                a
            }
        };
        let decoded = decode(target);
        let in_target = self
            .patterns
            .find_iter(decoded.as_ref())
            .map(|m| m.pattern().as_usize())
            .max_by_key(|i| self.ids[*i].1);
        let signature = [in_target, agent.signature]
            .into_iter()
            .flatten()
            .max_by_key(|i| self.ids[*i].1)
            .map(|i| self.ids[i].clone());
        Hits {
            signature,
            attack_tool: agent.attack_tool,
            generic_client: agent.generic_client,
        }
    }

    fn check_agent(&self, user_agent: &str) -> AgentHits {
        // Exploits ride in the user agent too (Shellshock, Log4Shell).
        AgentHits {
            signature: self
                .patterns
                .find_iter(user_agent)
                .map(|m| m.pattern().as_usize())
                .max_by_key(|i| self.ids[*i].1),
            attack_tool: self
                .tools
                .find(user_agent)
                .map(|m| ATTACK_TOOLS[m.pattern().as_usize()]),
            generic_client: self
                .generic
                .find(user_agent)
                .map(|m| GENERIC_CLIENTS[m.pattern().as_usize()]),
        }
    }
}

/// Whether a path names a static asset (by its extension).
pub fn is_asset(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    last.rsplit_once('.')
        .is_some_and(|(_, ext)| ASSET_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(ext)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(s: &mut Signatures, target: &str) -> Option<(String, Confidence)> {
        s.check(target, "Mozilla/5.0").signature
    }

    #[test]
    fn probes_and_injections_are_seen_through_encoding() {
        let mut s = Signatures::new(&[], &[]);
        assert_eq!(sig(&mut s, "/.env").unwrap().0, "env-file");
        assert_eq!(sig(&mut s, "/.GIT/config").unwrap().1, Confidence::High);
        assert_eq!(
            sig(&mut s, "/p?id=1%20UNION%20SELECT%201,2").unwrap().0,
            "sqli-union"
        );
        assert_eq!(
            sig(&mut s, "/p?id=1+union+select+1").unwrap().0,
            "sqli-union"
        );
        assert_eq!(
            sig(&mut s, "/x?f=%252e%252e%252fetc").unwrap().0,
            "traversal",
            "double-encoded"
        );
        assert_eq!(
            sig(&mut s, "/q?s=%3Cscript%3Ealert(1)").unwrap().0,
            "xss-script"
        );
        assert_eq!(sig(&mut s, "/db.sql").unwrap().1, Confidence::Medium);
        assert_eq!(
            sig(&mut s, "/x?%zz%"),
            None,
            "bad escapes are left as they are"
        );
        for benign in [
            "/",
            "/product/blue-shirt",
            "/search?q=select+shoes",
            "/cart?add=12&qty=2",
        ] {
            assert_eq!(sig(&mut s, benign), None, "{benign}");
        }
    }

    #[test]
    fn shops_can_disable_and_add_signatures() {
        let extra = Signature {
            id: "old-admin".into(),
            pattern: "/Legacy-Admin".into(),
            confidence: Confidence::High,
        };
        let mut s = Signatures::new(&[extra], &["wp-login".into()]);
        assert_eq!(sig(&mut s, "/wp-login.php"), None);
        assert_eq!(sig(&mut s, "/legacy-admin/x").unwrap().0, "old-admin");
    }

    #[test]
    fn attack_tools_ban_and_libraries_count() {
        let mut s = Signatures::new(&[], &[]);
        for (agent, tool) in [
            ("Mozilla/5.0 (Hydra)", "hydra"),
            ("gobuster/3.5.0", "gobuster"),
            ("Fuzz Faster U Fool v1.1.0", "fuzz faster u fool"),
            ("sqlmap/1.7.2#stable (https://sqlmap.org)", "sqlmap"),
            ("Wfuzz/3.1.0", "wfuzz"),
        ] {
            assert_eq!(s.check("/", agent).attack_tool, Some(tool), "{agent}");
        }
        let curl = s.check("/", "curl/7.88.1");
        assert_eq!(
            (curl.attack_tool, curl.generic_client),
            (None, Some("curl/"))
        );
        assert_eq!(
            s.check("/", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120")
                .attack_tool,
            None
        );
    }

    #[test]
    fn assets_are_known_by_extension() {
        assert!(is_asset("/static/app.min.js"));
        assert!(is_asset("/img/Logo.PNG"));
        assert!(!is_asset("/product/12"));
        assert!(!is_asset("/v1.2/checkout"));
    }
}
