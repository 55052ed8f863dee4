//! Network detections: a source's or a destination's window tripped in the
//! kernel; the detectors run on it and decide.

use super::*;

impl Engine {
    pub(super) fn window_secs(&self) -> f64 {
        self.settings.window.as_secs_f64()
    }

    /// Only windows that began within the last window count.
    pub(super) fn since(&self) -> u64 {
        self.since_scale(Scale::Window)
    }

    pub(super) fn scale_length(&self, scale: Scale) -> Duration {
        Duration::from_nanos(scale.length_ns(self.settings.window.as_nanos() as u64))
    }

    pub(super) fn since_scale(&self, scale: Scale) -> u64 {
        clock::mono_ns().saturating_sub(self.scale_length(scale).as_nanos() as u64)
    }

    /// The length of the window an event is about.
    pub(super) fn window_of(&self, e: &Event) -> Duration {
        match (e.kind, Scale::from_u8(e.scale)) {
            (EVENT_DEST_TRIP, Some(scale)) => self.scale_length(scale),
            _ => self.settings.window,
        }
    }

    /// A source's event: its window tripped (`horizon` false) or its
    /// horizon did; the detectors of the prefix its traffic goes to look.
    pub(super) fn on_source(&mut self, e: &Event, horizon: bool) -> Result<()> {
        let Some(detectors) = self.detectors_for(key_addr(&e.peer)) else {
            return Ok(());
        };
        let Some(stats) = self
            .store
            .source_stats(&self.geometry, &e.addr, self.since())?
        else {
            return Ok(());
        };
        let now = clock::mono_ns();
        let span = rules::Span {
            length_secs: self.window_secs(),
            elapsed_secs: now.saturating_sub(stats.window.start_ns) as f64 / 1e9,
        };
        let found = rules::source_detections(&stats.window, &detectors, span);
        // The horizon names only what no window sees: a fast scan trips
        // both and is a port scan, and a horizon younger than two windows
        // holds nothing a window could not (a scan that starts slowly and
        // speeds up is named by its window).
        let h = &stats.horizon;
        let aged = now.saturating_sub(h.start_ns) as f64 >= 2e9 * self.window_secs();
        let (found, began_ns) = if horizon && found.is_empty() && aged {
            let found = rules::horizon_detection(h, &detectors);
            (found.into_iter().collect(), h.start_ns)
        } else {
            (found, stats.window.start_ns)
        };
        for d in found {
            self.decide_source(&e.addr, &d, &detectors, began_ns, Some(key_addr(&e.peer)))?;
        }
        Ok(())
    }

    pub(super) fn decide_source(
        &mut self,
        addr: &AddrKey,
        detection: &Detection,
        detectors: &Detectors,
        first_seen_ns: u64,
        victim: Option<std::net::IpAddr>,
    ) -> Result<()> {
        self.metrics
            .detections
            .with_label_values(&[detection.detector.name(), ""])
            .inc();
        let key = DecisionKey::new(*addr, 0, 0, SCOPE_SOURCE);
        let config = detectors.get(detection.detector);
        let strikes = self.store.offender(addr)?.map_or(0, |o| o.strikes) + 1;
        let dry_run = self.settings.dry_run_for(detectors, detection.detector);
        let plan = plan(
            &self.settings,
            detection.detector,
            config,
            config.action,
            dry_run,
            strikes,
        );
        if self.live(&key)?.is_some_and(|r| covers(&r, &plan)) {
            return Ok(());
        }
        let source = key_addr(addr);
        if let Some(allow) = self.allow.covering(&self.store, source)? {
            tracing::info!(%source, detector = detection.detector.name(), allowlist = %allow, "detection on an allowlisted source: no decision");
            return Ok(());
        }
        let record = decide::apply(
            &self.store.write()?,
            &key,
            detection,
            plan,
            strikes,
            first_seen_ns,
        )?;
        self.log_decision(
            &DecisionTarget(key),
            &plan,
            &record,
            Layer::of(detection.detector),
            record.first_seen_ns,
            victim.map_or(Place::Unknown, Place::Address),
        );
        Ok(())
    }

    pub(super) fn on_destination(&mut self, e: &Event) -> Result<()> {
        let Some(detectors) = self.detectors_for(key_addr(&e.addr)) else {
            return Ok(());
        };
        let dest = DestKey::new(e.addr, e.port, e.proto);
        let scale = Scale::from_u8(e.scale).unwrap_or(Scale::Window);
        let Some(stats) =
            self.store
                .dest_stats(&self.geometry, &dest, scale, self.since_scale(scale))?
        else {
            return Ok(());
        };
        let raw = &self.settings.raw;
        let gates = Gates {
            min_sources: raw.min_sources,
            unsolicited_min_sources: raw.unsolicited_min_sources,
            unserved_tcp: dest.is_unserved_tcp(),
            udp: dest.proto == libc::IPPROTO_UDP as u8,
            unsolicited_pps: self.baselines.threshold(
                &dest,
                raw.unsolicited_floor as f64,
                raw.baseline_factor as f64,
            ),
        };
        let found = rules::dest_detections(
            &stats.window,
            &detectors,
            self.scale_length(scale).as_secs_f64(),
            &gates,
        );
        for d in found {
            let config = detectors.get(d.detector);
            let dry_run = self.settings.dry_run_for(&detectors, d.detector);
            let action = match config.aggregate_action {
                Action::Budget => Action::Budget,
                _ => Action::Alert,
            };
            let mut plan = plan(&self.settings, d.detector, config, action, dry_run, 0);
            if gates.unserved_tcp && d.detector == Detector::SynFlood {
                plan = plan.unserved_only();
            }
            if d.detector == Detector::SynFlood && !dry_run {
                ensure_syncookies();
            }
            self.decide_destination(&dest, &d, plan, stats.window.start_ns)?;
        }
        Ok(())
    }

    /// Decides `plan` on a destination's detection, unless a decision in
    /// force there already does all of it (a live alert does not stop a
    /// filter; a live filter covers an alert).
    pub(super) fn decide_destination(
        &mut self,
        dest: &DestKey,
        detection: &Detection,
        plan: crate::detect::plan::Plan,
        began_ns: u64,
    ) -> Result<()> {
        self.metrics
            .detections
            .with_label_values(&[detection.detector.name(), ""])
            .inc();
        let key = DecisionKey::new(dest.addr, dest.port, dest.proto, SCOPE_DESTINATION);
        if self.live(&key)?.is_some_and(|r| covers(&r, &plan)) {
            return Ok(());
        }
        let record = decide::apply(&self.store.write()?, &key, detection, plan, 0, began_ns)?;
        self.log_decision(
            &DecisionTarget(key),
            &plan,
            &record,
            Layer::of(detection.detector),
            record.first_seen_ns,
            Place::Address(key_addr(&dest.addr)),
        );
        Ok(())
    }

    /// The decision in force on `key`, if any.
    pub(super) fn live(
        &self,
        key: &DecisionKey,
    ) -> Result<Option<ensuresec_common::decisions::DecisionRecord>> {
        Ok(self
            .store
            .decision(key)?
            .filter(|r| r.expires_at_ns > clock::mono_ns()))
    }
}
