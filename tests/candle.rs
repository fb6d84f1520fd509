//! The candle integration (`--features candle`): a lossc loss inside candle's autograd.
//! Gradients through `Tensor::backward` must equal lossc's own gradient chained with the
//! upstream gradient, and central finite differences of the loss; a tiny candle model
//! must train with it; bad operands must be errors, never panics.

use candle_core::{DType, Device, Tensor, Var};
use lossc::candle::LossOp;
use lossc::{Arg, CallOptions, Dtype, Loss, LossBuilder, Outputs, ReduceMode};

/// Deterministic numbers in [lo, hi).
fn numbers(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            lo + (hi - lo) * ((x >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

fn f64_loss(name: &str) -> Loss {
    LossBuilder::new().dtype(Dtype::F64).stdlib(name).expect("stdlib loss")
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: got {g}, want {w}");
    }
}

/// Central finite differences of the reduced loss with respect to `p`.
fn finite_differences(loss: &Loss, p: &[f64], target: &[f64], rows: usize) -> Vec<f64> {
    let value = |p: &[f64]| {
        let opts = CallOptions { rows: Some(rows), ..CallOptions::default() };
        let args = [Arg::values("input", p), Arg::values("target", target)];
        loss.call_with(&args, &opts, &mut Outputs::default()).expect("valid call")
    };
    (0..p.len())
        .map(|i| {
            let h = 1e-6 * (1.0 + p[i].abs());
            let (mut up, mut down) = (p.to_vec(), p.to_vec());
            up[i] += h;
            down[i] -= h;
            (value(&up) - value(&down)) / (2.0 * h)
        })
        .collect()
}

#[test]
fn backward_equals_lossc_gradient_and_finite_differences() -> candle_core::Result<()> {
    let loss = f64_loss("torch/binary_cross_entropy_with_logits");
    let op = LossOp::new(&loss, "input", "target").expect("one pred, one target");
    let (rows, classes) = (4, 5);
    let p = numbers(rows * classes, 1, -3.0, 3.0);
    let y: Vec<f64> = numbers(rows * classes, 2, 0.0, 1.0).iter().map(|v| v.round()).collect();
    let pred = Var::from_tensor(&Tensor::from_vec(p.clone(), (rows, classes), &Device::Cpu)?)?;
    let target = Tensor::from_vec(y.clone(), (rows, classes), &Device::Cpu)?;
    let value = op.apply(pred.as_tensor(), &target)?;
    // Chain through another candle op: d(2.5·L)/dp = 2.5·dL/dp.
    let grads = (value.clone() * 2.5)?.backward()?;
    let got = grads.get(pred.as_tensor()).expect("pred has a gradient").flatten_all()?.to_vec1::<f64>()?;
    let mut want = vec![0.0; p.len()];
    let args = [Arg::values("input", &p), Arg::values("target", &y)];
    let opts = CallOptions { rows: Some(rows), ..CallOptions::default() };
    let direct = loss.call_with(&args, &opts, &mut Outputs { grad: &mut [&mut want], ..Outputs::default() });
    assert_eq!(value.to_scalar::<f64>()?, direct.expect("valid call"));
    let scaled: Vec<f64> = want.iter().map(|g| 2.5 * g).collect();
    assert_close("candle vs lossc", &got, &scaled, 1e-15);
    let fd: Vec<f64> = finite_differences(&loss, &p, &y, rows).iter().map(|g| 2.5 * g).collect();
    assert_close("candle vs finite differences", &got, &fd, 1e-6);
    Ok(())
}

#[test]
fn reduce_none_takes_the_upstream_gradient() -> candle_core::Result<()> {
    let loss = f64_loss("torch/huber_loss");
    let op = LossOp::new(&loss, "input", "target").expect("valid").reduce(ReduceMode::None);
    let n = 12;
    let (p, y, w) = (numbers(n, 3, -3.0, 3.0), numbers(n, 4, -1.0, 1.0), numbers(n, 5, 0.0, 2.0));
    let pred = Var::new(p.as_slice(), &Device::Cpu)?;
    let per_item = op.apply(pred.as_tensor(), &Tensor::new(y.as_slice(), &Device::Cpu)?)?;
    assert_eq!(per_item.dims(), [n]);
    // Σ w·l: the upstream gradient of the per-item losses is w.
    let total = (per_item * Tensor::new(w.as_slice(), &Device::Cpu)?)?.sum_all()?;
    let got = total.backward()?.get(pred.as_tensor()).expect("a gradient").to_vec1::<f64>()?;
    let mut want = vec![0.0; n];
    let mut items = vec![0.0; n];
    let opts = CallOptions { reduce: Some(ReduceMode::None), upstream: Some(&w), ..CallOptions::default() };
    let mut out = Outputs { grad: &mut [&mut want], hess: &mut [], loss_items: Some(&mut items) };
    loss.call_with(&[Arg::values("input", &p), Arg::values("target", &y)], &opts, &mut out).expect("valid");
    assert_close("reduce none", &got, &want, 1e-15);
    Ok(())
}

#[test]
fn class_index_targets_of_any_integer_dtype() -> candle_core::Result<()> {
    let loss = f64_loss("torch/cross_entropy");
    let op = LossOp::new(&loss, "input", "target").expect("valid");
    let (rows, classes) = (6, 4);
    let p = numbers(rows * classes, 6, -2.0, 2.0);
    let k: Vec<i64> = (0..rows as i64).map(|r| (r * 3) % classes as i64).collect();
    let mut want = vec![0.0; p.len()];
    let opts = CallOptions { rows: Some(rows), ..CallOptions::default() };
    let direct = loss
        .call_with(
            &[Arg::values("input", &p), Arg::i64("target", &k)],
            &opts,
            &mut Outputs { grad: &mut [&mut want], ..Outputs::default() },
        )
        .expect("valid");
    for dtype in [DType::I64, DType::U32, DType::U8] {
        let pred = Var::from_tensor(&Tensor::from_vec(p.clone(), (rows, classes), &Device::Cpu)?)?;
        let target = Tensor::new(k.as_slice(), &Device::Cpu)?.to_dtype(dtype)?;
        let value = op.apply(pred.as_tensor(), &target)?;
        assert_eq!(value.to_scalar::<f64>()?, direct, "{dtype:?}");
        let got = value.backward()?.get(pred.as_tensor()).expect("a gradient").flatten_all()?.to_vec1::<f64>()?;
        assert_close(&format!("{dtype:?} targets"), &got, &want, 1e-15);
    }
    Ok(())
}

/// Logistic regression in candle: logits from a candle matmul, loss and its gradient
/// from lossc, parameters updated by plain SGD on candle's gradients.
#[test]
fn a_candle_model_trains_with_a_lossc_loss() -> candle_core::Result<()> {
    let loss = Loss::stdlib("torch/binary_cross_entropy_with_logits").expect("stdlib loss");
    let op = LossOp::new(&loss, "input", "target").expect("valid");
    let n = 256;
    // Two features; the label is 1 when 1.5·x0 − x1 + 0.25 > 0.
    let x: Vec<f32> = numbers(2 * n, 7, -2.0, 2.0).iter().map(|v| *v as f32).collect();
    let y: Vec<f32> = (0..n).map(|i| f32::from(u8::from(1.5 * x[2 * i] - x[2 * i + 1] + 0.25 > 0.0))).collect();
    let xs = Tensor::from_vec(x, (n, 2), &Device::Cpu)?;
    let ys = Tensor::from_vec(y, n, &Device::Cpu)?;
    let w = Var::zeros((2, 1), DType::F32, &Device::Cpu)?;
    let b = Var::zeros(1, DType::F32, &Device::Cpu)?;
    let mut losses = Vec::new();
    for _ in 0..200 {
        let logits = xs.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?.flatten_all()?;
        let value = op.apply(&logits, &ys)?;
        losses.push(value.to_scalar::<f32>()?);
        let grads = value.backward()?;
        for var in [&w, &b] {
            let g = grads.get(var.as_tensor()).expect("a gradient");
            var.set(&(var.as_tensor() - (g * 1.0)?)?)?;
        }
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!((first - std::f32::consts::LN_2).abs() < 1e-6, "starts at ln 2, got {first}");
    assert!(last < 0.25 * first, "the loss fell only from {first} to {last}");
    Ok(())
}

#[test]
fn bad_operands_are_errors() -> candle_core::Result<()> {
    let loss = Loss::stdlib("torch/mse_loss").expect("stdlib loss");
    let op = LossOp::new(&loss, "input", "target").expect("valid");
    let p = Tensor::new(&[1.0f64, 2.0], &Device::Cpu)?; // f64 data for an f32 loss
    assert!(op.apply(&p, &p).is_err());
    let p = Tensor::new(&[1.0f32, 2.0], &Device::Cpu)?;
    let y = Tensor::new(&[1.0f32, 2.0, 3.0], &Device::Cpu)?; // lengths differ
    let err = op.apply(&p, &y).expect_err("a length mismatch");
    assert!(err.to_string().contains("lossc") || err.to_string().contains("input"), "{err}");
    assert!(LossOp::new(&loss, "target", "input").is_err());
    assert!(LossOp::new(&loss, "input", "nothing").is_err());
    Ok(())
}
