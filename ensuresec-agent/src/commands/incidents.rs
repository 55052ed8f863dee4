//! `ensuresec incidents`: the incidents in the journal (the agent need not
//! run), one in full, and the accounts it affected for the shop to notify.

use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::{
    app::pseudonym::Hasher,
    cli::{AffectedArgs, AffectedFormat, IncidentsCommand, IncidentsListArgs, OutputFormat},
    clock,
    journal::{Journal, incidents::IncidentFilter},
    output,
    respond::{incidents::Incident, record},
};

pub fn run(state_dir: &Path, command: &IncidentsCommand) -> Result<()> {
    let journal = open(state_dir)?;
    match command {
        IncidentsCommand::List(args) => list(&journal, args),
        IncidentsCommand::Show { id, output } => show(&journal, *id, *output),
        IncidentsCommand::Affected(args) => affected(&journal, state_dir, args),
    }
}

fn open(state_dir: &Path) -> Result<Journal> {
    Journal::open_read_only(state_dir)?.with_context(|| {
        format!(
            "no journal in {} (the agent has not run with this state directory; --state-dir names another)",
            state_dir.display()
        )
    })
}

fn load(journal: &Journal, id: i64) -> Result<Incident> {
    let row = journal
        .incident(id)?
        .with_context(|| format!("no incident #{id}"))?;
    Ok(record::incident(&row)?)
}

fn time(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), clock::rfc3339_ms)
}

fn list(journal: &Journal, args: &IncidentsListArgs) -> Result<()> {
    let filter = IncidentFilter {
        storefront: args.storefront.clone(),
        unresolved: !args.all,
        since_ms: args
            .since
            .as_deref()
            .map(super::journal::parse_since)
            .transpose()?,
        limit: Some(args.limit),
    };
    let incidents: Vec<Incident> = journal
        .incidents(&filter)?
        .iter()
        .map(record::incident)
        .collect::<Result<_, _>>()?;
    let mut table = vec![
        [
            "ID",
            "STOREFRONT",
            "KIND",
            "SEVERITY",
            "STATE",
            "FIRST SEEN",
            "LAST SEEN",
            "SOURCES",
            "DECISIONS",
            "DROPPED",
            "ACCOUNTS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for i in &incidents {
        table.push(vec![
            i.id.to_string(),
            i.storefront.clone(),
            i.kind.to_string(),
            i.severity.clone(),
            i.state.name().into(),
            time(Some(i.first_seen_ms)),
            time(Some(i.last_seen_ms)),
            i.sources_total.to_string(),
            i.decisions.to_string(),
            format!("~{}", i.packets_dropped),
            i.accounts_tried.len().to_string(),
        ]);
    }
    if args.output == OutputFormat::Table && incidents.is_empty() {
        eprintln!(
            "no {}incidents{}",
            if args.all { "" } else { "open " },
            if args.all {
                ""
            } else {
                " (--all for resolved ones)"
            }
        );
    }
    output::print(args.output, &incidents, table);
    Ok(())
}

fn show(journal: &Journal, id: i64, format: OutputFormat) -> Result<()> {
    let i = load(journal, id)?;
    let list = |set: &std::collections::BTreeSet<String>, total: usize| {
        let shown: Vec<_> = set.iter().take(20).cloned().collect();
        let more = total.saturating_sub(shown.len());
        match more {
            0 => shown.join(", "),
            n => format!("{} and {n} more", shown.join(", ")),
        }
    };
    let rows = vec![
        vec!["incident".into(), format!("#{}", i.id)],
        vec!["storefront".into(), i.storefront.clone()],
        vec!["kind".into(), format!("{} ({})", i.kind, i.severity)],
        vec!["state".into(), i.state.name().into()],
        vec!["first seen".into(), time(Some(i.first_seen_ms))],
        vec!["last seen".into(), time(Some(i.last_seen_ms))],
        vec!["mitigating since".into(), time(i.mitigating_since_ms)],
        vec!["resolved".into(), time(i.resolved_ms)],
        vec![
            "detectors".into(),
            i.detectors.iter().cloned().collect::<Vec<_>>().join(", "),
        ],
        vec![
            "sources".into(),
            format!(
                "{}: {}",
                i.sources_total,
                list(&i.sources, i.sources_total as usize)
            ),
        ],
        vec![
            "decisions".into(),
            format!("{} ({} enforced)", i.decisions, i.enforced),
        ],
        vec![
            "dropped".into(),
            format!(
                "about {} packets to {}, {} of them new connections (the kernel counts 1 drop in {} per CPU)",
                i.packets_dropped,
                if i.destinations.is_empty() {
                    "-".to_string()
                } else {
                    i.destinations
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                i.connections_dropped,
                ensuresec_common::maps::DROP_SAMPLE
            ),
        ],
        vec![
            "accounts tried".into(),
            list(&i.accounts_tried, i.accounts_tried.len()),
        ],
        vec![
            "accounts taken over".into(),
            list(&i.accounts_taken_over, i.accounts_taken_over.len()),
        ],
        vec!["evidence".into(), i.evidence.join("\n            ")],
    ];
    output::print(format, &i, rows);
    Ok(())
}

/// One affected account, for the shop to notify.
#[derive(Serialize)]
struct Affected {
    /// The keyed hash ensuresec keeps.
    pseudonym: String,
    /// The shop's own name for it, when its account list was given.
    account: Option<String>,
    /// It logged in from an attacking source.
    taken_over: bool,
}

fn affected(journal: &Journal, state_dir: &Path, args: &AffectedArgs) -> Result<()> {
    let i = load(journal, args.id)?;
    // The shop's account names are hashed here with the agent's key and
    // matched; nothing of the list is kept.
    let names: HashMap<String, String> = match &args.accounts {
        Some(file) => {
            let key = args
                .key
                .clone()
                .unwrap_or_else(|| state_dir.join("app.key"));
            let hasher = Hasher::load(&key)?;
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the account list {}", file.display()))?;
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| (hasher.hash(l).to_string(), l.to_string()))
                .collect()
        }
        None => HashMap::new(),
    };
    let rows: Vec<Affected> = i
        .accounts_tried
        .union(&i.accounts_taken_over)
        .map(|p| Affected {
            pseudonym: p.clone(),
            account: names.get(p).cloned(),
            taken_over: i.accounts_taken_over.contains(p),
        })
        .collect();
    if let Some(file) = &args.accounts
        && !rows.is_empty()
        && rows.iter().all(|r| r.account.is_none())
    {
        bail!(
            "none of the {} affected accounts is in {}: is it the shop's account list, hashed with the agent's key?",
            rows.len(),
            file.display()
        );
    }
    if i.accounts_tried.len() >= crate::respond::incidents::MAX_LISTED {
        eprintln!(
            "the incident keeps its first {} accounts: more may have been tried",
            crate::respond::incidents::MAX_LISTED
        );
    }
    match args.output {
        AffectedFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        AffectedFormat::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout().lock());
            w.write_record(["pseudonym", "account", "taken_over"])?;
            for r in &rows {
                w.write_record([
                    r.pseudonym.as_str(),
                    r.account.as_deref().unwrap_or(""),
                    if r.taken_over { "yes" } else { "no" },
                ])?;
            }
            w.flush()?;
        }
    }
    Ok(())
}
