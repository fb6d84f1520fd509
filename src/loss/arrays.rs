//! `ndarray` views as call inputs and gradient buffers (cargo feature `ndarray`).
//!
//! Views are used in place, so they must be contiguous in standard (row-major) order;
//! anything else is an error, never a copy. The call allocates nothing: the borrowed
//! slices go into fixed-size arrays on the stack.

use ndarray::{ArrayViewD, ArrayViewMutD};

use super::{Error, ErrorKind, Loss};
use crate::diagnostic::Diagnostic;
use crate::jit::{Arg, CallOptions, Element, Outputs};
use crate::program::{Layout, Role};

/// The most inputs (and gradient buffers) one `ndarray` call takes.
const MAX_ARGS: usize = 16;

impl Loss {
    /// Calls the loss on `ndarray` views: like [`Loss::call`], with the row count of `[C]`
    /// data taken from the shape of the first `[C]` pred (every axis but the last), and
    /// `batchmean`'s B from the first pred's axis 0 (SPEC §1 Data layout).
    ///
    /// # Examples
    /// ```
    /// use ndarray::{array, Array2};
    /// use lossc::Loss;
    ///
    /// let loss = Loss::stdlib("keras/categorical_crossentropy")?;
    /// let y_true = array![[0.0f32, 1.0, 0.0], [1.0, 0.0, 0.0]].into_dyn();
    /// let y_pred = array![[0.1f32, 0.8, 0.1], [0.6, 0.3, 0.1]].into_dyn();
    /// let mut grad = Array2::<f32>::zeros((2, 3)).into_dyn();
    /// let value = loss.call_ndarray(&[("y_true", y_true.view()), ("y_pred", y_pred.view())], &mut [grad.view_mut()])?;
    /// assert!((value - 0.3670).abs() < 1e-3);
    /// # Ok::<(), lossc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Loss::call_with`]; also a view that is not contiguous in standard order, or
    /// more than 16 inputs or gradient buffers.
    pub fn call_ndarray<T: Element>(
        &self,
        args: &[(&str, ArrayViewD<'_, T>)],
        grad: &mut [ArrayViewMutD<'_, T>],
    ) -> Result<T, Error> {
        if args.len() > MAX_ARGS || grad.len() > MAX_ARGS {
            return Err(self.usage(format!("an ndarray call takes at most {MAX_ARGS} inputs and gradient buffers")));
        }
        let prog = self.program();
        let mut arg_buf = [Arg::values("", &[]); MAX_ARGS];
        for (slot, (name, view)) in arg_buf.iter_mut().zip(args) {
            let Some(data) = view.to_slice() else {
                return Err(self.usage(format!("the data of `{name}` is not contiguous in standard (row-major) order")));
            };
            *slot = Arg::values(name, data);
        }
        let first_pred = |layout: Option<Layout>| {
            prog.inputs
                .iter()
                .filter(|d| d.role == Role::Pred && layout.is_none_or(|l| d.layout == l))
                .find_map(|d| args.iter().rev().find(|(n, _)| *n == d.name))
                .map(|(_, v)| v.shape())
        };
        let rows = first_pred(Some(Layout::Classes)).map(|shape| match shape.split_last() {
            Some((_, leading)) => leading.iter().product(),
            None => 1,
        });
        let batch = first_pred(None).map(|shape| shape.first().copied().unwrap_or(1));
        let n_grad = grad.len();
        let mut grad_buf: [&mut [T]; MAX_ARGS] = std::array::from_fn(|_| &mut [][..]);
        let pred_names = prog.inputs.iter().filter(|d| d.role == Role::Pred).map(|d| d.name.as_str());
        for ((slot, view), name) in grad_buf.iter_mut().zip(grad.iter_mut()).zip(pred_names) {
            let Some(data) = view.as_slice_mut() else {
                return Err(
                    self.usage(format!("the gradient of `{name}` is not contiguous in standard (row-major) order"))
                );
            };
            *slot = data;
        }
        let opts = CallOptions { rows: rows.or(batch), batch, ..CallOptions::default() };
        let mut out = Outputs { grad: &mut grad_buf[..n_grad], ..Outputs::default() };
        self.call_with(&arg_buf[..args.len()], &opts, &mut out)
    }

    fn usage(&self, message: String) -> Error {
        self.error(ErrorKind::Data, Diagnostic::error_nowhere(message))
    }
}
