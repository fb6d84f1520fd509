//! The standard library: the `.loss` files under `losses/`, compiled in, by name.
//!
//! The list is kept by hand (build.rs only runs lalrpop); a tidy test checks that it
//! names every file under `losses/` and nothing else.

/// Every standard-library loss: (name, source text), sorted by name.
pub const LOSSES: &[(&str, &str)] = &[
    ("torch/binary_cross_entropy", include_str!("../losses/torch/binary_cross_entropy.loss")),
    ("torch/binary_cross_entropy_with_logits", include_str!("../losses/torch/binary_cross_entropy_with_logits.loss")),
    ("torch/cosine_embedding_loss", include_str!("../losses/torch/cosine_embedding_loss.loss")),
    ("torch/cross_entropy", include_str!("../losses/torch/cross_entropy.loss")),
    ("torch/cross_entropy_probs", include_str!("../losses/torch/cross_entropy_probs.loss")),
    ("torch/gaussian_nll_loss", include_str!("../losses/torch/gaussian_nll_loss.loss")),
    ("torch/hinge_embedding_loss", include_str!("../losses/torch/hinge_embedding_loss.loss")),
    ("torch/huber_loss", include_str!("../losses/torch/huber_loss.loss")),
    ("torch/kl_div", include_str!("../losses/torch/kl_div.loss")),
    ("torch/l1_loss", include_str!("../losses/torch/l1_loss.loss")),
    ("torch/margin_ranking_loss", include_str!("../losses/torch/margin_ranking_loss.loss")),
    ("torch/mse_loss", include_str!("../losses/torch/mse_loss.loss")),
    ("torch/multilabel_soft_margin_loss", include_str!("../losses/torch/multilabel_soft_margin_loss.loss")),
    ("torch/nll_loss", include_str!("../losses/torch/nll_loss.loss")),
    ("torch/poisson_nll_loss", include_str!("../losses/torch/poisson_nll_loss.loss")),
    ("torch/smooth_l1_loss", include_str!("../losses/torch/smooth_l1_loss.loss")),
    ("torch/soft_margin_loss", include_str!("../losses/torch/soft_margin_loss.loss")),
    ("keras/binary_crossentropy", include_str!("../losses/keras/binary_crossentropy.loss")),
    ("keras/categorical_crossentropy", include_str!("../losses/keras/categorical_crossentropy.loss")),
    ("keras/categorical_hinge", include_str!("../losses/keras/categorical_hinge.loss")),
    ("keras/cosine_similarity", include_str!("../losses/keras/cosine_similarity.loss")),
    ("keras/hinge", include_str!("../losses/keras/hinge.loss")),
    ("keras/huber", include_str!("../losses/keras/huber.loss")),
    ("keras/kl_divergence", include_str!("../losses/keras/kl_divergence.loss")),
    ("keras/log_cosh", include_str!("../losses/keras/log_cosh.loss")),
    ("keras/mean_absolute_error", include_str!("../losses/keras/mean_absolute_error.loss")),
    ("keras/mean_absolute_percentage_error", include_str!("../losses/keras/mean_absolute_percentage_error.loss")),
    ("keras/mean_squared_error", include_str!("../losses/keras/mean_squared_error.loss")),
    ("keras/mean_squared_logarithmic_error", include_str!("../losses/keras/mean_squared_logarithmic_error.loss")),
    ("keras/poisson", include_str!("../losses/keras/poisson.loss")),
    ("keras/sparse_categorical_crossentropy", include_str!("../losses/keras/sparse_categorical_crossentropy.loss")),
    ("keras/squared_hinge", include_str!("../losses/keras/squared_hinge.loss")),
];

/// The source of the standard-library loss `name` (e.g. `torch/mse_loss`).
pub fn source(name: &str) -> Option<&'static str> {
    LOSSES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Every name, in order.
pub fn names() -> impl Iterator<Item = &'static str> {
    LOSSES.iter().map(|(n, _)| *n)
}
