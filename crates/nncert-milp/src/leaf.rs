//! HiGHS as the leaf solver of ReLU-splitting branch-and-bound ([`nncert_verify::leaf`]).
//!
//! A leaf is the property's box with some ReLUs fixed. Its encoding is the case's MILP with the leaf's sound
//! layer bounds as column bounds: a split neuron's clamped interval (lower 0 or upper 0) becomes the column
//! bound that enforces its phase, and a neuron whose interval no longer straddles 0 needs no binary. So:
//! - **no unstable ReLU left**: the leaf is an LP. HiGHS solves it; the refutation is then re-derived from
//!   HiGHS's row duals by [`certified_lower_bound`] (Neumaier–Shcherbina, explicit rounding-error terms), so it
//!   is rigorous under floating point like the rest of the search, whatever HiGHS's tolerances did. The
//!   certificate speaks of the real-valued network because the program is the network exactly: for
//!   Linear/ReLU networks its coefficients are the stored f32 weights (exact in f64) and its row bounds the
//!   biases, with no arithmetic performed on them; the column bounds are sound bounds on the leaf. When the
//!   fixed phases contradict each other the LP is infeasible, and HiGHS's dual ray is checked the same way
//!   (a Farkas certificate with the objective taken as 0).
//! - **a few unstable ReLUs**: a small MILP; its dual bound refutes only up to HiGHS's tolerances (the verdict
//!   then says so), and its points are candidates the search re-executes.
//!
//! With `NNCERT_LEAF_LOG` set, every leaf's LP/MILP outcome is printed on stderr (a debugging aid, like
//! `NNCERT_MILP_LOG` for HiGHS's own log).

use crate::encode::{self, NetEncoding};
use crate::solve::{self, certified_infeasible, certified_lower_bound};
use crate::{
    CaseModel, MilpError, REL_TOL, case_bounds, check_finite, disjunct_program, linear_node_ids,
    margin_scale,
};
use nncert_bounds::dense::DenseReluNet;
use nncert_bounds::{BoundModel, NodeBounds};
use nncert_model::Graph;
use nncert_spec::{Conjunction, Property};
use nncert_verify::leaf::{Leaf, LeafAnswer, LeafSolver};
use std::sync::OnceLock;
use std::time::Instant;

/// The HiGHS leaf solver for one property (it keeps each case's bounds over the whole box).
#[derive(Debug)]
pub struct MilpLeafSolver {
    graph: Graph,
    /// Sound bounds of every node over each case's box (the leaf's layer bounds are intersected in), computed
    /// when the case's first leaf arrives (most searches never reach one); `None` when not finite.
    case_bounds: Vec<OnceLock<Option<Vec<NodeBounds>>>>,
    /// The graph's Linear nodes, in the dense network's layer order.
    linear_ids: Vec<usize>,
    max_unstable: usize,
}

impl MilpLeafSolver {
    /// Prepares the solver for `property` on `graph` (a feed-forward ReLU network); leaves with at most
    /// `max_unstable` unstable ReLUs get a MILP (0: LP leaves only, every answer rigorous).
    ///
    /// # Errors
    /// [`MilpError::Unsupported`] when the graph is not a dense ReLU network.
    pub fn new(graph: &Graph, property: &Property, max_unstable: usize) -> Result<Self, MilpError> {
        let unsupported = |why: &str| MilpError::Unsupported {
            node: graph.output().name.clone(),
            op: graph.output().op.kind(),
            why: why.into(),
        };
        DenseReluNet::from_graph(graph)
            .ok_or_else(|| unsupported("leaf solving needs a feed-forward ReLU network"))?;
        Ok(MilpLeafSolver {
            graph: graph.clone(),
            case_bounds: property.cases.iter().map(|_| OnceLock::new()).collect(),
            linear_ids: linear_node_ids(graph),
            max_unstable,
        })
    }

    /// The case's node bounds over its whole box (computed once).
    fn case_bounds(&self, leaf: &Leaf<'_>) -> Option<&Vec<NodeBounds>> {
        self.case_bounds[leaf.case]
            .get_or_init(|| {
                let case = leaf.property.cases.get(leaf.case)?;
                let dense = DenseReluNet::from_graph(&self.graph)?;
                let model = BoundModel::new(&self.graph);
                let (bounds, _) = case_bounds(&self.graph, &model.bounder(), Some(&dense), case);
                check_finite(&self.graph, &bounds).ok()?;
                Some(bounds)
            })
            .as_ref()
    }

    /// The case's node bounds tightened by the leaf's; `None` when they cross (the leaf is empty).
    fn leaf_bounds(&self, case_bounds: &[NodeBounds], leaf: &Leaf<'_>) -> Option<Vec<NodeBounds>> {
        let mut bounds = case_bounds.to_vec();
        for (layer, &id) in leaf.layers.iter().zip(&self.linear_ids) {
            let b = &mut bounds[id];
            for k in 0..b.lower.len() {
                b.lower[k] = b.lower[k].max(layer.lower[k]);
                b.upper[k] = b.upper[k].min(layer.upper[k]);
                if b.lower[k] > b.upper[k] {
                    return None;
                }
            }
        }
        bounds[0] = NodeBounds {
            lower: leaf.input.lower.clone(),
            upper: leaf.input.upper.clone(),
        };
        Some(bounds)
    }
}

/// How one disjunct of a leaf ended.
enum DisjunctAnswer {
    Refuted { rigorous: bool },
    Candidate(Vec<f64>),
    Open,
}

impl MilpLeafSolver {
    fn disjunct(
        &self,
        cm: &CaseModel,
        d: &Conjunction,
        out: &NodeBounds,
        deadline: Instant,
    ) -> Result<DisjunctAnswer, MilpError> {
        let (mut prog, t) = disjunct_program(cm, d);
        // The margin column gets finite bounds from the sound output bounds (the certificate needs them; they
        // cut no optimal point): t* = max_k (c_k·y − rhs_k) lies within them.
        let (lo, hi) = margin_range(out, d);
        prog.cols[t].lower = lo;
        prog.cols[t].upper = hi;
        let limit = deadline.saturating_duration_since(Instant::now());
        let inputs = &cm.net.inputs;
        let point = |cols: &[f64]| inputs.iter().map(|&c| cols[c]).collect::<Vec<f64>>();
        let tol = REL_TOL * margin_scale(out, d).max(1.0);
        if prog.binaries() == 0 {
            let rep = solve::minimize_lp(&prog, limit)?;
            if let Some(ray) = &rep.dual_ray {
                // The fixed phases contradict each other (or the box): the leaf is empty.
                return Ok(if certified_infeasible(&prog, ray) {
                    DisjunctAnswer::Refuted { rigorous: true }
                } else {
                    DisjunctAnswer::Open
                });
            }
            if let Some((obj, cols)) = &rep.primal
                && *obj <= tol
            {
                return Ok(DisjunctAnswer::Candidate(point(cols)));
            }
            let Some(y) = rep.row_duals else {
                return Ok(DisjunctAnswer::Open);
            };
            // HiGHS's sign convention for row duals aside, either y or −y is the useful multiplier.
            let neg: Vec<f64> = y.iter().map(|v| -v).collect();
            let lower = certified_lower_bound(&prog, &y).max(certified_lower_bound(&prog, &neg));
            if std::env::var_os("NNCERT_LEAF_LOG").is_some() {
                eprintln!(
                    "leaf LP: status {:?}, objective {:?}, certified {lower:.6e}",
                    rep.status,
                    rep.primal.as_ref().map(|p| p.0)
                );
            }
            return Ok(if lower > 0.0 {
                DisjunctAnswer::Refuted { rigorous: true }
            } else {
                DisjunctAnswer::Open
            });
        }
        let rep = solve::minimize(&prog, limit, tol)?;
        if std::env::var_os("NNCERT_LEAF_LOG").is_some() {
            eprintln!(
                "leaf MILP: {} binaries, status {:?}, dual bound {:.6e}, primal {:?}, limit {:.2} s",
                prog.binaries(),
                rep.status,
                rep.dual_bound,
                rep.primal.as_ref().map(|p| p.0),
                limit.as_secs_f64()
            );
        }
        if let Some((obj, cols)) = &rep.primal
            && *obj <= tol
        {
            return Ok(DisjunctAnswer::Candidate(point(cols)));
        }
        let refuted = !matches!(
            rep.status,
            highs::HighsModelStatus::Infeasible
                | highs::HighsModelStatus::UnboundedOrInfeasible
                | highs::HighsModelStatus::Unbounded
        ) && rep.dual_bound > tol;
        Ok(if refuted {
            DisjunctAnswer::Refuted { rigorous: false }
        } else {
            DisjunctAnswer::Open
        })
    }
}

/// Bounds on a disjunct's margin `max_k (c_k·y − rhs_k)` from output bounds, widened outward to cover the
/// rounding of the sums.
fn margin_range(out: &NodeBounds, d: &Conjunction) -> (f64, f64) {
    let mut lo = f64::NEG_INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for k in &d.constraints {
        let (mut l, mut u, mut abs) = (-k.rhs, -k.rhs, k.rhs.abs());
        for (j, &c) in k.coeffs.iter().enumerate() {
            let (a, b) = (c * out.lower[j], c * out.upper[j]);
            l += a.min(b);
            u += a.max(b);
            abs += a.abs().max(b.abs());
        }
        let slack = 1e-9 * abs + 1e-12;
        lo = lo.max(l - slack);
        hi = hi.max(u + slack);
    }
    (lo, hi)
}

impl LeafSolver for MilpLeafSolver {
    fn max_unstable(&self) -> usize {
        self.max_unstable
    }

    fn describe(&self) -> String {
        if self.max_unstable == 0 {
            "HiGHS LP leaves (refutations certified from the duals with rounding-error terms)"
                .into()
        } else {
            format!(
                "HiGHS LP/MILP leaves (≤ {} unstable ReLUs; LP refutations certified from the duals, MILP \
                 ones up to HiGHS tolerances)",
                self.max_unstable
            )
        }
    }

    fn solve(&self, leaf: &Leaf<'_>) -> LeafAnswer {
        let Some(case) = leaf.property.cases.get(leaf.case) else {
            return LeafAnswer::Unknown;
        };
        // A network with a ReLU on its outputs has one more (identity) layer than Linear nodes: its bounds are
        // the output ReLU's, which the encoding derives itself.
        if leaf.case >= self.case_bounds.len() || leaf.layers.len() < self.linear_ids.len() {
            return LeafAnswer::Unknown;
        }
        let Some(case_bounds) = self.case_bounds(leaf) else {
            return LeafAnswer::Unknown;
        };
        let Some(bounds) = self.leaf_bounds(case_bounds, leaf) else {
            // Two sound bounds crossing: no point of the box lies in this leaf.
            return LeafAnswer::Refuted { rigorous: true };
        };
        let net: NetEncoding = match encode::encode(&self.graph, &bounds) {
            Ok(n) => n,
            Err(_) => return LeafAnswer::Unknown,
        };
        let out = bounds[self.graph.output_id().0].clone();
        let cm = CaseModel { net, bounds };
        let mut rigorous = true;
        for &di in leaf.disjuncts {
            let Some(d) = case.output.disjuncts.get(di) else {
                return LeafAnswer::Unknown;
            };
            let ans = self.disjunct(&cm, d, &out, leaf.deadline);
            if std::env::var_os("NNCERT_LEAF_LOG").is_some() {
                eprintln!(
                    "leaf: case {} disjunct {di}, {} unstable: {}",
                    leaf.case,
                    leaf.unstable,
                    match &ans {
                        Ok(DisjunctAnswer::Refuted { rigorous }) =>
                            format!("refuted (rigorous {rigorous})"),
                        Ok(DisjunctAnswer::Candidate(_)) => "candidate".into(),
                        Ok(DisjunctAnswer::Open) => "open".into(),
                        Err(e) => format!("error: {e}"),
                    }
                );
            }
            match ans {
                Ok(DisjunctAnswer::Refuted { rigorous: r }) => rigorous &= r,
                Ok(DisjunctAnswer::Candidate(x)) => return LeafAnswer::Candidate(x),
                Ok(DisjunctAnswer::Open) | Err(_) => return LeafAnswer::Unknown,
            }
        }
        LeafAnswer::Refuted { rigorous }
    }
}

/// The HiGHS leaf solver for `property` when `graph` is a feed-forward ReLU network that can be encoded, else
/// `None` (the search then runs without one).
pub fn leaf_solver_for(
    graph: &Graph,
    property: &Property,
    max_unstable: usize,
) -> Option<std::sync::Arc<dyn LeafSolver>> {
    let solver = MilpLeafSolver::new(graph, property, max_unstable).ok()?;
    Some(std::sync::Arc::new(solver))
}
