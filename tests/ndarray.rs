//! `ndarray` views as inputs and gradient buffers (`--features ndarray`): the same results
//! as the slice API, rows and B from the shapes, and non-contiguous views rejected with a
//! clear error rather than copied.

use lossc::{Arg, CallOptions, ErrorKind, Loss, Outputs};
use ndarray::{Array1, Array2, Array3, Axis};

#[test]
fn views_give_the_slice_api_results() {
    let loss = Loss::stdlib("torch/cross_entropy").expect("stdlib loss");
    // [2, 3, 4]: 6 rows of 4 classes (every leading axis is a row axis).
    let logits = Array3::from_shape_fn((2, 3, 4), |(a, b, c)| (a as f32) - 0.5 * (b as f32) + 0.25 * (c as f32));
    let target = Array2::from_shape_fn((2, 3), |(a, b)| ((a + 2 * b) % 4) as f32);
    let mut grad = Array3::<f32>::zeros((2, 3, 4)).into_dyn();
    let value = loss
        .call_ndarray(
            &[("input", logits.view().into_dyn()), ("target", target.view().into_dyn())],
            &mut [grad.view_mut()],
        )
        .expect("valid call");
    let mut want = vec![0.0f32; 24];
    let args = [
        Arg::values("input", logits.as_slice().expect("contiguous")),
        Arg::values("target", target.as_slice().expect("contiguous")),
    ];
    let opts = CallOptions { rows: Some(6), ..CallOptions::default() };
    let direct = loss.call_with(&args, &opts, &mut Outputs { grad: &mut [&mut want], ..Outputs::default() });
    assert_eq!(value, direct.expect("valid call"));
    assert_eq!(grad.as_slice().expect("contiguous"), &want[..]);
}

#[test]
fn batchmean_takes_b_from_axis_0() {
    let loss = Loss::new("pred p\ntarget y\nreduce batchmean\n(p - y)^2").expect("valid");
    let p = Array2::from_shape_fn((4, 5), |(i, j)| (i * 5 + j) as f32 * 0.1);
    let y = Array2::<f32>::zeros((4, 5));
    let mut grad = Array2::<f32>::zeros((4, 5)).into_dyn();
    let value = loss
        .call_ndarray(&[("p", p.view().into_dyn()), ("y", y.view().into_dyn())], &mut [grad.view_mut()])
        .expect("valid call");
    let sum: f32 = p.iter().map(|v| v * v).sum();
    assert!((value - sum / 4.0).abs() < 1e-5, "{value} vs {}", sum / 4.0);
}

#[test]
fn non_contiguous_views_are_errors() {
    let loss = Loss::new("(p - y)^2").expect("valid");
    let p = Array2::<f32>::ones((3, 4));
    let y = Array2::<f32>::zeros((3, 4));
    let transposed = p.t();
    let err = loss
        .call_ndarray(&[("p", transposed.into_dyn()), ("y", y.view().into_dyn())], &mut [])
        .expect_err("a transposed view");
    assert_eq!(err.kind(), ErrorKind::Data);
    assert!(err.to_string().contains("not contiguous"), "{err}");
    let mut grad = Array2::<f32>::zeros((4, 3));
    let mut gt = grad.view_mut().reversed_axes().into_dyn();
    let err = loss
        .call_ndarray(&[("p", p.view().into_dyn()), ("y", y.view().into_dyn())], &mut [gt.view_mut()])
        .expect_err("a transposed gradient");
    assert!(err.to_string().contains("gradient of `p` is not contiguous"), "{err}");
    // A strided 1-D view (every other element) is rejected too.
    let long = Array1::<f32>::ones(8);
    let every_other = long.slice_axis(Axis(0), ndarray::Slice::new(0, None, 2));
    assert!(loss.call_ndarray(&[("p", every_other.into_dyn()), ("y", every_other.into_dyn())], &mut []).is_err());
}
