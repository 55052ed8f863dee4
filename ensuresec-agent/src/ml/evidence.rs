//! The models' evidence: the features with the largest errors, in words,
//! and in a decision record's four numbers (score and threshold in
//! millionths, the top features with their share of the error packed into
//! the two detector-specific slots).

use super::model::Subject;

/// `evidence[2]`: feature indices + 1, a byte each; `evidence[3]`: shares in
/// per mille, 16 bits each.
pub fn pack(score: f32, threshold: f32, top: &[(usize, f32)]) -> [u64; 4] {
    let micro = |v: f32| (v.max(0.0) as f64 * 1e6).min(u64::MAX as f64) as u64;
    let mut features = 0u64;
    let mut shares = 0u64;
    for (slot, (i, share)) in top.iter().take(3).enumerate() {
        features |= ((*i as u64 + 1) & 0xff) << (8 * slot);
        shares |= (((share.clamp(0.0, 1.0) * 1000.0).round() as u64) & 0xffff) << (16 * slot);
    }
    [micro(score), micro(threshold), features, shares]
}

/// What `pack` stored: score, threshold, and (feature index, share) pairs.
pub fn unpack(evidence: &[u64; 4]) -> (f64, f64, Vec<(usize, f32)>) {
    let top = (0..3)
        .filter_map(|slot| {
            let f = (evidence[2] >> (8 * slot)) & 0xff;
            let share = ((evidence[3] >> (16 * slot)) & 0xffff) as f32 / 1000.0;
            (f != 0).then(|| (f as usize - 1, share))
        })
        .collect();
    (evidence[0] as f64 / 1e6, evidence[1] as f64 / 1e6, top)
}

/// The three features that contributed most to a row's error.
pub fn top_features(errors: ndarray::ArrayView1<f32>) -> Vec<(usize, f32)> {
    let total: f32 = errors.iter().sum();
    let mut idx: Vec<usize> = (0..errors.len()).collect();
    idx.sort_by(|a, b| errors[*b].total_cmp(&errors[*a]));
    idx.into_iter()
        .take(3)
        .map(|i| (i, if total > 0.0 { errors[i] / total } else { 0.0 }))
        .collect()
}

/// "log_pps 61 %, syn_share 20 %, ..." for logs and the decisions table.
pub fn describe_top(subject: Subject, top: &[(usize, f32)]) -> String {
    let names = subject.features();
    top.iter()
        .filter_map(|(i, share)| Some(format!("{} {:.0} %", names.get(*i)?, share * 100.0)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_features_are_the_largest_errors_with_their_share() {
        let mut e = ndarray::Array1::<f32>::zeros(Subject::Source.width());
        e[0] = 6.0;
        e[3] = 3.0;
        e[11] = 1.0;
        let top = top_features(e.view());
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0, 3, 11]);
        assert!((top[0].1 - 0.6).abs() < 1e-6);
        assert_eq!(
            describe_top(Subject::Source, &top),
            "log_pps 60 %, syn_share 30 %, log_distinct_ports 10 %"
        );
        assert_eq!(
            describe_top(Subject::Destination, &top),
            "log_pps 60 %, syn_share 30 %, log_distinct_sources 10 %"
        );
    }

    #[test]
    fn round_trips() {
        let e = pack(12.5, 1.25, &[(0, 0.6), (3, 0.3), (14, 0.1)]);
        let (score, threshold, top) = unpack(&e);
        assert_eq!((score, threshold), (12.5, 1.25));
        assert_eq!(top, vec![(0, 0.6), (3, 0.3), (14, 0.1)]);
    }

    #[test]
    fn fewer_features_and_odd_values() {
        let (_, _, top) = unpack(&pack(f32::NAN, 1.0, &[(2, 1.5)]));
        assert_eq!(top, vec![(2, 1.0)]);
        assert_eq!(unpack(&pack(0.0, 0.0, &[])).2, vec![]);
    }
}
