//! Reason texts are interned in `ES_REASONS` so that a million entries with the
//! same reason store one copy of it; entries keep a 32-bit id.

use std::collections::{HashMap, HashSet};

use ensuresec_common::maps::{REASON_TEXT_MAX, ReasonText};

use super::{Store, Writer};
use crate::error::{Error, Result};

/// The reason table as read from the map, plus the ids this writer interned
/// since: entries it is about to write refer to them, so they are never freed
/// as unused before the change is applied.
pub struct Reasons {
    by_id: HashMap<u32, String>,
    by_text: HashMap<String, u32>,
    capacity: u32,
    fresh: HashSet<u32>,
    /// No id below this one is free: the search for a free id starts here.
    next_free: u32,
}

fn decode(r: &ReasonText) -> Option<String> {
    let len = (r.len as usize).min(REASON_TEXT_MAX);
    (len > 0).then(|| String::from_utf8_lossy(&r.text[..len]).into_owned())
}

/// Checks an operator's reason before anything else happens.
pub fn validate(text: &str) -> Result<()> {
    if text.len() > REASON_TEXT_MAX {
        return Err(Error::ReasonTooLong(text.len()));
    }
    Ok(())
}

impl Reasons {
    pub fn text(&self, id: u32) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }
}

impl Store {
    /// The text of one id, read from the map (not from a snapshot).
    pub fn reason_text(&self, id: u32) -> Result<Option<String>> {
        Ok(self
            .reasons
            .get::<u32, ReasonText>(&id)?
            .as_ref()
            .and_then(decode))
    }

    pub fn reasons(&self) -> Result<Reasons> {
        let rows: Vec<(u32, ReasonText)> = self.reasons.dump()?;
        let by_id: HashMap<u32, String> = rows
            .iter()
            .filter_map(|(id, r)| Some((*id, decode(r)?)))
            .collect();
        let by_text = by_id.iter().map(|(id, t)| (t.clone(), *id)).collect();
        Ok(Reasons {
            by_id,
            by_text,
            capacity: self.reasons.capacity()?,
            fresh: HashSet::new(),
            next_free: 1,
        })
    }
}

impl Writer<'_> {
    /// The id of `text`, adding it when new. `in_use` is called only when the
    /// table is full, to free the texts no entry refers to any more.
    pub fn intern_reason(
        &self,
        reasons: &mut Reasons,
        text: &str,
        in_use: impl FnOnce() -> Result<HashSet<u32>>,
    ) -> Result<u32> {
        validate(text)?;
        if text.is_empty() {
            return Ok(0);
        }
        if let Some(id) = reasons.by_text.get(text) {
            let id = *id;
            reasons.fresh.insert(id);
            return Ok(id);
        }
        let free = |r: &mut Reasons| {
            let id = (r.next_free..r.capacity).find(|id| !r.by_id.contains_key(id));
            r.next_free = id.map_or(r.capacity, |id| id + 1);
            id
        };
        let id = match free(reasons) {
            Some(id) => id,
            None => {
                let used = in_use()?;
                let stale: Vec<u32> = reasons
                    .by_id
                    .keys()
                    .filter(|id| !used.contains(id) && !reasons.fresh.contains(id))
                    .copied()
                    .collect();
                for id in stale {
                    self.reasons.set(&id, &ReasonText::default())?;
                    if let Some(t) = reasons.by_id.remove(&id) {
                        reasons.by_text.remove(&t);
                    }
                }
                reasons.next_free = 1;
                free(reasons).ok_or(Error::ReasonsFull(reasons.capacity - 1))?
            }
        };
        let mut row = ReasonText {
            len: text.len() as u8,
            ..Default::default()
        };
        row.text[..text.len()].copy_from_slice(text.as_bytes());
        self.reasons.set(&id, &row)?;
        reasons.by_id.insert(id, text.to_string());
        reasons.by_text.insert(text.to_string(), id);
        reasons.fresh.insert(id);
        Ok(id)
    }
}
