//! A dense layer, `x · weightᵀ + bias`, with its weight packed once at load
//! for the products a sentence encoder computes: a few dozen rows (tokens)
//! against a weight of hundreds of columns.
//!
//! A general matrix product repacks its right-hand side on every call; for
//! a short text that repacking costs as much as the product itself. Here the
//! weight is stored the way the kernel reads it: panels of two vector
//! registers' width of output columns, each panel a column-major strip, so
//! the kernel streams it once per block of rows and keeps the block's sums
//! in registers. The vectors are pulp's: AVX2 and FMA where the CPU has
//! them, NEON on ARM, chosen at run time, scalar code otherwise.

use pulp::{bytemuck, Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Rows whose sums one call of the kernel keeps in registers (two vectors
/// each: twelve of AVX2's sixteen registers).
const BLOCK: usize = 6;

/// Rows of `x` that one task computes; a chunk of `x` stays in the cache
/// while every panel passes it.
const CHUNK: usize = 8 * BLOCK;

/// Output columns in one panel: two vectors of the widest SIMD this CPU has.
fn panel_width() -> usize {
    struct Lanes;
    impl WithSimd for Lanes {
        type Output = usize;
        fn with_simd<S: Simd>(self, _: S) -> usize {
            2 * S::F32_LANES
        }
    }
    Arch::new().dispatch(Lanes)
}

/// A dense layer's weight and bias, packed; immutable once built.
pub struct Dense {
    inputs: usize,
    outputs: usize,
    width: usize,
    /// `panels × inputs × width`: for each panel, row `i` holds the weights
    /// of input `i` for that panel's columns (zero past the last column).
    packed: Vec<f32>,
    /// `panels × width`, zero past the last column.
    bias: Vec<f32>,
}

impl Dense {
    /// Pack `weight`, `(outputs, inputs)` row-major, and `bias`, `outputs`
    /// long. The caller has checked the lengths.
    pub fn new(weight: &[f32], bias: &[f32], inputs: usize, outputs: usize) -> Self {
        debug_assert_eq!(weight.len(), inputs * outputs);
        debug_assert_eq!(bias.len(), outputs);
        let width = panel_width();
        let panels = outputs.div_ceil(width);
        let mut packed = vec![0.0; panels * inputs * width];
        for (output, row) in weight.chunks_exact(inputs).enumerate() {
            let (panel, column) = (output / width, output % width);
            let strip = &mut packed[panel * inputs * width..(panel + 1) * inputs * width];
            for (slot, &w) in strip.iter_mut().skip(column).step_by(width).zip(row) {
                *slot = w;
            }
        }
        let mut padded = vec![0.0; panels * width];
        padded[..outputs].copy_from_slice(bias);
        Self {
            inputs,
            outputs,
            width,
            packed,
            bias: padded,
        }
    }

    /// Output columns.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `x · weightᵀ + bias` for `x`, `(rows, inputs)` row-major: `(rows,
    /// outputs)` row-major. Chunks of rows are spread over the current rayon
    /// pool's threads.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let rows = x.len() / self.inputs;
        debug_assert_eq!(rows * self.inputs, x.len());
        let mut out = vec![0.0; rows * self.outputs];
        // Enough chunks for every thread, each a whole number of blocks.
        let share = rows.div_ceil(rayon::current_num_threads()).div_ceil(BLOCK) * BLOCK;
        let chunk = share.clamp(BLOCK, CHUNK);
        out.par_chunks_mut(chunk * self.outputs)
            .zip(x.par_chunks(chunk * self.inputs))
            .for_each(|(out, x)| {
                Arch::new().dispatch(Chunk {
                    dense: self,
                    x,
                    out,
                })
            });
        out
    }
}

/// One chunk of rows through every panel.
struct Chunk<'a> {
    dense: &'a Dense,
    x: &'a [f32],
    out: &'a mut [f32],
}

impl WithSimd for Chunk<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Dense {
            inputs,
            outputs,
            width,
            ..
        } = *self.dense;
        assert_eq!(width, 2 * S::F32_LANES, "packed for another SIMD width");
        let panels: &[S::f32s] = bytemuck::cast_slice(&self.dense.packed);
        let biases: &[S::f32s] = bytemuck::cast_slice(&self.dense.bias);
        for (panel, (strip, bias)) in panels
            .chunks_exact(2 * inputs)
            .zip(biases.chunks_exact(2))
            .enumerate()
        {
            let first = panel * width;
            let columns = width.min(outputs - first);
            let bias = [bias[0], bias[1]];
            let mut blocks = self.x.chunks(BLOCK * inputs);
            let mut outs = self.out.chunks_mut(BLOCK * outputs);
            for (x, out) in blocks.by_ref().zip(outs.by_ref()) {
                let rows = x.len() / inputs;
                let sums: &[[S::f32s; 2]] = match rows {
                    BLOCK => &block::<S, BLOCK>(simd, x, strip, bias),
                    5 => &block::<S, 5>(simd, x, strip, bias),
                    4 => &block::<S, 4>(simd, x, strip, bias),
                    3 => &block::<S, 3>(simd, x, strip, bias),
                    2 => &block::<S, 2>(simd, x, strip, bias),
                    _ => &block::<S, 1>(simd, x, strip, bias),
                };
                for (sum, out) in sums.iter().zip(out.chunks_exact_mut(outputs)) {
                    let sum: &[f32] = bytemuck::cast_slice(sum);
                    out[first..first + columns].copy_from_slice(&sum[..columns]);
                }
            }
        }
    }
}

/// The sums of `R` rows of `x` (each `inputs` long) against one panel,
/// `strip` (two vectors per input), bias included.
#[inline(always)]
fn block<S: Simd, const R: usize>(
    simd: S,
    x: &[f32],
    strip: &[S::f32s],
    bias: [S::f32s; 2],
) -> [[S::f32s; 2]; R] {
    let inputs = strip.len() / 2;
    let rows: [&[f32]; R] = std::array::from_fn(|r| &x[r * inputs..(r + 1) * inputs]);
    let mut sums = [bias; R];
    for (k, w) in strip.chunks_exact(2).enumerate() {
        let (w0, w1) = (w[0], w[1]);
        for (sum, row) in sums.iter_mut().zip(&rows) {
            let v = simd.splat_f32s(row[k]);
            sum[0] = simd.mul_add_e_f32s(v, w0, sum[0]);
            sum[1] = simd.mul_add_e_f32s(v, w1, sum[1]);
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product written out the plain way.
    fn reference(weight: &[f32], bias: &[f32], x: &[f32], inputs: usize) -> Vec<f32> {
        x.chunks_exact(inputs)
            .flat_map(|row| {
                weight
                    .chunks_exact(inputs)
                    .zip(bias)
                    .map(|(w, b)| b + row.iter().zip(w).map(|(a, b)| a * b).sum::<f32>())
            })
            .collect()
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_plain_product_for_every_row_count_and_ragged_columns() {
        for (inputs, outputs) in [(5, 3), (16, 37), (33, 64), (7, 1)] {
            let weight = values(inputs * outputs, 1);
            let bias = values(outputs, 2);
            let dense = Dense::new(&weight, &bias, inputs, outputs);
            for rows in [1, 2, 5, 6, 7, 13, 48, 49, 100] {
                let x = values(rows * inputs, 3 + rows as u32);
                let got = dense.forward(&x);
                let want = reference(&weight, &bias, &x, inputs);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn spreads_rows_over_a_pool_with_the_same_result() {
        let (inputs, outputs, rows) = (24, 40, 30);
        let dense = Dense::new(
            &values(inputs * outputs, 4),
            &values(outputs, 5),
            inputs,
            outputs,
        );
        let x = values(rows * inputs, 6);
        let alone = dense.forward(&x);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        assert_eq!(pool.install(|| dense.forward(&x)), alone);
    }
}
