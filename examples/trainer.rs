//! A complete small trainer in plain Rust: a one-hidden-layer MLP classifies three noisy
//! clusters of 2-D points that it synthesises. The loss (and its gradient with respect to
//! the logits) comes from `examples/trainer.loss`, compiled once by lossc and called every
//! step; the rest of backpropagation is written out by hand. Nothing is allocated inside
//! the training loop: every buffer is made once and reused.
//!
//!     cargo run --release --example trainer
//!
//! `tests/examples.rs` runs the same `train` function and checks that the loss falls.

use lossc::{Arg, CallOptions, Loss, LossBuilder, Outputs};

/// Classes, hidden units, samples, minibatch size.
const C: usize = 3;
const H: usize = 16;
const N: usize = 600;
const BATCH: usize = 40;
const LEARNING_RATE: f32 = 0.05;

/// What a training run reports.
pub struct Report {
    /// Mean loss over the samples before training.
    pub initial_loss: f32,
    /// Mean training loss of each epoch.
    pub epoch_losses: Vec<f32>,
    /// Fraction of the samples classified correctly after training.
    pub accuracy: f32,
}

/// A tiny deterministic generator (xorshift), so the example needs no crates.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Roughly normal: the sum of four uniforms, centred and scaled.
    fn normal(&mut self) -> f32 {
        ((0..4).map(|_| self.uniform()).sum::<f32>() - 2.0) * 1.7
    }
}

/// Three overlapping clusters on a circle of radius 2, with noise of scale 0.9.
fn synthesise(rng: &mut Rng) -> (Vec<f32>, Vec<i64>) {
    let mut x = Vec::with_capacity(2 * N);
    let mut k = Vec::with_capacity(N);
    for i in 0..N {
        let class = i % C;
        let angle = class as f32 * std::f32::consts::TAU / C as f32;
        x.push(2.0 * angle.cos() + 0.9 * rng.normal());
        x.push(2.0 * angle.sin() + 0.9 * rng.normal());
        k.push(class as i64);
    }
    (x, k)
}

/// The MLP's parameters: 2 → H (tanh) → C.
struct Mlp {
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

/// Activations and gradients of one minibatch, allocated once.
struct Buffers {
    x: Vec<f32>,
    k: Vec<i64>,
    hidden: Vec<f32>,
    logits: Vec<f32>,
    dlogits: Vec<f32>,
    dhidden: Vec<f32>,
}

impl Mlp {
    fn new(rng: &mut Rng) -> Mlp {
        let mut init = |n: usize, scale: f32| (0..n).map(|_| scale * (2.0 * rng.uniform() - 1.0)).collect();
        Mlp { w1: init(2 * H, 0.8), b1: vec![0.0; H], w2: init(H * C, 0.4), b2: vec![0.0; C] }
    }

    /// Fills `b.hidden` and `b.logits` for the `rows` samples in `b.x`.
    fn forward(&self, b: &mut Buffers, rows: usize) {
        for r in 0..rows {
            for j in 0..H {
                let z = self.b1[j] + b.x[2 * r] * self.w1[j] + b.x[2 * r + 1] * self.w1[H + j];
                b.hidden[r * H + j] = z.tanh();
            }
            for c in 0..C {
                let mut z = self.b2[c];
                for j in 0..H {
                    z += b.hidden[r * H + j] * self.w2[j * C + c];
                }
                b.logits[r * C + c] = z;
            }
        }
    }

    /// One SGD step from ∂L/∂logits in `b.dlogits` (already divided by the batch size,
    /// since the loss reduces with `mean`).
    fn backward_and_step(&mut self, b: &mut Buffers, rows: usize, lr: f32) {
        for r in 0..rows {
            for j in 0..H {
                let mut d = 0.0;
                for c in 0..C {
                    d += b.dlogits[r * C + c] * self.w2[j * C + c];
                }
                let h = b.hidden[r * H + j];
                b.dhidden[r * H + j] = d * (1.0 - h * h);
            }
        }
        for r in 0..rows {
            for c in 0..C {
                let g = b.dlogits[r * C + c];
                self.b2[c] -= lr * g;
                for j in 0..H {
                    self.w2[j * C + c] -= lr * b.hidden[r * H + j] * g;
                }
            }
            for j in 0..H {
                let g = b.dhidden[r * H + j];
                self.b1[j] -= lr * g;
                self.w1[j] -= lr * b.x[2 * r] * g;
                self.w1[H + j] -= lr * b.x[2 * r + 1] * g;
            }
        }
    }
}

/// The loss of `examples/trainer.loss`, with its label smoothing set to `smoothing`.
pub fn trainer_loss(smoothing: f64) -> Result<Loss, lossc::Error> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/trainer.loss");
    LossBuilder::new().param("smoothing", smoothing).file(path)
}

/// Trains for `epochs` epochs, printing the loss every `print_every` epochs (0: never).
pub fn train(epochs: usize, print_every: usize) -> Result<Report, lossc::Error> {
    let loss = trainer_loss(0.05)?;
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let (x, k) = synthesise(&mut rng);
    let mut mlp = Mlp::new(&mut rng);
    let mut b = Buffers {
        x: vec![0.0; 2 * BATCH],
        k: vec![0; BATCH],
        hidden: vec![0.0; BATCH * H],
        logits: vec![0.0; BATCH * C],
        dlogits: vec![0.0; BATCH * C],
        dhidden: vec![0.0; BATCH * H],
    };
    let (initial_loss, _) = evaluate(&loss, &mlp, &mut b, &x, &k)?;
    if print_every > 0 {
        println!("before    loss {initial_loss:.4}");
    }
    let mut order: Vec<usize> = (0..N).collect();
    let mut epoch_losses = Vec::with_capacity(epochs);
    for epoch in 0..epochs {
        // Shuffle (Fisher–Yates) and walk the minibatches.
        for i in (1..N).rev() {
            order.swap(i, (rng.uniform() * (i + 1) as f32) as usize % (i + 1));
        }
        let mut total = 0.0;
        for batch in order.chunks(BATCH) {
            let rows = batch.len();
            for (r, &s) in batch.iter().enumerate() {
                b.x[2 * r..2 * r + 2].copy_from_slice(&x[2 * s..2 * s + 2]);
                b.k[r] = k[s];
            }
            mlp.forward(&mut b, rows);
            // The lossc call: value, and ∂L/∂logits written into the reused buffer.
            let args = [Arg::values("logits", &b.logits[..rows * C]), Arg::i64("class", &b.k[..rows])];
            let opts = CallOptions { rows: Some(rows), ..CallOptions::default() };
            let mut out = Outputs { grad: &mut [&mut b.dlogits[..rows * C]], ..Outputs::default() };
            total += loss.call_with(&args, &opts, &mut out)? * rows as f32;
            mlp.backward_and_step(&mut b, rows, LEARNING_RATE);
        }
        let mean = total / N as f32;
        epoch_losses.push(mean);
        if print_every > 0 && (epoch % print_every == 0 || epoch + 1 == epochs) {
            println!("epoch {epoch:3}  loss {mean:.4}");
        }
    }
    let (_, accuracy) = evaluate(&loss, &mlp, &mut b, &x, &k)?;
    Ok(Report { initial_loss, epoch_losses, accuracy })
}

/// Mean loss and accuracy over all samples, one minibatch-sized slice at a time.
fn evaluate(loss: &Loss, mlp: &Mlp, b: &mut Buffers, x: &[f32], k: &[i64]) -> Result<(f32, f32), lossc::Error> {
    let (mut total, mut correct) = (0.0, 0);
    for start in (0..N).step_by(BATCH) {
        let rows = BATCH.min(N - start);
        b.x[..2 * rows].copy_from_slice(&x[2 * start..2 * (start + rows)]);
        mlp.forward(b, rows);
        let args = [Arg::values("logits", &b.logits[..rows * C]), Arg::i64("class", &k[start..start + rows])];
        let opts = CallOptions { rows: Some(rows), ..CallOptions::default() };
        total += loss.call_with(&args, &opts, &mut Outputs::default())? * rows as f32;
        for r in 0..rows {
            let row = &b.logits[r * C..(r + 1) * C];
            let best = (0..C).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap_or(0);
            correct += usize::from(best as i64 == k[start + r]);
        }
    }
    Ok((total / N as f32, correct as f32 / N as f32))
}

#[allow(dead_code)] // `tests/examples.rs` includes this file for `train` alone.
fn main() -> Result<(), lossc::Error> {
    let loss = trainer_loss(0.05)?;
    println!("loss from examples/trainer.loss ({} inputs, dtype {})", loss.program().inputs.len(), loss.dtype().name());
    let report = train(30, 5)?;
    println!("accuracy {:.1}%", 100.0 * report.accuracy);
    Ok(())
}
