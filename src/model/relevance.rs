//! Layer-wise relevance propagation's rules (Bach et al. 2015; Montavon et al.
//! 2019), as plain data that a probe carries, and what each rule does to the
//! relevance arriving at a layer.
//!
//! In a relevance pass ([`super::Probe::relevance`]) the backward pass carries
//! relevance, not gradients, as Zennit does: every convolution and fully connected
//! layer `z = W x + b` hands its input `R_in` from the `R` at its output by its
//! rule; a rectifier passes `R` on unchanged; a residual sum and an average pool
//! share it in proportion to their inputs' contributions; a max pool sends it to
//! the maximum (its gradient). With `s = R / stab(z)`, `stab(z) = z + ε·sign(z)`
//! (`sign(0) = 1`), `x⁺ = max(x, 0)`, `x⁻ = min(x, 0)`, `W⁺`, `W⁻` likewise:
//!
//! | rule | `R_in` |
//! |---|---|
//! | ε | `x ⊙ Wᵀ s` |
//! | z⁺ | `x⁺ ⊙ W⁺ᵀ s + x⁻ ⊙ W⁻ᵀ s`, `z = W⁺x⁺ + W⁻x⁻ + b⁺` |
//! | αβ | `α (x⁺ ⊙ W⁺ᵀ s₊ + x⁻ ⊙ W⁻ᵀ s₊) − β (x⁺ ⊙ W⁻ᵀ s₋ + x⁻ ⊙ W⁺ᵀ s₋)`, `z₊ = W⁺x⁺ + W⁻x⁻ + b⁺`, `z₋ = W⁻x⁺ + W⁺x⁻ + b⁻` |
//! | γ | `x⁺ ⊙ (Aᵀ s₊ + Bᵀ s₋) + x⁻ ⊙ (Bᵀ s₊ + Aᵀ s₋)`, `A = W + γW⁺`, `B = W + γW⁻`, `s₊ = [z>0] R / stab(Ax⁺ + Bx⁻ + b + γb⁺)`, `s₋ = [z<0] R / stab(Bx⁺ + Ax⁻ + b + γb⁻)` |
//! | zᴮ | `x ⊙ Wᵀ s − l ⊙ W⁺ᵀ s − h ⊙ W⁻ᵀ s`, `z = W x − W⁺ l − W⁻ h`, inputs within `[l, h]` |
//! | flat | `1ᵀ s`, `z = 1 · 1`: shared evenly over the receptive field |
//! | norm (sums, average pools) | `x ⊙ ∂zᵀ s` |
//!
//! What each rule does to a tensor is the (private) `propagate` module's. These are Zennit
//! 1.0's rules term for term (`Epsilon`, `ZPlus`, `AlphaBeta`,
//! `Gamma` in its generalized form for signed inputs, `ZBox`, `Flat`, `Norm`), so
//! that the maps match it; the composites pick a rule per layer as Zennit's of the
//! same names do. Batch norm is folded into the convolution before it, as Zennit's
//! canonizers fold it, because the engine's fast path already runs the two as one.

/// A rule for one layer `z = W x + b`.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// LRP-ε: `ε` added to the denominator with its sign.
    Epsilon(f64),
    /// z⁺: positive contributions only (αβ with α = 1, β = 0).
    ZPlus,
    /// αβ: positive contributions weighted by `α`, negative ones by `β`.
    AlphaBeta {
        /// The weight of positive contributions.
        alpha: f64,
        /// The weight of negative contributions.
        beta: f64,
    },
    /// γ: positive weights favoured by `γ`.
    Gamma(f64),
    /// zᴮ: for an input bounded per channel by `low` and `high`.
    ZBox {
        /// The least value of each channel.
        low: Vec<f64>,
        /// The greatest value of each channel.
        high: Vec<f64>,
    },
    /// Flat: relevance spread evenly over the receptive field.
    Flat,
}

/// How rules are chosen per layer: for the layer that reads the input, for the
/// other convolutions, and for fully connected layers, as Zennit's composites of the
/// same names choose them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Composite {
    /// Flat first, z⁺ for convolutions, ε for fully connected layers.
    #[default]
    EpsilonPlusFlat,
    /// zᴮ first, γ for convolutions, ε for fully connected layers.
    EpsilonGammaBox,
    /// Flat first, αβ (α = 2, β = 1) for convolutions, ε for fully connected layers.
    EpsilonAlpha2Beta1Flat,
    /// z⁺ for convolutions, ε for fully connected layers, the first as the others.
    EpsilonPlus,
}

impl Composite {
    /// Every composite, in the order help lists them.
    pub const ALL: &'static [Self] = &[
        Self::EpsilonPlusFlat,
        Self::EpsilonGammaBox,
        Self::EpsilonAlpha2Beta1Flat,
        Self::EpsilonPlus,
    ];

    /// Its name on the command line (Zennit's, in kebab case).
    pub fn name(self) -> &'static str {
        match self {
            Self::EpsilonPlusFlat => "epsilon-plus-flat",
            Self::EpsilonGammaBox => "epsilon-gamma-box",
            Self::EpsilonAlpha2Beta1Flat => "epsilon-alpha2-beta1-flat",
            Self::EpsilonPlus => "epsilon-plus",
        }
    }

    /// The composite called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.name() == name)
    }
}

/// A relevance pass's rules: the composite and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Relevance {
    /// Which rule each layer follows.
    pub composite: Composite,
    /// The ε of fully connected layers.
    pub epsilon: f64,
    /// The γ of [`Composite::EpsilonGammaBox`].
    pub gamma: f64,
    /// The input's bounds per channel, for zᴮ.
    pub bounds: (Vec<f64>, Vec<f64>),
    /// Whether the rules leave biases out (Zennit's `zero_params=['bias']`): then
    /// no relevance is absorbed by biases, and a map sums to its target's value
    /// within the stabilizers.
    pub without_bias: bool,
}

/// Which kind of layer a rule is chosen for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerRole {
    /// A convolution.
    Conv,
    /// A fully connected layer.
    Dense,
}

impl Relevance {
    /// The rule of a layer of `role`; `first` for the layer that reads the input.
    pub fn rule(&self, role: LayerRole, first: bool) -> Rule {
        let epsilon = Rule::Epsilon(self.epsilon);
        let (low, high) = self.bounds.clone();
        match (self.composite, role, first) {
            (Composite::EpsilonPlusFlat | Composite::EpsilonAlpha2Beta1Flat, _, true) => Rule::Flat,
            (Composite::EpsilonGammaBox, LayerRole::Conv, true) => Rule::ZBox { low, high },
            (_, LayerRole::Dense, _) => epsilon,
            (Composite::EpsilonPlusFlat | Composite::EpsilonPlus, LayerRole::Conv, _) => {
                Rule::ZPlus
            }
            (Composite::EpsilonGammaBox, LayerRole::Conv, _) => Rule::Gamma(self.gamma),
            (Composite::EpsilonAlpha2Beta1Flat, LayerRole::Conv, _) => Rule::AlphaBeta {
                alpha: 2.0,
                beta: 1.0,
            },
        }
    }
}
