//! A lossc loss inside candle's autograd: logistic regression whose logits come from a
//! candle matmul and whose loss (`torch/binary_cross_entropy_with_logits`, from lossc's
//! standard library) is a node of the same graph, so `backward()` reaches the weights.
//!
//!     cargo run --release --features candle --example candle_trainer

use candle_core::{DType, Device, Tensor, Var};
use lossc::candle::LossOp;
use lossc::Loss;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let op = LossOp::new(&Loss::stdlib("torch/binary_cross_entropy_with_logits")?, "input", "target")?;
    // Synthetic data: two features, label 1 when 1.5·x0 − x1 + 0.25 > 0.
    let n = 512;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        4.0 * ((state >> 40) as f32 / (1u64 << 24) as f32) - 2.0
    };
    let x: Vec<f32> = (0..2 * n).map(|_| uniform()).collect();
    let y: Vec<f32> = (0..n).map(|i| f32::from(u8::from(1.5 * x[2 * i] - x[2 * i + 1] + 0.25 > 0.0))).collect();
    let xs = Tensor::from_vec(x, (n, 2), &Device::Cpu)?;
    let ys = Tensor::from_vec(y, n, &Device::Cpu)?;
    let w = Var::zeros((2, 1), DType::F32, &Device::Cpu)?;
    let b = Var::zeros(1, DType::F32, &Device::Cpu)?;
    for step in 0..=100 {
        let logits = xs.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?.flatten_all()?;
        let loss = op.apply(&logits, &ys)?;
        if step % 20 == 0 {
            println!("step {step:3}  loss {:.4}", loss.to_scalar::<f32>()?);
        }
        let grads = loss.backward()?;
        for var in [&w, &b] {
            if let Some(g) = grads.get(var.as_tensor()) {
                var.set(&(var.as_tensor() - g)?)?;
            }
        }
    }
    println!("w = {:?}, b = {:?}", w.as_tensor().flatten_all()?.to_vec1::<f32>()?, b.as_tensor().to_vec1::<f32>()?);
    Ok(())
}
