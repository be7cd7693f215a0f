//! The encoder's two non-linear steps, in place over slices, a vector of
//! values at a time in pulp's operations: GELU (`x · Φ(x)` with the exact
//! normal distribution, BERT's `gelu`) and the attention's softmax.
//!
//! The C library's `erf` and `exp` take one value per call; here `exp`
//! comes from a polynomial after range reduction, and `1 + erf(x/√2)` from
//! Abramowitz and Stegun's formula 7.1.26 for the complementary error
//! function (a rational term times `exp(-z²)`, absolute error at most
//! 1.5e-7).

use pulp::{bytemuck, Arch, Simd, WithSimd};

/// Abramowitz and Stegun 7.1.26: `erfc(z) ≈ t·(a1 + t·(a2 + …)) · exp(-z²)`
/// with `t = 1 / (1 + p·z)`, for `z >= 0`.
const P: f32 = 0.327_591_1;
const A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_7,
    -1.453_152_1,
    1.061_405_4,
];

/// `exp(y)` for `y <= 0`: `2^n · exp(r)` with `|r| <= ln 2 / 2` and
/// `exp(r)` by its Taylor series to the eighth term (relative error below
/// 1e-8 there); `ln 2` in two parts so that `r` is exact enough. Below -87
/// (where float32 runs out of normal numbers) it is 0.
///
/// `n` is rounded by adding 1.5 · 2^23, which leaves it in the low bits of
/// the sum, whence `2^n` is built with integer operations on those bits.
#[inline(always)]
fn exp_nonpositive<S: Simd>(simd: S, y: S::f32s) -> S::f32s {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const LOWEST: f32 = -87.0;
    const ROUNDER: f32 = 12_582_912.0;
    let splat = |v: f32| simd.splat_f32s(v);
    let underflow = simd.less_than_f32s(y, splat(LOWEST));
    let y = simd.max_f32s(y, splat(LOWEST));
    let shifted = simd.mul_add_e_f32s(y, splat(std::f32::consts::LOG2_E), splat(ROUNDER));
    let n = simd.sub_f32s(shifted, splat(ROUNDER));
    let r = simd.mul_add_e_f32s(n, splat(-LN2_HI), y);
    let r = simd.mul_add_e_f32s(n, splat(-LN2_LO), r);
    let mut series = splat(1.0);
    for k in (1..8).rev() {
        let term = simd.mul_f32s(r, series);
        series = simd.mul_add_e_f32s(term, splat(1.0 / k as f32), splat(1.0));
    }
    // n is in [-126, 0]: 2^n is the float with the exponent n.
    let n = simd.sub_u32s(
        simd.transmute_u32s_f32s(shifted),
        simd.splat_u32s(ROUNDER.to_bits()),
    );
    let exponent = simd.add_u32s(n, simd.splat_u32s(127));
    let scale = simd.wrapping_dyn_shl_u32s(exponent, simd.splat_u32s(23));
    let value = simd.mul_f32s(series, simd.transmute_f32s_u32s(scale));
    simd.select_f32s(underflow, splat(0.0), value)
}

#[inline(always)]
fn gelu_lanes<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let splat = |v: f32| simd.splat_f32s(v);
    let z = simd.mul_f32s(simd.abs_f32s(x), splat(std::f32::consts::FRAC_1_SQRT_2));
    let t = simd.div_f32s(splat(1.0), simd.mul_add_e_f32s(splat(P), z, splat(1.0)));
    let mut poly = splat(A[A.len() - 1]);
    for i in (0..A.len() - 1).rev() {
        poly = simd.mul_add_e_f32s(poly, t, splat(A[i]));
    }
    let gauss = exp_nonpositive(simd, simd.neg_f32s(simd.mul_f32s(z, z)));
    let erfc = simd.mul_f32s(simd.mul_f32s(poly, t), gauss);
    // 1 + erf(x/√2): 2 - erfc for x >= 0, erfc below.
    let one_plus_erf = simd.select_f32s(
        simd.greater_than_or_equal_f32s(x, splat(0.0)),
        simd.sub_f32s(splat(2.0), erfc),
        erfc,
    );
    simd.mul_f32s(simd.mul_f32s(splat(0.5), x), one_plus_erf)
}

/// A function applied to a vector of lanes; a trait rather than a closure,
/// so that it inlines into the SIMD context and its operations with it.
trait Lanewise {
    fn apply<S: Simd>(&self, simd: S, lanes: S::f32s) -> S::f32s;
}

/// `values[i] = f(values[i])`, a vector of lanes at a time.
#[inline(always)]
fn map<S: Simd>(simd: S, values: &mut [f32], f: &impl Lanewise) {
    let (head, body, tail) = bytemuck::pod_align_to_mut::<f32, S::f32s>(values);
    for lanes in body {
        *lanes = f.apply(simd, *lanes);
    }
    for part in [head, tail] {
        simd.partial_store_f32s(part, f.apply(simd, simd.partial_load_f32s(part)));
    }
}

struct Gelu;

impl Lanewise for Gelu {
    #[inline(always)]
    fn apply<S: Simd>(&self, simd: S, lanes: S::f32s) -> S::f32s {
        gelu_lanes(simd, lanes)
    }
}

/// `exp(v - top)`, for `v <= top`.
struct ExpBelow(f32);

impl Lanewise for ExpBelow {
    #[inline(always)]
    fn apply<S: Simd>(&self, simd: S, lanes: S::f32s) -> S::f32s {
        exp_nonpositive(simd, simd.sub_f32s(lanes, simd.splat_f32s(self.0)))
    }
}

struct Scale(f32);

impl Lanewise for Scale {
    #[inline(always)]
    fn apply<S: Simd>(&self, simd: S, lanes: S::f32s) -> S::f32s {
        simd.mul_f32s(lanes, simd.splat_f32s(self.0))
    }
}

/// The largest value of `values` and their sum.
#[inline(always)]
fn max_and_sum<S: Simd>(simd: S, values: &[f32]) -> (f32, f32) {
    let (head, body, tail) = bytemuck::pod_align_to::<f32, S::f32s>(values);
    let mut top = simd.splat_f32s(f32::MIN);
    let mut sum = simd.splat_f32s(0.0);
    for &lanes in body {
        top = simd.max_f32s(top, lanes);
        sum = simd.add_f32s(sum, lanes);
    }
    let rest = head.iter().chain(tail);
    (
        rest.clone()
            .fold(simd.reduce_max_f32s(top), |a, &b| a.max(b)),
        rest.fold(simd.reduce_sum_f32s(sum), |a, &b| a + b),
    )
}

/// Replace every value by its GELU.
pub fn gelu(values: &mut [f32]) {
    struct Op<'a>(&'a mut [f32]);
    impl WithSimd for Op<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            map(simd, self.0, &Gelu);
        }
    }
    Arch::new().dispatch(Op(values));
}

/// Replace each row of `width` values by its softmax, `exp(v - max) / sum`.
/// A value of `-f32::MAX` (padding) weighs nothing.
pub fn softmax_rows(values: &mut [f32], width: usize) {
    struct Op<'a>(&'a mut [f32], usize);
    impl WithSimd for Op<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            for row in self.0.chunks_exact_mut(self.1) {
                let (top, _) = max_and_sum(simd, row);
                map(simd, row, &ExpBelow(top));
                let (_, sum) = max_and_sum(simd, row);
                map(simd, row, &Scale(1.0 / sum));
            }
        }
    }
    Arch::new().dispatch(Op(values, width));
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn agrees_with_candles_exact_gelu() {
        let xs: Vec<f32> = (-12_000..=12_000).map(|i| i as f32 / 1000.0).collect();
        let want = Tensor::new(xs.as_slice(), &Device::Cpu)
            .and_then(|t| t.gelu_erf())
            .and_then(|t| t.to_vec1::<f32>())
            .unwrap();
        let mut got = xs.clone();
        gelu(&mut got);
        for ((x, g), w) in xs.iter().zip(&got).zip(&want) {
            assert!(
                (g - w).abs() <= 1e-6 * (1.0 + x.abs()),
                "gelu({x}): {g} vs {w}"
            );
        }
    }

    #[test]
    fn softmax_agrees_with_candles_and_padding_weighs_nothing() {
        let width = 13;
        let mut values: Vec<f32> = (0..5 * width)
            .map(|i| ((i * 37) % 23) as f32 / 2.0 - 5.0)
            .collect();
        values[width + 3] = -f32::MAX;
        let want = Tensor::from_slice(&values, (5, width), &Device::Cpu)
            .and_then(|t| candle_nn::ops::softmax_last_dim(&t))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .unwrap();
        softmax_rows(&mut values, width);
        for (g, w) in values.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6, "{g} vs {w}");
        }
        assert_eq!(values[width + 3], 0.0);
        for row in values.chunks_exact(width) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn far_tails_are_zero_and_the_identity() {
        let mut values = [-1e30, -200.0, 200.0, 1e30, 0.0];
        gelu(&mut values);
        assert_eq!(values, [-0.0, -0.0, 200.0, 1e30, 0.0]);
    }
}
