"""Which ATen ops do arithmetic, and how much, keyed by packet name (``aten::add_``).

- `NO_ARITHMETIC_OPS`: ops that only move, view, create or select data; never counted.
- `POINTWISE_FLOPS`: element-wise ops; FLOPs per OUTPUT element.
- `REDUCTION_FLOPS`: reductions and scans; FLOPs per INPUT element.
Ops with their own formulas (matmul, convolution, norms, pooling, attention, upsampling,
roi_align, ...) are in none of the tables. Derived from ``scripts/op_inventory.py``.
"""

from __future__ import annotations

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

# Ops that do no arithmetic on tensor values. Sorting and selection (sort, topk, kthvalue,
# median, unique) are here too: their comparisons only decide where values go, produce no new
# value, and their number depends on the algorithm and the data. Single-pass min/max/argmax
# reductions, in contrast, count one compare per element (REDUCTION_FLOPS), like eq/gt do.
NO_ARITHMETIC_OPS: frozenset[str] = frozenset(
    {
        # views and aliases
        "aten::_conj",
        "aten::_fw_primal",
        "aten::_make_dual",
        "aten::_reshape_alias",
        "aten::_unsafe_view",
        "aten::alias",
        "aten::as_strided",
        "aten::as_strided_",
        "aten::detach",
        "aten::detach_",
        "aten::diagonal",
        "aten::expand",
        "aten::lift",
        "aten::lift_fresh",
        "aten::permute",
        "aten::select",
        "aten::slice",
        "aten::split",
        "aten::split_with_sizes",
        "aten::squeeze",
        "aten::squeeze_",
        "aten::t",
        "aten::t_",
        "aten::transpose",
        "aten::transpose_",
        "aten::unbind",
        "aten::unfold",
        "aten::unsafe_split",
        "aten::unsafe_split_with_sizes",
        "aten::unsqueeze",
        "aten::unsqueeze_",
        "aten::view",
        "aten::view_as_complex",
        "aten::view_as_real",
        # view_copy variants (functionalized graphs)
        "aten::_reshape_alias_copy",
        "aten::_reshape_copy",
        "aten::alias_copy",
        "aten::as_strided_copy",
        "aten::detach_copy",
        "aten::diagonal_copy",
        "aten::expand_copy",
        "aten::lift_fresh_copy",
        "aten::narrow_copy",
        "aten::permute_copy",
        "aten::select_copy",
        "aten::slice_copy",
        "aten::split_copy",
        "aten::split_with_sizes_copy",
        "aten::squeeze_copy",
        "aten::t_copy",
        "aten::transpose_copy",
        "aten::unbind_copy",
        "aten::unfold_copy",
        "aten::unsqueeze_copy",
        "aten::view_as_complex_copy",
        "aten::view_as_real_copy",
        "aten::view_copy",
        # copies, dtype/device conversions (.to, .float, .contiguous end in these), resizing
        "aten::_copy_from",
        "aten::_copy_from_and_resize",
        "aten::_lazy_clone",
        "aten::_resize_output_",
        "aten::_to_copy",
        "aten::clone",
        "aten::complex",
        "aten::copy",
        "aten::copy_",
        "aten::resize_",
        "aten::resize_as_",
        "aten::set_",
        # creation, filling and random generation (no arithmetic on model data)
        "aten::_efficientzerotensor",
        "aten::arange",
        "aten::bernoulli",
        "aten::bernoulli_",
        "aten::cauchy_",
        "aten::empty",
        "aten::empty_like",
        "aten::empty_permuted",
        "aten::empty_strided",
        "aten::exponential_",
        "aten::eye",
        "aten::fill",
        "aten::fill_",
        "aten::full",
        "aten::full_like",
        "aten::geometric_",
        "aten::linspace",
        "aten::log_normal_",
        "aten::new_empty",
        "aten::new_empty_strided",
        "aten::new_full",
        "aten::new_ones",
        "aten::new_zeros",
        "aten::normal",
        "aten::normal_",
        "aten::ones",
        "aten::ones_like",
        "aten::rand",
        "aten::rand_like",
        "aten::randint",
        "aten::randint_like",
        "aten::randn",
        "aten::randn_like",
        "aten::random_",
        "aten::randperm",
        "aten::range",
        "aten::scalar_tensor",
        "aten::tril_indices",
        "aten::triu_indices",
        "aten::uniform",
        "aten::uniform_",
        "aten::zero",
        "aten::zero_",
        "aten::zeros",
        "aten::zeros_like",
        # joining, tiling, padding, reordering
        "aten::_chunk_cat",
        "aten::_stack",
        "aten::block_diag",
        "aten::cat",
        "aten::channel_shuffle",
        "aten::constant_pad_nd",
        "aten::diag_embed",
        "aten::flip",
        "aten::im2col",
        "aten::pixel_shuffle",
        "aten::pixel_unshuffle",
        "aten::reflection_pad1d",
        "aten::reflection_pad2d",
        "aten::reflection_pad3d",
        "aten::repeat",
        "aten::repeat_interleave",
        "aten::replication_pad1d",
        "aten::replication_pad2d",
        "aten::replication_pad3d",
        "aten::roll",
        "aten::rot90",
        "aten::stack",
        "aten::tril",
        "aten::tril_",
        "aten::triu",
        "aten::triu_",
        # indexing, gathering, masking (scatter and index_put, which may reduce, are in
        # scatter.py)
        "aten::_unsafe_index",
        "aten::_unsafe_masked_index",
        "aten::as_strided_scatter",
        "aten::diagonal_backward",
        "aten::diagonal_scatter",
        "aten::embedding",
        "aten::gather",
        "aten::index",
        "aten::index_copy",
        "aten::index_copy_",
        "aten::index_fill",
        "aten::index_fill_",
        "aten::index_select",
        "aten::masked_fill",
        "aten::masked_fill_",
        "aten::masked_scatter",
        "aten::masked_scatter_",
        "aten::masked_select",
        "aten::nonzero",
        "aten::nonzero_static",
        "aten::select_backward",
        "aten::select_scatter",
        "aten::slice_backward",
        "aten::slice_scatter",
        "aten::take",
        "aten::where",
        # sorting and selection (see above)
        "aten::_unique",
        "aten::_unique2",
        "aten::bucketize",
        "aten::kthvalue",
        "aten::median",
        "aten::nanmedian",
        "aten::searchsorted",
        "aten::sort",
        "aten::topk",
        "aten::unique_consecutive",
        "aten::unique_dim",
        "aten::unique_dim_consecutive",
        # scalars, metadata, assertions
        "aten::_assert_async",
        "aten::_assert_scalar",
        "aten::_assert_tensor_metadata",
        "aten::_functional_assert_async",
        "aten::_functional_assert_scalar",
        "aten::_functional_sym_constrain_range",
        "aten::_functional_sym_constrain_range_for_size",
        "aten::_local_scalar_dense",
        "aten::_make_dep_token",
        "aten::_nnz",
        "aten::is_same_size",
        "aten::record_stream",
        "aten::sym_constrain_range",
        "aten::sym_constrain_range_for_size",
    }
)

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
}

# aten::gelu with approximate="tanh": x*x, FMA, mul, tanh, mul, FMA.
GELU_TANH_FLOPS = _T + 5
