//! Input-splitting branch-and-bound on the dense fast path ([`DenseReluNet`]): sub-boxes are bounded in
//! batches (one matrix product per layer for the whole batch, batches spread over all cores), each sub-box
//! inherits its parent's layer bounds as a prior, and the split dimension is the one whose range costs the
//! open constraints' linear bounds most. Open sub-boxes are taken most promising first (the parent's probe
//! points, centre and bound witness, came closest to the bad region), which reaches counterexamples sooner than
//! depth-first; a proof bounds the same tree in either order.
//!
//! Soundness rules are the same as [`crate::incomplete`]'s: boxes are widened by one ulp, a right-hand side must
//! be beaten by more than one ulp, and the rounding of the constraint coefficients is covered by a
//! `u·Σ|c_j|·max|y_j|` term. The two halves of a split share the midpoint, so they cover their parent exactly.

use crate::bab::BabOutcome;
use crate::check::{Counterexample, check_candidate};
use ndarray::{Array2, ArrayView2};
use nncert_bounds::dense::{DenseBounds, DenseReluNet, LayerBounds};
use nncert_model::Graph;
use nncert_spec::{InputBox, Property};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

const U: f64 = f64::EPSILON / 2.0;

/// Sub-boxes bounded together by one task (one set of matrix products).
const CHUNK: usize = 32;

/// A sub-box whose gap still to close is above this fraction of its parent's gap counts as stalled: the
/// coefficient-based split did not pay, so it is split along its relatively widest dimension instead. Chosen on
/// ACAS Xu (0.9 and 0.995 both solved fewer instances within 30 s than 0.98).
const STALL_RATIO: f64 = 0.98;

/// How many open sub-boxes fit in a memory budget.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Below this many open sub-boxes, new ones keep their parent's layer bounds as a prior.
    pub with_priors: usize,
    /// Past this many, the search stops (`unknown`) instead of growing further.
    pub max_open: usize,
}

impl QueueLimits {
    /// Half of `memory_limit` (bytes) for sub-boxes with priors (a prior is shared by the two halves of a
    /// split: `8·(neurons + outputs)` bytes each), the other half for bare boxes (`16·inputs` plus overhead).
    pub fn for_net(net: &DenseReluNet, memory_limit: usize) -> Self {
        let bare = 16 * net.input_size() + 128;
        let prior = 8 * (net.hidden_neurons() + net.output_size());
        let half = memory_limit / 2;
        let with_priors = (half / (bare + prior)).max(1);
        QueueLimits {
            with_priors,
            max_open: with_priors + (half / bare).max(1),
        }
    }
}

/// Per case of a property, layer bounds over the case's (one-ulp widened) box to start a ReLU-splitting search
/// from ([`crate::dense_relu_bab::relu_split_dense`]), or `None`. Tighter root bounds tighten every sub-domain
/// that inherits them. (Input splitting starts without: with them its split scores led to worse trees.)
pub type RootPriors = Vec<Option<Arc<DenseBounds>>>;

/// The dense engine's layer bounds read from the generic engine's node bounds of the graph `net` was built
/// from (`bounds[i]` for node `i`, see [`DenseReluNet::layer_nodes`]).
pub fn dense_bounds_from_nodes(
    net: &DenseReluNet,
    bounds: &[nncert_bounds::NodeBounds],
) -> Option<DenseBounds> {
    Some(DenseBounds {
        layers: net
            .layer_nodes()
            .iter()
            .map(|&i| bounds.get(i).cloned())
            .collect::<Option<_>>()?,
    })
}

/// `bounds` with the output layer left unbounded. Kept from the first trial of α root priors, which also fed
/// input splitting: there, tight inherited output bounds looked like a cause of the worse trees, but leaving
/// them out did not help (ACAS Xu 1_3 prop_4 stayed above 25,000 sub-boxes, 247 without priors), and input
/// splitting no longer takes these priors. For ReLU splitting, whether the output bounds would help is not
/// measured yet.
fn without_output(mut bounds: DenseBounds) -> DenseBounds {
    if let Some(out) = bounds.layers.last_mut() {
        out.lower.fill(f64::NEG_INFINITY);
        out.upper.fill(f64::INFINITY);
    }
    bounds
}

/// Root priors from the generic engine's α-CROWN (slopes optimized for every intermediate neuron too, which
/// the dense engine does not do), computed until `deadline` (past it, still sound, only looser). Also says
/// whether those bounds alone refute every case (a proof: same soundness rules as [`crate::incomplete`]).
pub fn alpha_root_priors(
    net: &DenseReluNet,
    graph: &Graph,
    property: &Property,
    deadline: Instant,
) -> (RootPriors, bool) {
    let model = nncert_bounds::BoundModel::new(graph);
    let bounder = model.bounder().with_deadline(deadline);
    let method = nncert_bounds::Method::Alpha {
        iterations: nncert_bounds::ALPHA_ITERATIONS,
        intermediate: nncert_bounds::ALPHA_INTERMEDIATE_ITERATIONS,
    };
    let mut proved = true;
    let mut priors = Vec::with_capacity(property.cases.len());
    for case in &property.cases {
        if Instant::now() >= deadline {
            proved = false;
            priors.push(None);
            continue;
        }
        let res = crate::incomplete::refute_case_detailed(&bounder, case, method, None, true);
        proved &= res.refuted.iter().all(|&r| r);
        priors.push(
            dense_bounds_from_nodes(net, &res.bounds)
                .map(without_output)
                .map(Arc::new),
        );
    }
    (priors, proved)
}

struct Domain {
    input: InputBox,
    /// Disjuncts not refuted on an ancestor.
    live: Vec<usize>,
    prior: Option<Arc<DenseBounds>>,
    /// The parent's smallest gap still to close (infinite at the root).
    parent_gap: f64,
    /// How far the parent's probe points (centre and bound witness) came from the bad region: the smallest,
    /// over points and open disjuncts, of the largest row excess `c·y - rhs` (-inf at the root).
    parent_probe: f64,
}

enum Step {
    Closed,
    Split([Domain; 2]),
    Found(Box<Counterexample>),
    /// Could not be split further in floating point.
    Stuck,
}

/// A disjunct the bounds did not refute, with its best row (index into the live rows) and that row's gap.
pub(crate) struct OpenDisjunct {
    pub disjunct: usize,
    pub row: usize,
    pub gap: f64,
}

/// The constraint rows of one case, flattened: `rows[r]` belongs to disjunct `owner[r]`.
pub(crate) struct CaseRows {
    pub c: Array2<f64>,
    pub rhs: Vec<f64>,
    pub owner: Vec<usize>,
    pub n_disjuncts: usize,
}

impl CaseRows {
    pub fn new(case: &nncert_spec::Case, outputs: usize) -> Self {
        let mut rows = Vec::new();
        let mut rhs = Vec::new();
        let mut owner = Vec::new();
        for (di, d) in case.output.disjuncts.iter().enumerate() {
            for k in &d.constraints {
                rows.push(&k.coeffs);
                rhs.push(k.rhs);
                owner.push(di);
            }
        }
        let mut c = Array2::<f64>::zeros((rows.len(), outputs));
        for (r, row) in rows.iter().enumerate() {
            for (j, &v) in row.iter().enumerate().take(outputs) {
                c[[r, j]] = v;
            }
        }
        CaseRows {
            c,
            rhs,
            owner,
            n_disjuncts: case.output.disjuncts.len(),
        }
    }

    /// The rows of the disjuncts in `live`, as indices into `self.c`.
    pub fn live_rows(&self, live: &[usize]) -> Vec<usize> {
        (0..self.owner.len())
            .filter(|&r| live.contains(&self.owner[r]))
            .collect()
    }

    /// Refutes what the lower bounds `lower` (one per row of `live_rows`, whose coefficients are `c`) can:
    /// returns, for each disjunct of `live` left standing, its best row (index into `live_rows`) and that
    /// row's gap (bound minus right-hand side, negative while open).
    pub fn open_disjuncts(
        &self,
        live: &[usize],
        live_rows: &[usize],
        c: ArrayView2<'_, f64>,
        lower: &[f64],
        out: &LayerBounds,
    ) -> Vec<OpenDisjunct> {
        let ymag = out.magnitude();
        let mut open = Vec::with_capacity(live.len());
        'disjuncts: for &di in live {
            let mut best: Option<(f64, usize)> = None;
            for (i, &r) in live_rows.iter().enumerate() {
                if self.owner[r] != di {
                    continue;
                }
                let (refutes, gap) = self.refutes(c.row(i), r, lower[i], &ymag);
                if refutes {
                    continue 'disjuncts;
                }
                if best.is_none_or(|(g, _)| gap > g) {
                    best = Some((gap, i));
                }
            }
            if let Some((gap, row)) = best {
                open.push(OpenDisjunct {
                    disjunct: di,
                    row,
                    gap,
                });
            }
        }
        open
    }

    /// Whether the f64 outputs `y` lie in (or within a relative 1e-6 of) some open disjunct's region: worth
    /// the rigorous check of [`check_candidate`].
    pub fn near_bad(
        &self,
        open: &[OpenDisjunct],
        live_rows: &[usize],
        c: ArrayView2<'_, f64>,
        y: &[f64],
    ) -> bool {
        open.iter().any(|o| {
            live_rows
                .iter()
                .enumerate()
                .filter(|&(_, &r)| self.owner[r] == o.disjunct)
                .all(|(i, &r)| {
                    let v: f64 = c.row(i).iter().zip(y).map(|(a, b)| a * b).sum();
                    v <= self.rhs[r] + 1e-6 * (1.0 + self.rhs[r].abs())
                })
        })
    }

    /// Whether row `i` of the live rows `c` (global row `r`) is refuted by the lower bound `lower`, with the
    /// rounding of the constraint's coefficients covered by `u·Σ|c_j|·max|y_j|` (`ymag` = max|y_j|).
    pub fn refutes(
        &self,
        c_row: ndarray::ArrayView1<'_, f64>,
        r: usize,
        lower: f64,
        ymag: &[f64],
    ) -> (bool, f64) {
        let slack: f64 = c_row
            .iter()
            .zip(ymag)
            .map(|(a, m)| a.abs() * m)
            .sum::<f64>()
            * U
            * 1.01;
        let lb = (lower - slack).next_down();
        (lb > self.rhs[r].next_up(), lb - self.rhs[r])
    }
}

/// Runs input-splitting branch-and-bound with the dense engine until `deadline` or until more than
/// `limits.max_open` sub-boxes are pending.
pub fn input_split_dense(
    net: &DenseReluNet,
    graph: &Graph,
    property: &Property,
    deadline: Instant,
    limits: QueueLimits,
) -> BabOutcome {
    let threads = rayon::current_num_threads().max(1);
    let mut domains = 0u64;
    for (ci, case) in property.cases.iter().enumerate() {
        let case_rows = CaseRows::new(case, net.output_size());
        if case_rows.n_disjuncts == 0 {
            continue;
        }
        let root_width: Vec<f64> = case
            .input
            .lower
            .iter()
            .zip(&case.input.upper)
            .map(|(l, u)| u - l)
            .collect();
        let mut queue = Queue::default();
        queue.push(Domain {
            input: case.input.clone(),
            live: (0..case_rows.n_disjuncts).collect(),
            prior: None,
            parent_gap: f64::INFINITY,
            parent_probe: f64::NEG_INFINITY,
        });
        while !queue.is_empty() {
            if Instant::now() >= deadline || queue.len() > limits.max_open {
                return BabOutcome::Undecided {
                    domains,
                    open: queue.len(),
                };
            }
            let keep_priors = queue.len() < limits.with_priors;
            // Enough work for every thread, but no more than needed: small batches keep the order meaningful.
            let take = queue.len().min(CHUNK * threads);
            let work = queue.pop_many(take);
            domains += work.len() as u64;
            let chunks: Vec<Vec<Domain>> = chunked(work, take.div_ceil(threads).min(CHUNK));
            let steps: Vec<Vec<Step>> = chunks
                .into_par_iter()
                .map(|chunk| {
                    bound_chunk(
                        net,
                        graph,
                        property,
                        ci,
                        &case_rows,
                        &root_width,
                        chunk,
                        keep_priors,
                    )
                })
                .collect();
            for step in steps.into_iter().flatten() {
                match step {
                    Step::Closed => {}
                    Step::Split(children) => children.into_iter().for_each(|c| queue.push(c)),
                    Step::Found(cex) => return BabOutcome::Counterexample { cex, domains },
                    Step::Stuck => {
                        return BabOutcome::Undecided {
                            domains,
                            open: queue.len() + 1,
                        };
                    }
                }
            }
        }
    }
    BabOutcome::Proved { domains }
}

/// The open sub-boxes, most promising first: the one whose parent's probe points came closest to the bad region
/// (smallest `parent_probe`) is bounded next; among equal values the newest, so ties go depth-first.
/// The order does not change which sub-boxes a proof must bound (each split depends only on its own box, prior
/// and parent gap), but more of them can be open at once than depth-first: `QueueLimits` still caps that.
#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Queued>,
    seq: u64,
}

struct Queued {
    /// `-parent_probe`: the heap pops the largest.
    key: f64,
    seq: u64,
    domain: Domain,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .total_cmp(&other.key)
            .then(self.seq.cmp(&other.seq))
    }
}

impl Queue {
    fn push(&mut self, domain: Domain) {
        self.seq += 1;
        self.heap.push(Queued {
            key: -domain.parent_probe,
            seq: self.seq,
            domain,
        });
    }

    fn len(&self) -> usize {
        self.heap.len()
    }

    fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The `n` most promising open sub-boxes (fewer when fewer are open).
    fn pop_many(&mut self, n: usize) -> Vec<Domain> {
        (0..n)
            .map_while(|_| self.heap.pop())
            .map(|q| q.domain)
            .collect()
    }
}

fn chunked(mut v: Vec<Domain>, size: usize) -> Vec<Vec<Domain>> {
    let size = size.max(1);
    let mut out = Vec::with_capacity(v.len().div_ceil(size));
    while v.len() > size {
        let rest = v.split_off(size);
        out.push(v);
        v = rest;
    }
    if !v.is_empty() {
        out.push(v);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn bound_chunk(
    net: &DenseReluNet,
    graph: &Graph,
    property: &Property,
    case: usize,
    rows: &CaseRows,
    root_width: &[f64],
    chunk: Vec<Domain>,
    keep_priors: bool,
) -> Vec<Step> {
    let widened: Vec<InputBox> = chunk.iter().map(|d| d.input.widened_one_ulp()).collect();
    let priors: Vec<Option<&DenseBounds>> = chunk.iter().map(|d| d.prior.as_deref()).collect();
    let all = net.bound_boxes(&widened, &priors);
    let mut steps = Vec::with_capacity(chunk.len());
    for ((d, bx), bounds) in chunk.into_iter().zip(&widened).zip(all) {
        steps.push(decide(
            net,
            graph,
            property,
            case,
            rows,
            root_width,
            d,
            bx,
            bounds,
            keep_priors,
        ));
    }
    steps
}

#[allow(clippy::too_many_arguments)]
fn decide(
    net: &DenseReluNet,
    graph: &Graph,
    property: &Property,
    case: usize,
    rows: &CaseRows,
    root_width: &[f64],
    d: Domain,
    widened: &InputBox,
    bounds: DenseBounds,
    keep_priors: bool,
) -> Step {
    let live_rows = rows.live_rows(&d.live);
    let c = rows.c.select(ndarray::Axis(0), &live_rows);
    let (lower, coeffs) = net.objective_lower(widened, &bounds, c.view());
    let open = rows.open_disjuncts(&d.live, &live_rows, c.view(), &lower, bounds.output());
    if open.is_empty() {
        return Step::Closed;
    }
    let n_in = d.input.lower.len();
    let mut scores = vec![0.0; n_in];
    // The smallest amount by which a live disjunct's best constraint bound must still rise.
    let mut gap_to_close = f64::INFINITY;
    for o in &open {
        gap_to_close = gap_to_close.min(-o.gap);
        for (j, s) in scores.iter_mut().enumerate() {
            *s += coeffs[[o.row, j]].abs() * (d.input.upper[j] - d.input.lower[j]);
        }
    }
    let live: Vec<usize> = open.iter().map(|o| o.disjunct).collect();
    // Screen the centre in f64; only a promising one pays for the rigorous f32/f64 re-execution.
    let centre: Vec<f64> = d
        .input
        .lower
        .iter()
        .zip(&d.input.upper)
        .map(|(l, u)| l + (u - l) / 2.0)
        .collect();
    // How far outputs `y` are from the bad region: over the open disjuncts, the smallest largest row excess.
    let excess = |y: &[f64]| {
        open.iter()
            .map(|o| {
                live_rows
                    .iter()
                    .enumerate()
                    .filter(|&(_, &r)| rows.owner[r] == o.disjunct)
                    .map(|(i, &r)| {
                        c.row(i).iter().zip(y).map(|(a, b)| a * b).sum::<f64>() - rows.rhs[r]
                    })
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .fold(f64::INFINITY, f64::min)
    };
    let y_centre = net.eval(&centre);
    let centre_excess = excess(&y_centre);
    if rows.near_bad(&open, &live_rows, c.view(), &y_centre)
        && let Some(cex) = check_candidate(graph, property, case, &centre)
    {
        return Step::Found(Box::new(cex));
    }
    // The bound's own witness: the vertex where the worst open row's linear lower bound is least. Where the
    // bound is nearly tight, the network is nearly bad there too.
    let worst = open
        .iter()
        .min_by(|a, b| a.gap.total_cmp(&b.gap))
        .expect("open is not empty");
    let vertex: Vec<f64> = (0..n_in)
        .map(|j| {
            if coeffs[[worst.row, j]] >= 0.0 {
                d.input.lower[j]
            } else {
                d.input.upper[j]
            }
        })
        .collect();
    let y_vertex = net.eval(&vertex);
    let probe_excess = centre_excess.min(excess(&y_vertex));
    if rows.near_bad(&open, &live_rows, c.view(), &y_vertex)
        && let Some(cex) = check_candidate(graph, property, case, &vertex)
    {
        return Step::Found(Box::new(cex));
    }
    // Splitting dimension j can improve the linear bound by about scores[j]/2. When even the best score is
    // far below the gap still to close, or when the parent's split (chosen that way) barely narrowed the gap,
    // the looseness sits in the ReLU relaxations, not in the input coefficients: split the relatively widest
    // dimension instead.
    let stalled = gap_to_close > STALL_RATIO * d.parent_gap;
    let by_score = (0..n_in)
        .filter(|&j| d.input.upper[j] > d.input.lower[j])
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .filter(|&j| scores[j] > 1e-3 * gap_to_close)
        .filter(|_| !stalled);
    let split = by_score.or_else(|| {
        (0..n_in).filter(|&j| root_width[j] > 0.0).max_by(|&a, &b| {
            let wa = (d.input.upper[a] - d.input.lower[a]) / root_width[a];
            let wb = (d.input.upper[b] - d.input.lower[b]) / root_width[b];
            wa.total_cmp(&wb)
        })
    });
    let Some(j) = split else { return Step::Stuck };
    let mid = centre[j];
    if !(mid > d.input.lower[j] && mid < d.input.upper[j]) {
        return Step::Stuck;
    }
    let mut left = d.input.clone();
    left.upper[j] = mid;
    let mut right = d.input;
    right.lower[j] = mid;
    let prior = keep_priors.then(|| Arc::new(bounds));
    Step::Split([
        Domain {
            input: left,
            live: live.clone(),
            prior: prior.clone(),
            parent_gap: gap_to_close,
            parent_probe: probe_excess,
        },
        Domain {
            input: right,
            live,
            prior,
            parent_gap: gap_to_close,
            parent_probe: probe_excess,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(probe: f64) -> Domain {
        Domain {
            input: InputBox {
                lower: vec![0.0],
                upper: vec![1.0],
            },
            live: vec![0],
            prior: None,
            parent_gap: f64::INFINITY,
            parent_probe: probe,
        }
    }

    #[test]
    fn queue_takes_the_closest_probe_first_and_the_newest_among_equals() {
        let mut q = Queue::default();
        for (i, p) in [-1.0, -5.0, -1.0, f64::NEG_INFINITY, -3.0]
            .into_iter()
            .enumerate()
        {
            let mut d = domain(p);
            d.live = vec![i];
            q.push(d);
        }
        assert_eq!(q.len(), 5);
        let order: Vec<usize> = q.pop_many(10).iter().map(|d| d.live[0]).collect();
        assert_eq!(order, vec![3, 1, 4, 2, 0]);
        assert!(q.is_empty());
    }
}
