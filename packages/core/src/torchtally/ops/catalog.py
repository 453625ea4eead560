"""Which ATen ops do arithmetic, and how much, keyed by packet name (``aten::add_``).

- `NO_ARITHMETIC_OPS`: ops that only move, view, create or select data; never counted.
- `POINTWISE_FLOPS`: element-wise ops; FLOPs per OUTPUT element.
- `REDUCTION_FLOPS`: reductions and scans; FLOPs per INPUT element.
Ops with their own formulas (matmul, convolution, norms, pooling, attention, upsampling,
roi_align, ...) are in none of the tables. Derived from ``scripts/op_inventory.py``.
"""

from __future__ import annotations

# Ops that do no arithmetic on tensor values: the reviewed list is no_arithmetic.py's.
from torchtally.ops.no_arithmetic import NO_ARITHMETIC_OPS as NO_ARITHMETIC_OPS

# Cost convention (fvcore's): one fused multiply-add = 1 FLOP, and so is every IEEE basic
# operation: add, sub, mul, div, sqrt, rsqrt, reciprocal, compare, min/max, abs, neg,
# floor/ceil/round, bitwise and logical ops. sqrt/rsqrt/div are single instructions on every
# target, so they count 1 like an add.
#
# _T: one transcendental call (exp, log, sin, cos, tanh, erf, atan2, ...) costs 4 FLOPs. These
# are library routines, not IEEE instructions: about 2 FMA-equivalents on GPUs (a
# special-function-unit instruction plus scaling) and 10-20 on CPUs (range reduction plus a
# polynomial). 4 is a round figure in between, so they weigh more than an add without
# dominating.
#
# Composite activations are costed from their textbook formula with those two rules, folding
# constant factors into multiply-adds; each entry below shows its formula. Selecting (where,
# masked_fill, relu's select after the compare) costs nothing beyond the compare.
_T = 4

# FLOPs per output element. In-place variants (add_) cost the same as their out-of-place op.
POINTWISE_FLOPS: dict[str, int] = {
    # arithmetic: 1 (add/sub with alpha, rsub and addcmul's scale are multiply-adds)
    "aten::abs": 1,
    "aten::abs_": 1,
    "aten::add": 1,
    "aten::add_": 1,
    "aten::deg2rad": 1,
    "aten::deg2rad_": 1,
    "aten::div": 1,
    "aten::div_": 1,
    "aten::mul": 1,
    "aten::mul_": 1,
    "aten::neg": 1,
    "aten::neg_": 1,
    "aten::rad2deg": 1,
    "aten::rad2deg_": 1,
    "aten::reciprocal": 1,
    "aten::reciprocal_": 1,
    "aten::rsqrt": 1,
    "aten::rsqrt_": 1,
    "aten::rsub": 1,
    "aten::sqrt": 1,
    "aten::sqrt_": 1,
    "aten::sub": 1,
    "aten::sub_": 1,
    "aten::_add_relu": 2,  # add, then max(., 0)
    # quantising: round(x / scale) + zero point, clamped (mul by 1/scale, round, add, clamp);
    # dequantising: (q - zero point) * scale
    "aten::quantize_per_tensor": 4,
    "aten::quantize_per_tensor_dynamic": 4,
    "aten::quantize_per_channel": 4,
    "aten::dequantize": 2,
    "aten::_add_relu_": 2,
    "aten::addcdiv": 2,  # self + value * (a / b): div + FMA
    "aten::addcdiv_": 2,
    "aten::addcmul": 2,  # self + value * a * b: mul + FMA
    "aten::addcmul_": 2,
    "aten::floor_divide": 2,  # div, floor
    "aten::floor_divide_": 2,
    "aten::frac": 2,  # x - trunc(x)
    "aten::frac_": 2,
    "aten::fmod": 3,  # a - trunc(a / b) * b: div, trunc, FMA
    "aten::fmod_": 3,
    "aten::hypot": 3,  # sqrt(a * a + b * b): mul, FMA, sqrt
    "aten::hypot_": 3,
    "aten::lerp": 2,  # a + w * (b - a): sub, FMA
    "aten::lerp_": 2,
    "aten::remainder": 3,  # a - floor(a / b) * b: div, floor, FMA
    "aten::remainder_": 3,
    # pow: 1. In models the exponent is nearly always a small constant (x**2 in RMSNorm and
    # variance, x**3 in tanh-GELU) that kernels special-case to multiplies; a general tensor
    # exponent is really exp(y * log(x)) = 2 * _T + 1, which we do not try to tell apart.
    "aten::pow": 1,
    "aten::pow_": 1,
    # rounding, sign, bit and logical ops, comparisons, min/max, clamping: 1
    "aten::__ilshift__": 1,
    "aten::__irshift__": 1,
    "aten::__lshift__": 1,
    "aten::__rshift__": 1,
    "aten::bitwise_and": 1,
    "aten::bitwise_and_": 1,
    "aten::bitwise_left_shift": 1,
    "aten::bitwise_left_shift_": 1,
    "aten::bitwise_not": 1,
    "aten::bitwise_not_": 1,
    "aten::bitwise_or": 1,
    "aten::bitwise_or_": 1,
    "aten::bitwise_right_shift": 1,
    "aten::bitwise_right_shift_": 1,
    "aten::bitwise_xor": 1,
    "aten::bitwise_xor_": 1,
    "aten::ceil": 1,
    "aten::ceil_": 1,
    "aten::clamp": 1,
    "aten::clamp_": 1,
    "aten::clamp_max": 1,
    "aten::clamp_max_": 1,
    "aten::clamp_min": 1,
    "aten::clamp_min_": 1,
    "aten::copysign": 1,
    "aten::copysign_": 1,
    "aten::eq": 1,
    "aten::eq_": 1,
    "aten::floor": 1,
    "aten::floor_": 1,
    "aten::fmax": 1,
    "aten::fmin": 1,
    "aten::ge": 1,
    "aten::ge_": 1,
    "aten::gt": 1,
    "aten::gt_": 1,
    "aten::heaviside": 1,
    "aten::heaviside_": 1,
    "aten::isinf": 1,
    "aten::isnan": 1,
    "aten::isneginf": 1,
    "aten::isposinf": 1,
    "aten::le": 1,
    "aten::le_": 1,
    "aten::logical_and": 1,
    "aten::logical_and_": 1,
    "aten::logical_not": 1,
    "aten::logical_not_": 1,
    "aten::logical_or": 1,
    "aten::logical_or_": 1,
    "aten::logical_xor": 1,
    "aten::logical_xor_": 1,
    "aten::lt": 1,
    "aten::lt_": 1,
    "aten::maximum": 1,
    "aten::minimum": 1,
    "aten::nan_to_num": 1,
    "aten::nan_to_num_": 1,
    "aten::ne": 1,
    "aten::ne_": 1,
    "aten::round": 1,
    "aten::round_": 1,
    "aten::sgn": 1,
    "aten::sgn_": 1,
    "aten::sign": 1,
    "aten::sign_": 1,
    "aten::signbit": 1,
    "aten::trunc": 1,
    "aten::trunc_": 1,
    # piecewise-linear activations and their gradients: compare + select (+ one mul)
    "aten::_prelu_kernel": 1,  # x > 0 ? x : w * x
    "aten::hardshrink": 1,
    "aten::hardshrink_backward": 1,
    "aten::hardtanh": 1,  # clamp
    "aten::hardtanh_": 1,
    "aten::hardtanh_backward": 1,
    "aten::leaky_relu": 1,
    "aten::leaky_relu_": 1,
    "aten::leaky_relu_backward": 1,
    "aten::relu": 1,
    "aten::relu_": 1,
    "aten::softshrink": 2,  # compare, x -/+ lambda
    "aten::softshrink_backward": 1,
    "aten::threshold": 1,
    "aten::threshold_": 1,
    "aten::threshold_backward": 1,
    "aten::hardsigmoid": 2,  # clamp(x / 6 + 1/2, 0, 1): FMA, clamp
    "aten::hardsigmoid_": 2,
    "aten::hardsigmoid_backward": 2,  # range test, grad / 6
    "aten::hardswish": 3,  # x * hardsigmoid(x)
    "aten::hardswish_": 3,
    "aten::hardswish_backward": 3,  # range test, x / 3 + 1/2 (FMA), * grad
    # transcendental functions: _T each
    "aten::acos": _T,
    "aten::acos_": _T,
    "aten::acosh": _T,
    "aten::acosh_": _T,
    "aten::asin": _T,
    "aten::asin_": _T,
    "aten::asinh": _T,
    "aten::asinh_": _T,
    "aten::atan": _T,
    "aten::atan2": _T,
    "aten::atan2_": _T,
    "aten::atan_": _T,
    "aten::atanh": _T,
    "aten::atanh_": _T,
    "aten::cos": _T,
    "aten::cos_": _T,
    "aten::cosh": _T,
    "aten::cosh_": _T,
    "aten::erf": _T,
    "aten::erf_": _T,
    "aten::erfc": _T,
    "aten::erfc_": _T,
    "aten::erfinv": _T,
    "aten::erfinv_": _T,
    "aten::exp": _T,
    "aten::exp2": _T,
    "aten::exp2_": _T,
    "aten::exp_": _T,
    "aten::expm1": _T,
    "aten::expm1_": _T,
    "aten::log": _T,
    "aten::log10": _T,
    "aten::log10_": _T,
    "aten::log1p": _T,
    "aten::log1p_": _T,
    "aten::log2": _T,
    "aten::log2_": _T,
    "aten::log_": _T,
    "aten::sin": _T,
    "aten::sin_": _T,
    "aten::sinh": _T,
    "aten::sinh_": _T,
    "aten::tan": _T,
    "aten::tan_": _T,
    "aten::tanh": _T,
    "aten::tanh_": _T,
    "aten::sinc": _T + 2,  # sin(pi x) / (pi x)
    "aten::sinc_": _T + 2,
    "aten::logit": _T + 2,  # log(x / (1 - x))
    "aten::logit_": _T + 2,
    "aten::logit_backward": 3,  # grad / (x * (1 - x))
    "aten::xlogy": _T + 1,  # x * log(y)
    "aten::xlogy_": _T + 1,
    "aten::logaddexp": 2 * _T + 3,  # max(a, b) + log1p(exp(-|a - b|))
    "aten::logaddexp2": 2 * _T + 3,
    # smooth activations and their gradients
    "aten::tanh_backward": 2,  # grad * (1 - y * y): FMA, mul
    "aten::sigmoid": _T + 2,  # 1 / (1 + exp(-x)): exp, add, div
    "aten::sigmoid_": _T + 2,
    "aten::sigmoid_backward": 3,  # grad * y * (1 - y)
    "aten::silu": _T + 3,  # x * sigmoid(x)
    "aten::silu_": _T + 3,
    "aten::silu_backward": _T + 6,  # grad * s * (1 + x * (1 - s))
    "aten::glu": _T + 3,  # a * sigmoid(b), per output element
    # gelu: erf form (the default) 0.5 x (1 + erf(x / sqrt 2)): mul, erf, mul, FMA = _T + 3.
    # The tanh form (approximate="tanh") costs GELU_TANH_FLOPS (x*x, FMA, mul, tanh, mul, FMA).
    "aten::gelu": _T + 3,
    "aten::gelu_": _T + 3,
    "aten::gelu_backward": 2 * _T + 7,  # grad * (Phi(x) + x * phi(x)): erf and exp
    "aten::elu": _T + 2,  # x > 0 ? x : alpha * (exp(x) - 1): expm1, mul, select
    "aten::elu_": _T + 2,
    "aten::elu_backward": _T + 3,
    "aten::celu": _T + 2,
    "aten::celu_": _T + 2,
    "aten::softplus": 2 * _T + 3,  # log1p(exp(beta x)) / beta, linear above threshold
    "aten::softplus_backward": _T + 4,  # grad * sigmoid(beta x), threshold select
    "aten::mish": 3 * _T + 2,  # x * tanh(softplus(x))
    "aten::mish_": 3 * _T + 2,
    "aten::log_sigmoid_forward": 2 * _T + 3,  # min(x, 0) - log1p(exp(-|x|))
    "aten::log_sigmoid_backward": 4,  # from the exp(-|x|) buffer saved by the forward
    # softmax, per element: max (compare), subtract, exp, sum (add), divide
    "aten::_softmax": _T + 4,
    "aten::_masked_softmax": _T + 4,
    "aten::_safe_softmax": _T + 6,  # softmax + all-masked-row test (compare, reduce)
    "aten::_log_softmax": _T + 4,  # max, subtract, exp, sum, subtract (one log per row)
    "aten::_softmax_backward_data": 3,  # y * (g - sum(g * y)): FMA, sub, mul
    "aten::_masked_softmax_backward": 3,
    "aten::_log_softmax_backward_data": _T + 2,  # g - exp(y) * sum(g): add, exp, FMA
    # dropout: x * mask * 1/(1-p). Drawing the mask costs nothing (random generation); the
    # unfused path (bernoulli_, div_, mul) also comes to 2 per element.
    "aten::_fused_dropout": 2,
    "aten::_masked_scale": 2,
    "aten::native_dropout": 2,
    "aten::native_dropout_backward": 2,  # grad * mask * scale
    # special functions: one library routine each (_T), as exp and erf
    "aten::angle": _T,  # atan2(imag, real)
    "aten::digamma": _T,
    "aten::digamma_": _T,
    "aten::lgamma": _T,
    "aten::lgamma_": _T,
    "aten::i0": _T,
    "aten::i0_": _T,
    "aten::igamma": _T,
    "aten::igamma_": _T,
    "aten::igammac": _T,
    "aten::igammac_": _T,
    "aten::polygamma": _T,
    "aten::polygamma_": _T,
    "aten::special_airy_ai": _T,
    "aten::special_bessel_j0": _T,
    "aten::special_bessel_j1": _T,
    "aten::special_bessel_y0": _T,
    "aten::special_bessel_y1": _T,
    "aten::special_erfcx": _T,
    "aten::special_i0e": _T,
    "aten::special_i1": _T,
    "aten::special_i1e": _T,
    "aten::special_log_ndtr": _T,
    "aten::special_modified_bessel_i0": _T,
    "aten::special_modified_bessel_i1": _T,
    "aten::special_modified_bessel_k0": _T,
    "aten::special_modified_bessel_k1": _T,
    "aten::special_ndtri": _T,
    "aten::special_scaled_modified_bessel_k0": _T,
    "aten::special_scaled_modified_bessel_k1": _T,
    "aten::special_spherical_bessel_j0": _T,
    "aten::special_zeta": _T,
    # orthogonal polynomials of degree n: a recurrence, counted as one library routine
    "aten::special_chebyshev_polynomial_t": _T,
    "aten::special_chebyshev_polynomial_u": _T,
    "aten::special_chebyshev_polynomial_v": _T,
    "aten::special_chebyshev_polynomial_w": _T,
    "aten::special_shifted_chebyshev_polynomial_t": _T,
    "aten::special_shifted_chebyshev_polynomial_u": _T,
    "aten::special_shifted_chebyshev_polynomial_v": _T,
    "aten::special_shifted_chebyshev_polynomial_w": _T,
    "aten::special_hermite_polynomial_h": _T,
    "aten::special_hermite_polynomial_he": _T,
    "aten::special_laguerre_polynomial_l": _T,
    "aten::special_legendre_polynomial_p": _T,
    "aten::special_entr": _T + 1,  # -x * log(x)
    "aten::special_xlog1py": _T + 1,  # x * log1p(y)
    "aten::_standard_gamma_grad": 2 * _T,
    "aten::_dirichlet_grad": 3 * _T,
    # integer and float bit arithmetic
    "aten::gcd": _T,  # Euclid's loop: a few remainders, as a library routine
    "aten::gcd_": _T,
    "aten::lcm": _T + 2,  # a * b / gcd(a, b)
    "aten::lcm_": _T + 2,
    "aten::ldexp": 2,  # x * 2 ** e
    "aten::ldexp_": 2,
    "aten::nextafter": 1,
    "aten::nextafter_": 1,
    "aten::frexp": 2,
    "aten::polar": 2 * _T + 2,  # (r cos t, r sin t)
    "aten::_conj_physical": 1,  # the imaginary part negated
    "aten::conj_physical_": 1,
    "aten::isin": 1,  # a compare per element (the search only selects)
    "aten::linalg_cross": 2,  # each component of a x b: a multiply and a multiply-subtract
    # rrelu in training: x < 0 ? x * noise : x, the noise drawn (free)
    "aten::rrelu_with_noise": 2,
    "aten::rrelu_with_noise_": 2,
    "aten::rrelu_with_noise_functional": 2,
    # forward-mode derivatives of glu: as glu's gradient (backward.py)
    "aten::glu_jvp": _T + 6,
    "aten::glu_backward_jvp": _T + 6,
    "aten::renorm": 2,  # each slice's norm (1 per element) and its scale (1)
    "aten::renorm_": 2,
    "aten::_transform_bias_rescale_qkv": 2,  # bias add and the query's scale
    # mixed precision: isfinite and the unscale (x * inv_scale); the scale update (scalars)
    "aten::_amp_update_scale": 2,
    "aten::_amp_update_scale_": 2,
    # fake quantisation (quantisation-aware training): quantise (4) then dequantise (2)
    "aten::fake_quantize_per_channel_affine_cachemask": 6,
    "aten::fake_quantize_per_tensor_affine_cachemask": 6,
    "aten::_fake_quantize_per_tensor_affine_cachemask_tensor_qparams": 6,
    "aten::_fake_quantize_learnable_per_channel_affine": 6,
    "aten::_fake_quantize_learnable_per_tensor_affine": 6,
    # learnable: grad * in-range mask (1), the scale's and zero point's gradients (2 each)
    "aten::_fake_quantize_learnable_per_channel_affine_backward": 5,
    "aten::_fake_quantize_learnable_per_tensor_affine_backward": 5,
    # an observer's running min and max (2) and the fake quantisation (6)
    "aten::_fused_moving_avg_obs_fq_helper": 8,
    "aten::_fused_moving_avg_obs_fq_helper_functional": 8,
    # sparse softmax over the stored elements, as the dense ones
    "aten::_sparse_softmax": 2 * _T,
    "aten::_sparse_log_softmax": _T + 4,
    "aten::_sparse_softmax_backward_data": 3,
    "aten::_sparse_log_softmax_backward_data": _T + 2,
    "aten::_nested_tensor_softmax_with_shape": 2 * _T,
}

# FLOPs per INPUT element (the final per-output divide, sqrt or log is not counted).
# aten::max/aten::min here are their reductions only: the binary max(a, b) decomposes to
# aten::maximum/aten::minimum before the dispatcher.
REDUCTION_FLOPS: dict[str, int] = {
    "aten::_is_all_true": 1,
    "aten::_is_any_true": 1,
    "aten::all": 1,
    "aten::amax": 1,
    "aten::amin": 1,
    "aten::any": 1,
    "aten::argmax": 1,
    "aten::argmin": 1,
    "aten::max": 1,
    "aten::mean": 1,
    "aten::min": 1,
    "aten::nansum": 1,
    "aten::prod": 1,
    "aten::sum": 1,
    "aten::_aminmax": 2,  # a compare for the min and one for the max
    "aten::aminmax": 2,
    "aten::count_nonzero": 2,  # compare, add
    # histograms (MoE routing counts tokens per expert): subtract the low edge, scale, add one
    "aten::histc": 3,
    # p-norms: |x|^p accumulated; for p=2 that is one FMA (acc + x * x). Other p cost a bit
    # more (abs, pow); we charge every p the same.
    "aten::linalg_vector_norm": 1,
    "aten::native_norm": 1,
    "aten::norm": 1,
    # variance: a pass for the mean (add), then (x - mean)^2 accumulated (sub, FMA)
    "aten::std": 3,
    "aten::std_mean": 3,
    "aten::var": 3,
    "aten::var_mean": 3,
    "aten::logsumexp": _T + 3,  # max, subtract, exp, add (one log per output)
    # scans: one op per element
    "aten::cummax": 1,
    "aten::cummin": 1,
    "aten::cumprod": 1,
    "aten::cumprod_": 1,
    "aten::cumsum": 1,
    "aten::cumsum_": 1,
    "aten::_logcumsumexp": 2 * _T + 3,  # a logaddexp with the running value
    "aten::logcumsumexp": 2 * _T + 3,
    "aten::_cummax_helper": 1,
    "aten::_cummin_helper": 1,
    "aten::linalg__powsum": 1,  # |x| ** p accumulated, as the norms
    "aten::dist": 2,  # |a - b| ** p accumulated: a subtract and a multiply-add
    "aten::equal": 1,  # a compare per element
    "aten::allclose": 4,  # |a - b| <= atol + rtol * |b|: sub, abs, FMA, compare
    "aten::bincount": 1,  # an add into its bin
    "aten::histogram": 3,  # as histc
    "aten::_histogramdd_from_bin_cts": 3,
    "aten::_histogramdd_from_bin_tensors": 3,
    "aten::_coalesce": 1,  # duplicate sparse entries added
    "aten::_sparse_sum": 1,
    "aten::_sparse_csr_sum": 1,
    "aten::_sparse_csr_prod": 1,
    "aten::unfold_backward": 1,  # overlapping windows' gradients added
    # padding's gradients: reflected and replicated positions add into the border
    "aten::reflection_pad1d_backward": 1,
    "aten::reflection_pad2d_backward": 1,
    "aten::reflection_pad3d_backward": 1,
    "aten::replication_pad1d_backward": 1,
    "aten::replication_pad2d_backward": 1,
    "aten::replication_pad3d_backward": 1,
}

# Losses: FLOPs per element of the INPUT (the per-element formula; the mean or sum adds 1 more
# per element unless reduction="none").
LOSS_FLOPS: dict[str, int] = {
    "aten::mse_loss": 2,  # (x - y) ** 2: sub, mul
    # |d| < beta ? 0.5 d * d / beta : |d| - 0.5 beta: sub, abs, compare, FMA
    "aten::smooth_l1_loss": 4,
    "aten::huber_loss": 4,
    "aten::binary_cross_entropy": 2 * _T + 4,  # -(y log x + (1 - y) log(1 - x)): 2 logs, sub, FMA
    # (1 - y) x + log1p(exp(-|x|)) + max(-x, 0): abs, exp, log1p, max, FMA, add
    "aten::binary_cross_entropy_with_logits": 2 * _T + 4,
    "aten::soft_margin_loss": 2 * _T + 1,  # log1p(exp(-y x))
    "aten::soft_margin_loss_backward": _T + 4,
    # per class of each sample: max(0, margin - x[y] + x[i]): sub, add, max
    "aten::multi_margin_loss": 3,
    "aten::multi_margin_loss_backward": 3,
}

# aten::gelu with approximate="tanh": x*x, FMA, mul, tanh, mul, FMA.
GELU_TANH_FLOPS = _T + 5
