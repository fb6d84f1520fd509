//! No allocation per call: a counting global allocator (this test binary's own) sees zero
//! allocations across repeated calls of the public API after one warm-up call, for element
//! losses and `[C]` losses, f32 and f64, every reduction, broadcast inputs, folded
//! gradients, pre-passes (`require`, `batch_all`, weighted means) and index targets as i32
//! and i64, all below the parallel threshold.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use lossc::{Arg, CallOptions, Dtype, Element, Loss, LossBuilder, Outputs, ReduceMode};

/// Counts allocations made by the current thread while `COUNTING` is set on it, so that
/// the test harness's other threads do not disturb the count.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let on = COUNTING.try_with(Cell::get).unwrap_or(false);
    if on {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every method forwards to the system allocator unchanged; counting touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// Calls once to warm up, then asserts that ten more calls allocate nothing.
fn check<T: Element>(
    what: &str,
    loss: &Loss,
    args: &[Arg<'_, T>],
    opts: &CallOptions<'_, T>,
    grad: &mut [&mut [T]],
    items: Option<&mut [T]>,
) {
    let mut out = Outputs { grad, hess: &mut [], loss_items: items };
    let first = loss.call_with(args, opts, &mut out).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut results = [T::ZERO; 10];
    let n = allocations(|| {
        for r in &mut results {
            *r = loss.call_with(args, opts, &mut out).unwrap_or(T::ZERO);
        }
    });
    assert_eq!(n, 0, "{what}: {n} allocations in 10 calls");
    for r in results {
        assert_eq!(r.to_f64().to_bits(), first.to_f64().to_bits(), "{what}: calls differ");
    }
}

fn data<T: Element>(n: usize, scale: f64, offset: f64) -> Vec<T> {
    (0..n).map(|i| T::from_f64(((i * 37 % 101) as f64 / 101.0) * scale + offset)).collect()
}

fn element_losses<T: Element>(dtype: Dtype) {
    let n = 1000;
    let (p, y) = (data::<T>(n, 4.0, -2.0), data::<T>(n, 1.0, 0.0));
    let w = data::<T>(n, 1.0, 0.5);
    let mut grad = vec![T::ZERO; n];
    let mut items = vec![T::ZERO; n];
    let upstream = data::<T>(n, 2.0, -1.0);
    let build = |src: &str| LossBuilder::new().dtype(dtype).build(src).expect("valid loss");
    let plain = build("softplus(p*y) + (p - y)^2");
    let weighted = build("pred p\ntarget y\ntarget w\nreduce mean by w\nlog_cosh(p - y)");
    let required = build("pred p\ntarget y\nrequire y >= 0, \"y must be nonnegative\"\nabs(p - y)");
    let batch = build("pred p\ntarget y\nk = batch_all(y >= 0)\nwhere(k, p*y, p)^2");
    let args = [Arg::values("p", &p), Arg::values("y", &y)];
    for mode in [ReduceMode::Mean, ReduceMode::MeanOrZero, ReduceMode::Sum, ReduceMode::BatchMean] {
        let opts = CallOptions { reduce: Some(mode), batch: Some(10), ..CallOptions::default() };
        check(&format!("{dtype:?} element {mode:?}"), &plain, &args, &opts, &mut [&mut grad], None);
        check(&format!("{dtype:?} require {mode:?}"), &required, &args, &opts, &mut [&mut grad], None);
        check(&format!("{dtype:?} batch_all {mode:?}"), &batch, &args, &opts, &mut [&mut grad], None);
    }
    let wargs = [Arg::values("p", &p), Arg::values("y", &y), Arg::values("w", &w)];
    check(&format!("{dtype:?} weighted mean"), &weighted, &wargs, &CallOptions::default(), &mut [&mut grad], None);
    // reduce none, with and without an upstream gradient, and with one upstream number.
    for up in [Some(&upstream[..]), None, Some(&upstream[..1])] {
        let opts = CallOptions { reduce: Some(ReduceMode::None), upstream: up, ..CallOptions::default() };
        let what = format!("{dtype:?} none, upstream {:?}", up.map(<[T]>::len));
        check(&what, &plain, &args, &opts, &mut [&mut grad], Some(&mut items));
    }
    // A target given as one number (broadcast) and a value-only call.
    let one = [T::from_f64(0.5)];
    let bargs = [Arg::values("p", &p), Arg::values("y", &one)];
    check(&format!("{dtype:?} broadcast target"), &plain, &bargs, &CallOptions::default(), &mut [&mut grad], None);
    check(&format!("{dtype:?} value only"), &plain, &args, &CallOptions::default(), &mut [], None);
    // A pred given as one number: its gradient is folded from a full-size scratch.
    let mut g1 = [T::ZERO];
    let pargs = [Arg::values("p", &one), Arg::values("y", &y)];
    check(&format!("{dtype:?} broadcast pred"), &plain, &pargs, &CallOptions::default(), &mut [&mut g1], None);
}

fn class_losses<T: Element>(dtype: Dtype) {
    let (rows, classes) = (100, 10);
    let logits = data::<T>(rows * classes, 6.0, -3.0);
    let probs = data::<T>(rows * classes, 0.98, 0.01);
    let onehot: Vec<T> =
        (0..rows * classes).map(|i| T::from_f64(if i % classes == (i / classes) % 3 { 1.0 } else { 0.0 })).collect();
    let k32: Vec<i32> = (0..rows as i32).map(|r| r % classes as i32).collect();
    let k64: Vec<i64> = (0..rows as i64).map(|r| (r * 7) % classes as i64).collect();
    // Some rows ignored (-100) and masked by `by`: out-of-range indices read 0.
    let ignored: Vec<i64> = (0..rows as i64).map(|r| if r % 9 == 0 { -100 } else { r % classes as i64 }).collect();
    let weight = data::<T>(classes, 1.0, 0.5);
    let mut grad = vec![T::ZERO; rows * classes];
    let mut items = vec![T::ZERO; rows];
    let build = |name: &str| LossBuilder::new().dtype(dtype).stdlib(name).expect("stdlib loss");
    let ce = build("torch/cross_entropy");
    let smoothed = LossBuilder::new().dtype(dtype).param("label_smoothing", 0.1).stdlib("torch/cross_entropy");
    let smoothed = smoothed.expect("valid override");
    let bce = build("torch/binary_cross_entropy");
    let hinge = build("keras/hinge");
    for mode in [ReduceMode::Mean, ReduceMode::MeanOrZero, ReduceMode::Sum, ReduceMode::BatchMean] {
        let opts = CallOptions { reduce: Some(mode), rows: Some(rows), ..CallOptions::default() };
        let what = |w: &str| format!("{dtype:?} {w} {mode:?}");
        let a32 = [Arg::values("input", &logits), Arg::i32("target", &k32)];
        check(&what("cross_entropy i32"), &ce, &a32, &opts, &mut [&mut grad], None);
        let a64 = [Arg::values("input", &logits), Arg::i64("target", &k64), Arg::values("weight", &weight)];
        check(&what("cross_entropy i64 weight[C]"), &ce, &a64, &opts, &mut [&mut grad], None);
        let aig = [Arg::values("input", &logits), Arg::i64("target", &ignored)];
        check(&what("cross_entropy ignore_index"), &smoothed, &aig, &opts, &mut [&mut grad], None);
        let abce = [Arg::values("input", &probs), Arg::values("target", &onehot)];
        check(&what("binary_cross_entropy"), &bce, &abce, &opts, &mut [&mut grad], None);
        let ahinge = [Arg::values("y_pred", &logits), Arg::values("y_true", &onehot)];
        check(&what("hinge"), &hinge, &ahinge, &opts, &mut [&mut grad], None);
    }
    let opts = CallOptions { reduce: Some(ReduceMode::None), rows: Some(rows), ..CallOptions::default() };
    let a64 = [Arg::values("input", &logits), Arg::i64("target", &k64)];
    check(&format!("{dtype:?} cross_entropy none"), &ce, &a64, &opts, &mut [&mut grad], Some(&mut items));
}

#[test]
fn calls_below_the_parallel_threshold_do_not_allocate() {
    element_losses::<f32>(Dtype::F32);
    element_losses::<f64>(Dtype::F64);
    class_losses::<f32>(Dtype::F32);
    class_losses::<f64>(Dtype::F64);
}

/// The counter itself works: a call that must allocate (its error message) is counted.
#[test]
fn the_counter_sees_allocations() {
    let loss = Loss::new("(p - y)^2").expect("valid");
    let (p, y) = ([1.0f32, 2.0], [1.0f32, 2.0, 3.0]);
    let n = allocations(|| {
        let res = loss.call(&[Arg::values("p", &p), Arg::values("y", &y)], &mut []);
        assert!(res.is_err());
    });
    assert!(n > 0);
}
