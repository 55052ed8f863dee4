"""The aggregate model's section of MODEL_CARD.md: the same evaluation as the
per-source model's, on per-destination windows."""

from . import margin
from .card import _pct, _tables
from .evaluate import BenignResult, FamilyResult


def render(info: dict, fams: list[FamilyResult], shipped: list[FamilyResult],
           ben: BenignResult) -> str:
    t = _tables(info, fams, shipped, ben)
    return f"""
# Model card: ensuresec aggregate autoencoder `{info['version']}`

*Generated with the per-source model above, from
`{info['dataset']}`; do not edit by hand.*

## What it is
The same kind of autoencoder (layers {info['layers']}, tanh, standard deviation
floor {info['std_floor']}) over a different row: what one protected
destination address received in its current one-second kernel window, from
all of its sources together (its ports' and CPUs' windows merged). A flood
made of one-packet sources (reflection, spoofing) has no source the
per-source model could score, but it is one row here. Windows with fewer than
{info['min_packets']} packets are not scored (`[ml] aggregate_min_packets`).
The agent flags a destination when the score is above
**{info['threshold']:.4f}** (`ensuresec-aggregate-ae.onnx`, `[ml]
aggregate_model`): an alert on its busiest port, or with `aggregate_action =
"budget"` a filter of the answers nobody asked for (unsolicited UDP,
SYN-ACKs, SYNs to ports nobody serves) on each port where they are most of
the window. A model names no rate to budget other traffic at, so it never
does.

## Features (no addresses, no ports)
{", ".join(f"`{f}`" for f in info['features'])}.
Packets and bytes per second (log; over at least a tenth of a second, so a
window just begun is no flood), mean size, the shares of SYN, SYN-ACK, bare
ACK/RST, UDP, ICMP, fragments, unsolicited UDP and of packets that were the
first their source sent (`fresh_share`), distinct sources and source ports
(log, from the kernel's sketches: 128 and 256 at most), the top source
port's share (a majority vote: at least that share), and packets per source
(log). They come from the agent's own code (`ml::destinations`,
`vector::destination::of`).

## Data and splits
Recorded by `cargo xtask dataset` beside the per-source rows, at the same
steps ({info['passes']} passes over the scenarios): {info['rows']} rows,
{info['scored_rows']} scored.
A row is labelled an attack when it is the attack's target address while the
attack tool runs; the storefront's other rows, and every row of the benign
scenarios, are benign. Training {info['train_rows']} benign windows (passes
{info['train_passes']}), validation {info['validation_rows']} benign (pass
{info['validation_pass']}), test {info['test_rows']} (passes
{info['test_passes']}, {ben.windows} benign). Threshold: the
{info['quantile']} quantile of the validation benign scores times a margin
of {info['margin']:.2f}, what benign scenarios held out of training needed
(see below). Families are held out as for the per-source model.

## Results on the test passes (leave-one-family-out)
| family | runs | attack windows scored | not scored (< {info['min_packets']} packets) | ROC AUC | DR @ FPR 1 % | DR @ FPR 0.1 % | DR at threshold | time to detect (median) | threshold detectors: DR | threshold detectors: time to detect | candidate chosen without it |
|---|---|---|---|---|---|---|---|---|---|---|---|
{t['rows']}

### The shipped model on the same windows
| family | ROC AUC | DR at threshold | time to detect (median) |
|---|---|---|---|
{t['shipped_rows']}

Time to detect is from the start of the attack tool to the end of the first
flagged step. The recorder's first step falls about 30 ms after the tool
starts, and a destination's window holds a flood from its first packets, so
floods are flagged at that first step here; the agent's steps fall anywhere
in the second, so expect up to one step (1 s) more. A window counts for the
threshold detectors when a decision on the address existed by the end of its
step. The first step after an attack tool stopped is left out: its window
straddles the end. Every window of the attack's target while the
tool runs is labelled an attack, including its quiet first and last
fractions, so detection rates per window are lower bounds; time to detect is
the figure to read.

### False positives on benign windows (test passes)
At the deployed threshold: **{_pct(ben.fpr_deployed)}** of {ben.windows} benign
windows. Flash crowd: **{_pct(ben.flash_crowd_fpr)}** of {ben.flash_crowd_windows}
windows. The threshold detectors had decided on the address in
{_pct(ben.threshold_fpr)} of the benign windows of runs with no attack (a
destination's decision outlives the attack it answered).

| role | windows | flagged |
|---|---|---|
{t['roles']}

### What it flags, and what it misses
| family | largest errors when flagged | median packets/window, caught | median packets/window, missed |
|---|---|---|---|
{t['evidence']}

{t['missed']}
{t['unscored']}

{margin.section(info, "scenario")}
## Limits
- **Benign mixes it never saw score high; the margin pays for that.** One
  storefront and one traffic mix make a thin benign set ({info['train_rows']}
  training windows), and a scenario held out of training scores up to
  {info['margin']:.0f} times the validation quantile (the table above). At
  the raised threshold the lab's own mix of a keep-alive shopper and the
  visitors is not flagged, and a flood of one-packet sources still is
  (`tests/tests/lab_ml.rs`); floods from one or a few sources fall under it,
  and are the threshold detectors'. Watch your own traffic's scores
  (`ensuresec_ml_scores{{model="aggregate"}}`) before `budget`, and retrain
  on it.
- Scans of one source look ordinary at the destination; they are the
  per-source model's and the threshold detectors' (`port_scan`,
  `slow_scan`, `service_scan`).
- `fresh_share` counts packets whose source was new to the CPU's slice of
  the kernel's per-source table: with more CPUs (and a busier table) more
  packets are first-time on their CPU than in this 2-CPU lab. Retrain on
  the host class you deploy to.
- Trained on 1 s kernel windows (`[detect] window`); the agent warns when
  its window differs.

Test vectors: `aggregate_test_vectors.json`; parity with onnxruntime
{info['parity']:.1e}.
"""
