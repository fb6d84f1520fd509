//! The examples as tests: the plain-Rust trainer (`examples/trainer.rs`, included here so
//! the test runs the very code `cargo run --example trainer` runs) must make its loss fall
//! and learn its synthetic clusters.

#[path = "../examples/trainer.rs"]
mod trainer;

#[test]
fn the_trainer_loss_falls_and_the_model_learns() {
    let report = trainer::train(30, 0).expect("the trainer runs");
    let losses = &report.epoch_losses;
    let (first, last) = (report.initial_loss, losses[losses.len() - 1]);
    // Three balanced classes and small initial weights start near ln 3 ≈ 1.10.
    assert!(first > 0.8, "initial loss {first}");
    assert!(last < 0.5 * first, "the loss fell only from {first} to {last}: {losses:?}");
    // Falling on the whole: the last epochs are below the first ones.
    assert!(losses[losses.len() - 5..].iter().all(|l| *l < losses[0]), "{losses:?}");
    assert!(report.accuracy > 0.8, "accuracy {}", report.accuracy);
}

/// A parameter override that breaks the file's `require` is an error carrying the span.
#[test]
fn the_trainer_loss_checks_its_parameter() {
    let err = trainer::trainer_loss(1.5).expect_err("smoothing 1.5 is out of range");
    assert!(err.to_string().contains("smoothing must be in [0, 1)"), "{err}");
    assert!(err.to_string().contains("trainer.loss:"), "{err}");
}
