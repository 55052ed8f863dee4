//! Notices with real receivers: a webhook receiver that checks signatures
//! (the provider's channel and a storefront owner's), Debian's Alertmanager
//! and an SMTP server with STARTTLS. Each incident's opening and resolve
//! reach each channel that is owed them once, another tenant's channel
//! nothing; a receiver down, then the agent killed with notices queued: all
//! delivered after the restart, once.

use std::{collections::HashMap, time::Duration};

use anyhow::{Context as _, Result};
use ensuresec_tests::{
    lab::Lab,
    receivers::{Alertmanager, Smtp, Webhook},
    wait::eventually,
};
use serde_json::Value;

const PROTECT: &str = "[detect]\nspoof_safe = false\n\n[[protect]]\nprefix = \"10.77.0.0/16\"\n\n[incidents]\nquiet = \"2s\"\n";

fn storefronts(lab: &Lab) -> String {
    format!(
        "[[storefront]]\nname = \"corner-shop\"\naddresses = [\"{}\"]\n\n[[storefront]]\nname = \"other-shop\"\naddresses = [\"10.77.0.200\"]\n",
        lab.storefront.v4
    )
}

fn webhook_channel(name: &str, hook: &Webhook, path: &str, storefronts: &str) -> String {
    format!(
        "[[notices.channel]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"{}/{path}\"\nsecret_file = \"{}\"\nstorefronts = [{storefronts}]\n",
        hook.url,
        hook.secret_file.display()
    )
}

/// The events each path got, in order, and how often each key came.
fn by_path(received: &[Value]) -> (HashMap<String, Vec<String>>, HashMap<String, usize>) {
    let mut events: HashMap<String, Vec<String>> = HashMap::new();
    let mut keys: HashMap<String, usize> = HashMap::new();
    for r in received {
        let path = r["path"].as_str().unwrap_or_default().to_string();
        let event = r["body"]["event"].as_str().unwrap_or_default();
        let id = &r["body"]["incident"]["id"];
        events
            .entry(path)
            .or_default()
            .push(format!("{event}#{id}"));
        // Slack's format has no key: those are the signed webhooks'.
        if let Some(key) = r["key"].as_str() {
            *keys.entry(key.into()).or_default() += 1;
        }
    }
    (events, keys)
}

fn flood_until_banned(lab: &Lab) -> Result<()> {
    let attacker = lab.attacker.v4.to_string();
    lab.syn_flood(3000)?;
    lab.wait_decision(&attacker, Duration::from_secs(5))?
        .context("the flood banned")?;
    Ok(())
}

#[test]
fn webhooks_are_signed_routed_per_tenant_and_delivered_once_through_outages_and_restarts()
-> Result<()> {
    let lab = Lab::new()?;
    let hook = Webhook::start(&lab, 9971)?;
    let chat = format!(
        "[[notices.channel]]\nname = \"corner-chat\"\nkind = \"slack\"\nurl = \"{}/slack\"\nstorefronts = [\"corner-shop\"]\n",
        hook.url
    );
    let config = lab.agent_config(&format!(
        "{PROTECT}\n{}\n{}\n{}\n{}\n{chat}",
        storefronts(&lab),
        webhook_channel("provider", &hook, "provider", ""),
        webhook_channel("corner-owner", &hook, "corner", "\"corner-shop\""),
        webhook_channel("other-owner", &hook, "other", "\"other-shop\""),
    ))?;
    let mut agent = lab.start_agent(&config)?;
    flood_until_banned(&lab)?;
    let first = eventually(Duration::from_secs(20), "open and resolve, twice", || {
        let got = hook.received()?;
        let (events, _) = by_path(&got);
        let done = ["/provider", "/corner"].iter().all(|p| {
            events
                .get(*p)
                .is_some_and(|e| e.iter().any(|e| e.starts_with("resolved")))
        });
        Ok(done.then_some(got))
    })?;
    assert!(
        first.iter().all(|r| r["valid"] == true),
        "signatures: {first:?}"
    );
    let (events, keys) = by_path(&first);
    assert_eq!(events["/provider"], ["open#1", "resolved#1"], "{events:?}");
    assert_eq!(events["/corner"], ["open#1", "resolved#1"]);
    assert!(
        !events.contains_key("/other"),
        "another tenant's incident: {events:?}"
    );
    assert!(keys.values().all(|n| *n == 1), "{keys:?}");
    let open = &first
        .iter()
        .find(|r| r["path"] == "/provider")
        .context("the provider's")?["body"];
    assert_eq!(open["incident"]["storefront"], "corner-shop");
    let text = open["text"].as_str().unwrap();
    assert!(
        text.contains("What happened")
            && text.contains("What ensuresec did")
            && text.contains("What to do"),
        "{text}"
    );
    assert!(text.contains(&lab.attacker.v4.to_string()), "{text}");

    // The receiver goes down: the next incident's notices wait and are
    // tried again...
    hook.set_down(true)?;
    lab.ensuresec(&["decisions", "rm", &lab.attacker.v4.to_string()])?;
    flood_until_banned(&lab)?;
    eventually(Duration::from_secs(10), "failed tries", || {
        let list: Vec<Value> =
            serde_json::from_str(&lab.ensuresec(&["notices", "list", "-o", "json"])?)?;
        Ok(list
            .iter()
            .any(|n| {
                n["incident"] == 2 && n["state"] == "pending" && n["attempts"].as_u64() >= Some(2)
            })
            .then_some(()))
    })?;
    let list = lab.ensuresec(&["notices", "list"])?;
    assert!(list.contains("503"), "{list}");
    // ...and the agent is killed with them queued.
    agent.stop(libc::SIGKILL)?;
    hook.set_down(false)?;
    let _agent = lab.start_agent(&config)?;
    let all = eventually(Duration::from_secs(30), "the waiting notices", || {
        let got = hook.received()?;
        let (events, _) = by_path(&got);
        Ok(["/provider", "/corner"]
            .iter()
            .all(|p| {
                events
                    .get(*p)
                    .is_some_and(|e| e.contains(&"resolved#2".to_string()))
            })
            .then_some(got))
    })?;
    let (events, keys) = by_path(&all);
    assert_eq!(
        events["/provider"],
        ["open#1", "resolved#1", "open#2", "resolved#2"],
        "{events:?}"
    );
    assert_eq!(
        events["/corner"],
        ["open#1", "resolved#1", "open#2", "resolved#2"]
    );
    assert!(keys.values().all(|n| *n == 1), "each once: {keys:?}");
    assert!(!events.contains_key("/other"));
    // Once nothing waits (the chat's notices may come a moment later),
    // every delivery the receiver saw is in the journal.
    eventually(Duration::from_secs(10), "nothing pending", || {
        let list: Vec<Value> =
            serde_json::from_str(&lab.ensuresec(&["notices", "list", "-o", "json"])?)?;
        Ok(list.iter().all(|n| n["state"] == "delivered").then_some(()))
    })?;
    let journal: Vec<Value> = serde_json::from_str(&lab.ensuresec(&["journal", "-o", "json"])?)?;
    let delivered = journal
        .iter()
        .filter(|e| e["kind"] == "notice_delivered")
        .count();
    assert_eq!(delivered, hook.received()?.len(), "each delivery journaled");
    let metrics = lab.metrics()?;
    assert!(
        metrics.contains("ensuresec_notices_sent_total{channel=\"provider\"}"),
        "{metrics}"
    );
    Ok(())
}

#[test]
fn alertmanager_fires_and_resolves_and_the_owner_gets_an_email() -> Result<()> {
    let lab = Lab::new()?;
    let am = Alertmanager::start(&lab, 9972)?;
    let smtp = Smtp::start(&lab, 9973)?;
    // Quiet long enough for the alert to be seen firing before it resolves.
    let protect = PROTECT.replace("quiet = \"2s\"", "quiet = \"8s\"");
    let config = lab.agent_config(&format!(
        "{protect}\n[incidents]\n\n{}\n[[notices.channel]]\nname = \"alerts\"\nkind = \"alertmanager\"\nurl = \"{}\"\n\n[[notices.channel]]\nname = \"owner-mail\"\nkind = \"email\"\nstorefronts = [\"corner-shop\"]\nsmtp = \"localhost:{}\"\nca_file = \"{}\"\nfrom = \"ensuresec@lab.test\"\nto = [\"owner@corner-shop.test\"]\n",
        storefronts(&lab),
        am.url,
        smtp.port,
        smtp.ca_file.display()
    ).replacen("\n[incidents]\n\n", "\n", 1))?;
    let _agent = lab.start_agent(&config)?;
    flood_until_banned(&lab)?;
    // Firing while the incident is open: found by its labels...
    let alert = eventually(Duration::from_secs(10), "the alert firing", || {
        Ok(am
            .alerts(true)?
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "EnsuresecIncident"))
    });
    let alert = alert?;
    assert_eq!(alert["labels"]["storefront"], "corner-shop", "{alert}");
    assert_eq!(alert["labels"]["kind"], "flood");
    assert_eq!(alert["labels"]["severity"], "major");
    assert_eq!(alert["status"]["state"], "active");
    // ...and resolved with it.
    eventually(Duration::from_secs(30), "the alert resolved", || {
        Ok(am
            .alerts(true)?
            .iter()
            .all(|a| a["labels"]["alertname"] != "EnsuresecIncident")
            .then_some(()))
    })?;
    let mails = eventually(Duration::from_secs(30), "two emails", || {
        let m = smtp.messages()?;
        Ok((m.len() >= 2).then_some(m))
    })
    .with_context(|| lab.ensuresec(&["notices", "list"]).unwrap_or_default())?;
    assert_eq!(mails.len(), 2, "open and resolve, once each");
    let all = mails.join("\n");
    assert!(all.contains("To: owner@corner-shop.test"), "{all}");
    assert!(
        all.contains("Subject: [ensuresec] major: a traffic flood at corner-shop"),
        "{all}"
    );
    assert!(all.contains("is over"), "{all}");
    assert!(all.contains("Message-ID: <"), "{all}");
    Ok(())
}
