//! A lossc loss as a node of candle's autograd (cargo feature `candle`).
//!
//! [`LossOp`] wraps a [`Loss`] with one pred and one target as a candle `CustomOp2`: the
//! forward pass computes the loss with the JIT kernels, the backward pass computes lossc's
//! gradient and chains it with the upstream gradient candle supplies (a scale for reduced
//! losses, the upstream array for `reduce none`). The target receives no gradient, and
//! the gradient is not itself differentiable again (no second-order autograd through it).
//! CPU tensors only; data is read in candle's logical (row-major) order, whatever the
//! strides.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use lossc::candle::LossOp;
//! use lossc::Loss;
//!
//! let op = LossOp::new(&Loss::stdlib("torch/mse_loss")?, "input", "target")?;
//! let pred = Var::new(&[1.0f32, 2.0, 4.0], &Device::Cpu)?;
//! let target = Tensor::new(&[1.0f32, 1.0, 1.0], &Device::Cpu)?;
//! let loss = op.apply(pred.as_tensor(), &target)?;
//! assert_eq!(loss.to_scalar::<f32>()?, 10.0 / 3.0);
//! let grads = (loss * 3.0)?.backward()?;
//! let grad = grads.get(pred.as_tensor()).expect("a gradient").to_vec1::<f32>()?;
//! assert_eq!(grad, [0.0, 2.0, 6.0]); // 3 · 2(p - y)/3
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use crate::diagnostic::Diagnostic;
use crate::ir::Dtype;
use crate::jit::{Arg, CallOptions, Element, Outputs};
use crate::loss::{Error, ErrorKind, Loss};
use crate::program::{Layout as InputLayout, ReduceMode, Role};

/// A loss of one pred and one target as a candle operation; see the module docs.
#[derive(Clone, Debug)]
pub struct LossOp {
    loss: Loss,
    pred: String,
    target: String,
    reduce: Option<ReduceMode>,
}

impl LossOp {
    /// Wraps `loss`, feeding candle's first operand to input `pred` and its second to
    /// input `target`. Every other input of the loss must have a default.
    ///
    /// # Errors
    /// [`ErrorKind::Data`] when `pred` is not the loss's only pred, `target` is not one of
    /// its other inputs, or another input has no default.
    pub fn new(loss: &Loss, pred: &str, target: &str) -> Result<LossOp, Error> {
        let prog = loss.program();
        let usage = |m: String| Err(Error::new(ErrorKind::Data, vec![Diagnostic::error_nowhere(m)]));
        if prog.preds().count() != 1 || prog.input(pred).map(|n| prog.inputs[n as usize].role) != Some(Role::Pred) {
            return usage(format!("a candle loss op needs `{pred}` to be the loss's only pred"));
        }
        if target == pred || prog.input(target).is_none() {
            return usage(format!("the loss has no target named `{target}`"));
        }
        if let Some(other) =
            prog.inputs.iter().find(|i| i.name != pred && i.name != target && i.used && i.default.is_none())
        {
            return usage(format!("input `{}` has no default and a candle loss op gives only two", other.name));
        }
        Ok(LossOp { loss: loss.clone(), pred: pred.to_string(), target: target.to_string(), reduce: None })
    }

    /// Overrides the file's reduction (`ReduceMode::None` gives one loss per element or row).
    pub fn reduce(mut self, mode: ReduceMode) -> LossOp {
        self.reduce = Some(mode);
        self
    }

    /// `loss(pred, target)` as a tensor that takes part in candle's autograd: a scalar, or
    /// for `reduce none` one value per element of `pred` (per row for a per-row loss).
    ///
    /// # Errors
    /// Tensors that are not on the CPU, of another dtype than the loss's, or that the loss
    /// rejects (the message is lossc's).
    pub fn apply(&self, pred: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
        pred.contiguous()?.apply_op2(&target.contiguous()?, self.clone())
    }

    fn mode(&self) -> ReduceMode {
        self.reduce.unwrap_or(self.loss.program().reduce)
    }

    /// The shape of the result for a pred of `shape`.
    fn out_shape(&self, shape: &[usize]) -> Vec<usize> {
        let prog = self.loss.program();
        if self.mode() != ReduceMode::None {
            Vec::new()
        } else if prog.class_axis && prog.loss_kind != crate::ir::Kind::Class {
            shape.split_last().map_or(Vec::new(), |(_, lead)| lead.to_vec())
        } else {
            shape.to_vec()
        }
    }

    /// Calls the loss on row-major data; writes the gradient when `grad` is given, and the
    /// per-item losses (for `reduce none`) into `items`.
    fn run<T: Element>(
        &self,
        pred: (&[T], &[usize]),
        target: Target<'_, T>,
        upstream: Option<&[T]>,
        grad: Option<&mut [T]>,
        items: &mut [T],
    ) -> Result<T, Error> {
        let prog = self.loss.program();
        let class_axis = prog.input(&self.pred).is_some_and(|n| prog.inputs[n as usize].layout == InputLayout::Classes);
        let rows =
            if class_axis { pred.1.split_last().map_or(1, |(_, lead)| lead.iter().product()) } else { pred.0.len() };
        let batch = pred.1.first().copied().unwrap_or(1);
        let target_arg = match target {
            Target::Values(v) => Arg::values(&self.target, v),
            Target::I64(v) => Arg::i64(&self.target, v),
        };
        let args = [Arg::values(&self.pred, pred.0), target_arg];
        let none = self.mode() == ReduceMode::None;
        let opts = CallOptions { reduce: self.reduce, rows: Some(rows), batch: Some(batch), upstream };
        let mut grads: [&mut [T]; 1] = [&mut []];
        let n_grad = match grad {
            Some(g) => {
                grads[0] = g;
                1
            }
            None => 0,
        };
        let mut out = Outputs { grad: &mut grads[..n_grad], hess: &mut [], loss_items: none.then_some(items) };
        self.loss.call_with(&args, &opts, &mut out)
    }

    fn forward<T: Element + candle_core::WithDType>(
        &self,
        pred: (&[T], &[usize]),
        target: Target<'_, T>,
    ) -> candle_core::Result<(Vec<T>, Shape)> {
        let shape = self.out_shape(pred.1);
        let mut items = vec![T::ZERO; shape.iter().product()];
        let value = self.run(pred, target, None, None, &mut items).map_err(candle_core::Error::msg)?;
        if self.mode() != ReduceMode::None {
            items = vec![value];
        }
        Ok((items, Shape::from(shape)))
    }

    fn backward<T: Element + candle_core::WithDType>(
        &self,
        pred: &Tensor,
        target: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let p: Vec<T> = pred.flatten_all()?.to_vec1()?;
        let up: Vec<T> = grad_res.flatten_all()?.to_vec1()?;
        let mut grad = vec![T::ZERO; p.len()];
        let mut items = vec![T::ZERO; up.len()];
        let none = self.mode() == ReduceMode::None;
        let upstream = none.then_some(&up[..]);
        let res = match target_data::<T>(target)? {
            TargetData::Values(t) => {
                self.run((&p, pred.dims()), Target::Values(&t), upstream, Some(&mut grad), &mut items)
            }
            TargetData::I64(t) => self.run((&p, pred.dims()), Target::I64(&t), upstream, Some(&mut grad), &mut items),
        };
        res.map_err(candle_core::Error::msg)?;
        let grad = Tensor::from_vec(grad, pred.shape(), pred.device())?;
        // A reduced loss: chain with the upstream scalar (`reduce none` took it as the seed).
        if none {
            Ok(grad)
        } else {
            grad.broadcast_mul(grad_res)
        }
    }
}

/// Target data borrowed for one call.
enum Target<'a, T> {
    Values(&'a [T]),
    I64(&'a [i64]),
}

/// Target data copied out of a tensor.
enum TargetData<T> {
    Values(Vec<T>),
    I64(Vec<i64>),
}

fn target_data<T: Element + candle_core::WithDType>(t: &Tensor) -> candle_core::Result<TargetData<T>> {
    let flat = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::I64 | DType::U32 | DType::U8 | DType::I32 | DType::I16 => {
            TargetData::I64(flat.to_dtype(DType::I64)?.to_vec1()?)
        }
        _ => TargetData::Values(flat.to_vec1()?),
    })
}

/// The storage's data as a slice, in logical order ([`LossOp::apply`] makes operands
/// contiguous first).
fn contiguous<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((start, end)) if end <= data.len() && start <= end => Ok(&data[start..end]),
        _ => candle_core::bail!("lossc: the operands must be contiguous"),
    }
}

fn integers(s: &CpuStorage, l: &Layout) -> candle_core::Result<Vec<i64>> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("lossc: the operands must be contiguous")
    };
    let range = start..end;
    let out: Option<Vec<i64>> = match s {
        CpuStorage::I64(v) => v.get(range).map(<[i64]>::to_vec),
        CpuStorage::I32(v) => v.get(range).map(|v| v.iter().map(|x| i64::from(*x)).collect()),
        CpuStorage::I16(v) => v.get(range).map(|v| v.iter().map(|x| i64::from(*x)).collect()),
        CpuStorage::U32(v) => v.get(range).map(|v| v.iter().map(|x| i64::from(*x)).collect()),
        CpuStorage::U8(v) => v.get(range).map(|v| v.iter().map(|x| i64::from(*x)).collect()),
        _ => candle_core::bail!("lossc: the target must have the loss's dtype or hold integer class indices"),
    };
    out.ok_or_else(|| candle_core::Error::msg("lossc: the target's layout does not fit its storage"))
}

impl LossOp {
    fn cpu_fwd_as<T: Element + candle_core::WithDType>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = contiguous::<T>(s1, l1)?;
        let dims = l1.shape().dims();
        let (items, shape) = if s2.dtype() == s1.dtype() {
            let t = contiguous::<T>(s2, l2)?;
            self.forward((p, dims), Target::Values(t))?
        } else {
            let t = integers(s2, l2)?;
            self.forward((p, dims), Target::I64(&t))?
        };
        Ok((T::to_cpu_storage_owned(items), shape))
    }
}

impl CustomOp2 for LossOp {
    fn name(&self) -> &'static str {
        "lossc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        match (self.loss.dtype(), s1.dtype()) {
            (Dtype::F32, DType::F32) => self.cpu_fwd_as::<f32>(s1, l1, s2, l2),
            (Dtype::F64, DType::F64) => self.cpu_fwd_as::<f64>(s1, l1, s2, l2),
            (want, got) => candle_core::bail!("lossc: the loss computes in {} but the pred is {got:?}", want.name()),
        }
    }

    fn bwd(
        &self,
        pred: &Tensor,
        target: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = match self.loss.dtype() {
            Dtype::F32 => self.backward::<f32>(pred, target, grad_res)?,
            Dtype::F64 => self.backward::<f64>(pred, target, grad_res)?,
        };
        Ok((Some(grad), None))
    }
}
