//! The library API (`lossc::Loss`): results equal the reference interpreter's, every
//! problem a caller can cause is an `Error` value with a useful message (never a panic),
//! compiled losses are shared by the cache and callable from many threads.

use lossc::eval::{evaluate, Array, EvalOptions, LossValue};
use lossc::{Arg, CallOptions, Dtype, ErrorKind, Loss, LossBuilder, Outputs, ReduceMode};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs()) || (a.is_nan() && b.is_nan())
}

/// One call through the API and through the interpreter on the same data; they agree on
/// the loss, the items, the gradient and the Hessian diagonal.
fn check_against_interpreter(loss: &Loss, inputs: &[(&str, Array)], rows: usize, reduce: ReduceMode, upstream: &[f64]) {
    let prog = loss.program();
    let pred = prog.inputs.iter().find(|i| i.role == lossc::program::Role::Pred).expect("a pred");
    let pred_len = inputs.iter().find(|(n, _)| *n == pred.name).map_or(0, |(_, a)| a.data.len());
    let args: Vec<Arg<'_, f64>> = inputs.iter().map(|(n, a)| Arg::values(n, &a.data)).collect();
    let (mut grad, mut hess) = (vec![0.0; pred_len], vec![0.0; pred_len]);
    let none = reduce == ReduceMode::None;
    let n_items = if none { upstream.len() } else { 0 };
    let mut items = vec![0.0; n_items];
    let opts = CallOptions { reduce: Some(reduce), rows: Some(rows), upstream: none.then_some(upstream), batch: None };
    let mut out =
        Outputs { grad: &mut [&mut grad], hess: &mut [&mut hess], loss_items: none.then_some(items.as_mut_slice()) };
    let value = loss.call_with(&args, &opts, &mut out).expect("a valid call");
    let refs: Vec<(&str, &Array)> = inputs.iter().map(|(n, a)| (*n, a)).collect();
    let eval_opts =
        EvalOptions { reduce: Some(reduce), grad: true, hess: true, upstream: none.then(|| upstream.to_vec()) };
    let want = evaluate(prog, &refs, &eval_opts).expect("the interpreter accepts");
    match want.loss {
        LossValue::Scalar(x) => assert!(close(value, x), "{reduce:?}: {value} vs {x}"),
        LossValue::PerItem(v) => {
            assert_eq!(items.len(), v.len());
            for (a, b) in items.iter().zip(&v) {
                assert!(close(*a, *b), "{reduce:?} item: {a} vs {b}");
            }
        }
    }
    for (got, want) in [(&grad, &want.grad[0].1), (&hess, &want.hess[0].1)] {
        for (a, b) in got.iter().zip(want) {
            assert!(close(*a, *b), "{reduce:?} derivative: {a} vs {b}");
        }
    }
}

#[test]
fn results_equal_the_interpreter() {
    let huber = LossBuilder::new().dtype(Dtype::F64).hessian(true).param("delta", 0.5).stdlib("torch/huber_loss");
    let huber = huber.expect("stdlib loss");
    let p = Array::vector((0..7).map(|i| f64::from(i) * 0.7 - 2.0).collect());
    let y = Array::vector((0..7).map(|i| (f64::from(i) * 1.3).sin()).collect());
    let up: Vec<f64> = (0..7).map(|i| 0.5 + f64::from(i) * 0.25).collect();
    for reduce in ReduceMode::ALL {
        check_against_interpreter(&huber, &[("input", p.clone()), ("target", y.clone())], 7, reduce, &up);
    }
    // A [C] loss with a per-class weight vector given as data and float class indices.
    let mut builder = LossBuilder::new();
    builder.dtype(Dtype::F64).hessian(true).param("label_smoothing", 0.1);
    let ce = builder.stdlib("torch/cross_entropy").expect("stdlib loss");
    let (rows, classes) = (5, 4);
    let logits = Array {
        shape: vec![rows, classes],
        data: (0..rows * classes).map(|i| (i as f64 * 0.37).cos() * 3.0).collect(),
    };
    let k = Array::vector(vec![0.0, 3.0, 1.0, -100.0, 2.0]);
    let w = Array::vector(vec![1.0, 0.5, 2.0, 1.5]);
    let up: Vec<f64> = (0..rows).map(|i| 1.0 - i as f64 * 0.3).collect();
    for reduce in ReduceMode::ALL {
        let inputs = [("input", logits.clone()), ("target", k.clone()), ("weight", w.clone())];
        check_against_interpreter(&ce, &inputs, rows, reduce, &up);
    }
}

#[test]
fn index_targets_as_i32_i64_and_floats_agree() {
    let loss = Loss::stdlib("torch/nll_loss").expect("stdlib loss");
    let logp: Vec<f32> = (0..12).map(|i| -0.1 * i as f32).collect();
    let (k32, k64, kf) = ([2i32, 0, 3], [2i64, 0, 3], [2.0f32, 0.0, 3.0]);
    let opts = CallOptions { rows: Some(3), ..CallOptions::default() };
    let mut results = Vec::new();
    for target in [Arg::i32("target", &k32), Arg::i64("target", &k64), Arg::values("target", &kf)] {
        let mut grad = [0.0f32; 12];
        let mut out = Outputs { grad: &mut [&mut grad], ..Outputs::default() };
        let value = loss.call_with(&[Arg::values("input", &logp), target], &opts, &mut out).expect("valid");
        results.push((value, grad));
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
    assert!((results[0].0 - (0.2 + 0.4 + 1.1) / 3.0).abs() < 1e-6);
}

#[test]
fn batchmean_takes_b_from_the_caller() {
    let loss = Loss::new("pred p\ntarget y\nreduce batchmean\n(p - y)^2").expect("valid");
    let (p, y) = ([1.0f32, 2.0, 3.0, 4.0], [0.0f32; 4]);
    let opts = CallOptions { batch: Some(2), ..CallOptions::default() };
    let args = [Arg::values("p", &p), Arg::values("y", &y)];
    let value = loss.call_with(&args, &opts, &mut Outputs::default()).expect("valid");
    assert_eq!(value, 30.0 / 2.0);
}

/// Every mistake a caller can make is an error value with a message, never a panic.
#[test]
fn bad_calls_are_errors() {
    let mse = Loss::new("(p - y)^2").expect("valid");
    let (p, y, short) = ([1.0f32, 2.0, 3.0], [0.0f32; 3], [0.0f32; 2]);
    let args = [Arg::values("p", &p), Arg::values("y", &y)];
    let data_err = |res: Result<f32, lossc::Error>| {
        let err = res.expect_err("an error");
        assert_eq!(err.kind(), ErrorKind::Data, "{err}");
        err.to_string()
    };
    let msg = data_err(mse.call(&args, &mut [&mut [0.0f32; 2]]));
    assert!(msg.contains("gradient buffer of `p` holds 2 values but the pred has 3"), "{msg}");
    let msg = data_err(mse.call(&args, &mut [&mut [0.0f32; 3], &mut [0.0f32; 3]]));
    assert!(msg.contains("2 gradient buffers given for 1 preds"), "{msg}");
    data_err(mse.call(&[Arg::values("p", &p), Arg::values("y", &short)], &mut []));
    let msg = data_err(mse.call(&[Arg::values("p", &p)], &mut []));
    assert!(msg.contains('y'), "{msg}");
    let msg = data_err(mse.call(&[Arg::values("p", &p), Arg::values("y", &y), Arg::values("q", &y)], &mut []));
    assert!(msg.contains('q'), "{msg}");
    // The wrong dtype: an f32 loss called with f64 data.
    let p64 = [1.0f64, 2.0, 3.0];
    let err = mse.call(&[Arg::values("p", &p64), Arg::values("y", &p64)], &mut []).expect_err("an f64 call");
    assert!(err.to_string().contains("compiled for f32 but called with f64"), "{err}");
    // reduce none without a loss buffer, or with an upstream gradient of the wrong length.
    let none = CallOptions { reduce: Some(ReduceMode::None), ..CallOptions::default() };
    let msg = data_err(mse.call_with(&args, &none, &mut Outputs::default()));
    assert!(msg.contains("loss buffer of 3 values"), "{msg}");
    let bad_up = CallOptions { upstream: Some(&short), ..none };
    let mut items = [0.0f32; 3];
    let msg =
        data_err(mse.call_with(&args, &bad_up, &mut Outputs { loss_items: Some(&mut items), ..Outputs::default() }));
    assert!(msg.contains("upstream gradient must hold 3 values"), "{msg}");
    // A Hessian from a loss built without one.
    let mut hess = [0.0f32; 3];
    let msg = data_err(mse.call_with(
        &args,
        &CallOptions::default(),
        &mut Outputs { hess: &mut [&mut hess], ..Outputs::default() },
    ));
    assert!(msg.contains("Hessian was not compiled"), "{msg}");

    let ce = Loss::stdlib("torch/cross_entropy").expect("stdlib loss");
    let logits = [0.0f32; 6];
    let rows2 = CallOptions { rows: Some(2), ..CallOptions::default() };
    // [C] data without a row count, or with one that does not divide it.
    let msg = data_err(ce.call(&[Arg::values("input", &logits), Arg::i64("target", &[0, 1])], &mut []));
    assert!(msg.contains("number of rows"), "{msg}");
    let rows4 = CallOptions { rows: Some(4), ..CallOptions::default() };
    data_err(ce.call_with(
        &[Arg::values("input", &logits), Arg::i64("target", &[0, 1])],
        &rows4,
        &mut Outputs::default(),
    ));
    // An unmasked class index out of range names the row and the index.
    let msg = data_err(ce.call_with(
        &[Arg::values("input", &logits), Arg::i64("target", &[0, 7])],
        &rows2,
        &mut Outputs::default(),
    ));
    assert!(msg.contains("class index 7 of `target` at row 1"), "{msg}");
    let huge = [0i64, i64::MAX];
    data_err(ce.call_with(
        &[Arg::values("input", &logits), Arg::i64("target", &huge)],
        &rows2,
        &mut Outputs::default(),
    ));
    // A non-integral index given as a float.
    data_err(ce.call_with(
        &[Arg::values("input", &logits), Arg::values("target", &[0.5, 1.0])],
        &rows2,
        &mut Outputs::default(),
    ));
    // A failing `require` reports the file's message, located in the stdlib source.
    let bce = Loss::stdlib("torch/binary_cross_entropy").expect("stdlib loss");
    let probs = [0.5f32, 1.5];
    let msg = data_err(bce.call_with(
        &[Arg::values("input", &probs), Arg::values("target", &[1.0, 0.0])],
        &rows2,
        &mut Outputs::default(),
    ));
    assert!(msg.contains("all elements of input should be between 0 and 1"), "{msg}");
}

#[test]
fn compile_errors_carry_spans() {
    let err = Loss::new("pred p\ntarget y\nmaximum(1 - y*p, 0)^^2").expect_err("a syntax error");
    assert_eq!(err.kind(), ErrorKind::Source);
    let (line, _) = err.line_col().expect("a span");
    assert_eq!(line, 3);
    assert!(err.to_string().starts_with("<text>:3:"), "{err}");
    assert!(err.diagnostics().iter().all(|d| d.span.is_some()));
    assert_eq!(err.source_text(), Some("pred p\ntarget y\nmaximum(1 - y*p, 0)^^2"));
    let err = Loss::stdlib("torch/mse_los").expect_err("a typo");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.diagnostics()[0].notes.iter().any(|n| n.contains("torch/mse_loss")), "{err:?}");
    let err = Loss::from_file("/nonexistent/loss.loss").expect_err("no such file");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // A required parameter left out, then given.
    let src = "pred p\ntarget y\nparam k\nk*(p - y)^2";
    assert_eq!(Loss::new(src).expect_err("k is required").kind(), ErrorKind::Source);
    assert!(LossBuilder::new().param("k", 2.0).build(src).is_ok());
    // std::error::Error + Display + Send + Sync, for `?` into Box<dyn Error> and anyhow.
    fn is_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
    is_error(&err);
}

#[test]
fn losses_are_cached_and_shared_across_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Loss>();
    let src = "pred p\ntarget y\nsoftplus(p) - y*p + 0.001*p^2";
    let a = Loss::new(src).expect("valid");
    let b = Loss::new(src).expect("valid");
    assert!(a.same_kernels(&b));
    assert!(!a.same_kernels(&LossBuilder::new().dtype(Dtype::F64).build(src).expect("valid")));
    assert!(!a.same_kernels(&LossBuilder::new().hessian(true).build(src).expect("valid")));
    // Many threads call one loss at once and all get the single-threaded result.
    let p: Vec<f32> = (0..3000).map(|i| (i as f32 * 0.01).sin() * 3.0).collect();
    let y: Vec<f32> = (0..3000).map(|i| (i % 2) as f32).collect();
    let run = |loss: &Loss| {
        let mut grad = vec![0.0f32; p.len()];
        let value = loss.call(&[Arg::values("p", &p), Arg::values("y", &y)], &mut [&mut grad]).expect("valid");
        (value, grad)
    };
    let want = run(&a);
    let (a, b, run, want) = (&a, &b, &run, &want);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|i| s.spawn(move || run(if i % 2 == 0 { a } else { b }))).collect();
        for h in handles {
            assert_eq!(&h.join().expect("no panic"), want);
        }
    });
}

/// A repeated call with the same buffers reuses its binding; it must still see the new
/// contents of every buffer (and of one-number inputs, which are copied). The expected
/// values come from another thread, whose calls leave this thread's binding alone.
#[test]
fn repeated_calls_see_new_contents() {
    let loss = Loss::new("pred p\ntarget y\ntarget w = 1\nreduce mean by w\nw*softplus(p - y)").expect("valid");
    let elsewhere = |p: &[f32], y: &[f32], w: &[f32]| {
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut grad = vec![0.0f32; p.len()];
                let args = [Arg::values("p", p), Arg::values("y", y), Arg::values("w", w)];
                let value = loss.call(&args, &mut [&mut grad]).expect("valid");
                (value, grad)
            })
            .join()
            .expect("no panic")
        })
    };
    for w_len in [4, 1] {
        let mut p = vec![0.5f32, -1.0, 2.0, 0.0];
        let mut y = vec![0.0f32; 4];
        let mut w = vec![1.0f32; w_len];
        let mut grad = vec![0.0f32; 4];
        for step in 0..6 {
            let want = elsewhere(&p, &y, &w);
            let args = [Arg::values("p", &p), Arg::values("y", &y), Arg::values("w", &w)];
            let value = loss.call(&args, &mut [&mut grad]).expect("valid");
            assert_eq!((value, grad.clone()), want, "w of {w_len}, step {step}");
            p.iter_mut().for_each(|v| *v += 0.25);
            y[step % 4] = 1.0;
            w[0] = 1.0 + step as f32;
        }
    }
    // The same for a [C] loss with index targets that change between calls.
    let ce = Loss::stdlib("torch/cross_entropy").expect("stdlib loss");
    let logits = [0.5f32, 1.0, -1.0, 2.0, 0.0, 0.25];
    let mut k = [0i64, 1];
    let opts = CallOptions { rows: Some(2), ..CallOptions::default() };
    let mut values = Vec::new();
    for target in [[0i64, 1], [2, 0], [0, 1]] {
        k.copy_from_slice(&target);
        let args = [Arg::values("input", &logits), Arg::i64("target", &k)];
        values.push(ce.call_with(&args, &opts, &mut Outputs::default()).expect("valid"));
    }
    assert_ne!(values[0], values[1]);
    assert_eq!(values[0], values[2]);
}
