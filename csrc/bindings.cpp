// Python bindings: argument checks and calls into core/, nothing else. The user-facing validation (dtype,
// ndim, channel counts, order range) and messages live in src/horq/kernels; the checks here only keep a
// direct caller of horq._core from passing sizes that would read out of bounds.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "core/dispatch.h"
#include "core/float_conv.h"
#include "core/float_linear.h"
#include "core/layer.h"
#include "core/pool.h"
#include "core/threadpool.h"
#include "core/train.h"

namespace nb = nanobind;
template <class T, class... Extra>
using In = nb::ndarray<const T, nb::c_contig, nb::device::cpu, Extra...>;

namespace {

// Where arrays of 4 KB or more start within a 4 KB page: the next of kStaggerSteps offsets kStagger bytes apart each
// time (then again from 0). Placed so, a layer's output and its residual input, made a step or two apart, do not
// have their rows at one offset within 4 KB when a channel plane is a multiple of 4 KB (a 32x32 map); there each
// residual load of the fused epilogue waited on the output stores just issued (4K aliasing; a 64-channel 32x32
// layer + residual 0.066 -> 0.081 ms, profile_conv_core; 128 bytes apart or more: no wait). glibc returns large
// buffers at one offset from a page (mmap'd chunks) or anywhere (its heap), so the offset is set here, not left to it:
// arrays made 1 .. kStaggerSteps - 1 allocations apart start at least kStagger bytes apart within 4 KB.
constexpr std::size_t kPage = 4096, kStagger = 256, kStaggerSteps = 16;
std::atomic<std::size_t> stagger_count{0};

// A new numpy array owning its buffer, 64-byte aligned (and at its staggered offset within 4 KB from 4 KB on, as
// above); zero-filled unless `zero` is false (outputs that a kernel writes whole: zeroing a conv output costs a
// visible share of a small layer's time).
template <class T>
nb::ndarray<nb::numpy, T> make_array(std::initializer_list<std::size_t> shape, T** data, bool zero = true) {
  static_assert(std::is_trivially_copyable_v<T> && alignof(T) <= 64, "arrays of plain numbers");
  std::size_t size = 1;
  for (auto s : shape) size *= s;
  const std::size_t bytes = (size > 0 ? size : 1) * sizeof(T), large = bytes >= kPage;
  unsigned char* raw = new unsigned char[bytes + (large ? 2 * kPage : 64)];
  const std::uintptr_t base = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t at =
      large ? (base + kPage - 1) / kPage * kPage +
                  stagger_count.fetch_add(1, std::memory_order_relaxed) % kStaggerSteps * kStagger
            : (base + 63) / 64 * 64;
  T* p = reinterpret_cast<T*>(raw + (at - base));
  if (zero) std::memset(static_cast<void*>(p), 0, bytes);
  nb::capsule owner(raw, [](void* q) noexcept { delete[] static_cast<unsigned char*>(q); });
  *data = p;
  return nb::ndarray<nb::numpy, T>(p, shape.size(), shape.begin(), owner);
}

// The message is a C string, made into the exception's only on failure: a std::string parameter cost a string (and
// for most messages a heap allocation) per check, ~10 checks a binary step (`benchmarks/call_overhead.py`, a tiny
// Conv2dLayer call: 2.55 -> 2.22 us, docs/KERNELS.md round 24).
void require(bool ok, const char* msg) {
  if (!ok) throw std::invalid_argument(msg);
}

void check_order(int order) {
  if (order < 1 || order > horq::kMaxOrder)
    throw std::invalid_argument("order must be in 1.." + std::to_string(horq::kMaxOrder));
}

void check_n(std::size_t n) {
  require(n >= 1, "empty rows");
  require(n < static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()) / 2,
          "rows too long for 32-bit counts");
}

// A linear call's sizes (rows x n input, m weight rows of row_words words, m epilogue values), checked so
// that no size passed on reads out of bounds.
void check_linear(std::size_t rows, std::size_t n, std::size_t m, std::size_t row_words, std::size_t ncoef,
                  std::size_t nadd) {
  check_n(n);
  require(row_words == horq::words_for(n), "weights do not match in_features");
  require(ncoef == m && nadd == m, "epilogue length != output features");
  require(rows >= 1 && m >= 1, "empty batch or weights");
}

using Pair = std::tuple<std::size_t, std::size_t>;

// The epilogue's coef and add, which it rounds to float32 (docs/MATH.md "Output"): each must be finite there.
// Checked where a call gets them (conv2d, linear, the training calls) or once where a prepared layer holds them.
void check_epilogue(const In<double, nb::ndim<1>>& coef, const In<double, nb::ndim<1>>& add) {
  constexpr const char* kMessage = "epilogue coef and add must be finite float32 values (|value| <= 3.4e38)";
  for (std::size_t i = 0; i < coef.shape(0); ++i)
    require(std::isfinite(static_cast<float>(coef(i))), kMessage);
  for (std::size_t i = 0; i < add.shape(0); ++i)  // (their lengths against the weights: the call's own checks)
    require(std::isfinite(static_cast<float>(add(i))), kMessage);
}

// The geometry of a conv2d call (input N, C, H, W; kernel kh x kw; stride, padding, dilation), checked so
// that no size passed on reads out of bounds: weights of m rows in the conv layout, m epilogue values.
// A convolution's geometry with its output size, checked (any convolution, float or binary).
horq::ConvGeometry output_geometry(std::size_t n, std::size_t c, std::size_t h, std::size_t w, std::size_t kh,
                                   std::size_t kw, Pair stride, Pair padding, Pair dilation) {
  horq::ConvGeometry g{n, c, h, w, kh, kw, std::get<0>(stride), std::get<1>(stride), std::get<0>(padding),
                       std::get<1>(padding), std::get<0>(dilation), std::get<1>(dilation), 0, 0};
  require(g.sh >= 1 && g.sw >= 1 && g.dh >= 1 && g.dw >= 1 && kh >= 1 && kw >= 1, "bad geometry");
  const long eh = static_cast<long>(g.height + 2 * g.ph) - static_cast<long>(g.dh * (kh - 1) + 1);
  const long ew = static_cast<long>(g.width + 2 * g.pw) - static_cast<long>(g.dw * (kw - 1) + 1);
  require(eh >= 0 && ew >= 0, "input too small for the kernel");
  g.out_h = static_cast<std::size_t>(eh) / g.sh + 1;
  g.out_w = static_cast<std::size_t>(ew) / g.sw + 1;
  return g;
}

horq::ConvGeometry conv_geometry(std::size_t n, std::size_t c, std::size_t h, std::size_t w, std::size_t kh,
                                 std::size_t kw, Pair stride, Pair padding, Pair dilation, std::size_t m,
                                 std::size_t row_words, std::size_t ncoef, std::size_t nadd) {
  const horq::ConvGeometry g = output_geometry(n, c, h, w, kh, kw, stride, padding, dilation);
  check_n(g.channels * kh * kw);
  require(row_words == horq::conv_words(g.channels, kh * kw), "weights are not in the conv layout");
  require(ncoef == m && nadd == m, "epilogue length != output channels");
  require(g.batch >= 1 && m >= 1, "empty batch or weights");
  return g;
}

// ---- kernels and threads ---------------------------------------------------------------------------------

using WordArray = nb::ndarray<nb::numpy, horq::word_t>;
using FloatArray = nb::ndarray<nb::numpy, float>;
using Optional1 = std::optional<In<float, nb::ndim<1>>>;

// A chained step's output array kept for the step's next call (StepChain keeps one per step): a call whose output
// has the same shape, and finds that nobody else holds the array (its reference count is the cache's 1: the chain
// had freed the slot, the caller had dropped the result), writes into it again instead of making a new one: a buffer,
// and nanobind handing it to numpy.asarray, serial at any thread count (ResNet-18 32x32 at 1 thread 0.781-0.786 ->
// 0.769-0.773 ms, docs/KERNELS.md round 40). Outputs over kMaxKeptOutput bytes are new arrays: such a step takes far
// longer than that, and malloc hands back a buffer freed a step or two before, still in cache, where a step's own
// kept one was last written a whole call before (kept up to 1 MB, ResNet-18 224x224 ran 3.60-3.64 -> 3.64-3.75 ms; up
// to 256 KB, 3.59-3.62). Used with the GIL held: every reference count it reads changes under the GIL, and the array
// it hands out is referenced before the caller releases the GIL.
class OutputCache {
 public:
  static constexpr std::size_t kMaxKeptOutput = 256 * 1024;

  nb::object take(std::initializer_list<std::size_t> shape, float** data) {
    std::size_t size = 1;
    for (auto s : shape) size *= s;
    const bool keep = size * sizeof(float) <= kMaxKeptOutput;
    if (keep && arr_.is_valid() && Py_REFCNT(arr_.ptr()) == 1 &&
        std::equal(shape.begin(), shape.end(), shape_.begin(), shape_.end())) {
      *data = data_;
      return arr_;
    }
    nb::object fresh = nb::cast(make_array<float>(shape, data, false));
    if (keep) {
      arr_ = fresh;
      data_ = *data;
      shape_.assign(shape.begin(), shape.end());
    }
    return fresh;
  }

 private:
  nb::object arr_;
  float* data_ = nullptr;
  std::vector<std::size_t> shape_;
};

// A step's output array (not zeroed): the chained step's kept one where it can be (out), else a new one.
nb::object new_output(OutputCache* out, std::initializer_list<std::size_t> shape, float** data) {
  return out ? out->take(shape, data) : nb::cast(make_array<float>(shape, data, false));
}

// Whether a layer call takes an input affine (a BatchNorm before it): in_scale and in_shift both given, n values each
// (n: input channels or features; else the error `length`), or neither.
bool input_affine(const Optional1& in_scale, const Optional1& in_shift, std::size_t n, const char* length) {
  const bool affine = in_scale.has_value();
  require(affine == in_shift.has_value(), "in_scale and in_shift go together");
  require(!affine || (in_scale->shape(0) == n && in_shift->shape(0) == n), length);
  return affine;
}

WordArray pack_signs(In<float, nb::ndim<2>> x) {
  const std::size_t rows = x.shape(0), n = x.shape(1), nw = horq::words_for(n);
  horq::word_t* out;
  auto arr = make_array<horq::word_t>({rows, nw}, &out);
  horq::pack_signs(x.data(), rows, n, n, out);
  return arr;
}

WordArray relayout_conv_weights(In<horq::word_t, nb::ndim<2>> bits, std::size_t channels, std::size_t kh,
                                std::size_t kw) {
  const std::size_t rows = bits.shape(0), taps = kh * kw;
  require(bits.shape(1) == horq::words_for(channels * taps), "bits do not match channels * kh * kw");
  horq::word_t* out;
  auto arr = make_array<horq::word_t>({rows, horq::conv_words(channels, taps)}, &out);
  horq::relayout_conv_weights(bits.data(), rows, channels, kh, kw, out);
  return arr;
}

nb::tuple quantize_pack(In<float, nb::ndim<2>> cols, int order, const std::string& kernel) {
  check_order(order);
  const std::size_t rows = cols.shape(0), n = cols.shape(1);
  check_n(n);
  const auto& kt = horq::kernel_table(kernel);
  horq::QuantizedColumns q;
  {
    nb::gil_scoped_release nogil;
    q = horq::quantize_rows(kt, cols.data(), rows, n, order);
  }
  horq::word_t* bits;
  double* betas;
  auto abits = make_array<horq::word_t>({rows, static_cast<std::size_t>(order), q.kw}, &bits);
  auto abetas = make_array<double>({rows, static_cast<std::size_t>(order)}, &betas);
  std::memcpy(bits, q.bits.data(), q.bits.size() * sizeof(horq::word_t));
  std::memcpy(betas, q.betas.data(), q.betas.size() * sizeof(double));
  return nb::make_tuple(abits, abetas);
}

nb::ndarray<nb::numpy, std::int32_t> bgemm(In<horq::word_t, nb::ndim<2>> a, In<horq::word_t, nb::ndim<2>> b,
                                           std::size_t n, const std::string& kernel) {
  const std::size_t rows = a.shape(0), cols = b.shape(0), kw = a.shape(1);
  require(b.shape(1) == kw, "a and b rows have different word counts");
  require(n <= kw * horq::kWordBits && horq::words_for(n) == kw, "n does not match the word count");
  check_n(n);
  const auto& kt = horq::kernel_table(kernel);
  std::int32_t* out;
  auto arr = make_array<std::int32_t>({rows, cols}, &out);
  nb::gil_scoped_release nogil;
  horq::bgemm_dot(kt, a.data(), rows, b.data(), cols, kw, n, out);
  return arr;
}

void def_kernels(nb::module_& m) {
  m.def("available_kernels", [] { return horq::available_kernels(); }, "Paths this CPU can run, best first.");
  m.def("known_kernels", [] { return horq::known_kernels(); }, "Every path the library has.");
  m.def("get_num_threads", &horq::get_num_threads);
  m.def("set_num_threads", [](int n) {
    require(n >= 1, "number of threads must be >= 1");
    horq::set_num_threads(n);
  });
  m.def("_set_avx2_table_gemm", &horq::set_avx2_table_gemm, nb::arg("on"),
        "Test and benchmark switch: the AVX2 path's table GEMM kernel where it applies (default), or its outer "
        "kernel everywhere (the same bits).");
  m.def("_avx2_table_gemm", &horq::avx2_table_gemm);
  m.def("pack_signs", &pack_signs, nb::arg("x"),
        "Packs the signs of each row of a C-contiguous float32 matrix (bit 1 = negative).");
  m.def("relayout_conv_weights", &relayout_conv_weights, nb::arg("bits"), nb::arg("channels"), nb::arg("kh"),
        nb::arg("kw"));
  m.def("quantize_pack", &quantize_pack, nb::arg("cols"), nb::arg("order"), nb::arg("kernel") = "");
  m.def("bgemm", &bgemm, nb::arg("a"), nb::arg("b"), nb::arg("n"), nb::arg("kernel") = "");
}

// ---- layers --------------------------------------------------------------------------------------------

// The checked convolution of both bindings (conv2d, and PreparedConv's call).
nb::object run_conv2d(const In<float, nb::ndim<4>>& x, const In<horq::word_t, nb::ndim<2>>& wbits,
                      const In<double, nb::ndim<1>>& coef, const In<double, nb::ndim<1>>& add, std::size_t kh,
                      std::size_t kw, Pair stride, Pair padding, Pair dilation, int order, const horq::KernelTable& kt,
                      const Optional1& in_scale, const Optional1& in_shift,
                      const std::optional<In<float, nb::ndim<4>>>& residual, const Optional1& out_floor,
                      const Optional1& out_ceiling, horq::WeightCache* cache = nullptr, OutputCache* out = nullptr) {
  check_order(order);
  const horq::ConvGeometry g = conv_geometry(x.shape(0), x.shape(1), x.shape(2), x.shape(3), kh, kw, stride, padding,
                                             dilation, wbits.shape(0), wbits.shape(1), coef.shape(0), add.shape(0));
  const std::size_t m = wbits.shape(0);
  const bool affine = input_affine(in_scale, in_shift, g.channels, "input affine length != input channels");
  require(!residual || (residual->shape(0) == g.batch && residual->shape(1) == m && residual->shape(2) == g.out_h &&
                        residual->shape(3) == g.out_w),
          "residual shape != output shape");
  require(!out_floor || out_floor->shape(0) == m, "floor length != output channels");
  require(!out_ceiling || out_ceiling->shape(0) == m, "ceiling length != output channels");
  float* y;
  nb::object arr = new_output(out, {g.batch, m, g.out_h, g.out_w}, &y);
  nb::gil_scoped_release nogil;
  const horq::SerialScope serial(
      horq::small_binary_job(m, g.batch * g.out_h * g.out_w, order, wbits.shape(1), x.size()));
  const horq::Epilogue ep{coef.data(), add.data(), residual ? residual->data() : nullptr,
                          out_floor ? out_floor->data() : nullptr, out_ceiling ? out_ceiling->data() : nullptr};
  horq::conv_layer(kt, x.data(), g, order, affine ? in_scale->data() : nullptr, affine ? in_shift->data() : nullptr,
                   wbits.data(), m, ep, y, cache);
  return arr;
}

nb::object conv2d(In<float, nb::ndim<4>> x, In<horq::word_t, nb::ndim<2>> wbits, In<double, nb::ndim<1>> coef,
                  In<double, nb::ndim<1>> add, std::size_t kh, std::size_t kw, Pair stride, Pair padding,
                  Pair dilation, int order, const std::string& kernel, Optional1 in_scale, Optional1 in_shift,
                  std::optional<In<float, nb::ndim<4>>> residual, Optional1 out_floor, Optional1 out_ceiling) {
  check_epilogue(coef, add);
  return run_conv2d(x, wbits, coef, add, kh, kw, stride, padding, dilation, order, horq::kernel_table(kernel),
                    in_scale, in_shift, residual, out_floor, out_ceiling);
}

// A prepared runtime step that a StepChain (below) runs without going through Python: run(x, second, out) is the
// step's output for its input x (and `second`, a binary convolution's residual, or None), written into the array `out`
// keeps where it can (the chain's OutputCache for this step; nullptr: a new array), or a null object when an input is
// not an array this step takes without a conversion (a C-contiguous float32 array of its rank), for the chain to call
// the step's Python function instead (which converts, falls back or raises, as a step run alone would).
class CoreStep {
 public:
  virtual ~CoreStep() = default;
  virtual nb::object run(nb::handle x, nb::handle second, OutputCache* out) const = 0;
};

// x as the array type T, without conversion; false when it is not one.
template <class T>
bool as_input(nb::handle x, T& out) {
  return nb::try_cast<T>(x, out, false);
}

// conv2d with everything but the input (and residual) given once: the arrays held (references, not copies) and
// the kernel path resolved at construction, so a call converts two arguments instead of fifteen (~2 us a binary
// step; horq.kernels.Conv2dLayer's calls). Every check of conv2d still runs per call. What a kernel path derives
// from the weights is kept between calls (cache_), so their words must not change while the object lives
// (PackedWeights.conv_bits hands out a read-only array).
class PreparedConv : public CoreStep {
 public:
  PreparedConv(In<horq::word_t, nb::ndim<2>> wbits, In<double, nb::ndim<1>> coef, In<double, nb::ndim<1>> add,
               std::size_t channels, std::size_t kh, std::size_t kw, Pair stride, Pair padding, Pair dilation,
               int order, const std::string& kernel, Optional1 in_scale, Optional1 in_shift, Optional1 out_floor,
               Optional1 out_ceiling)
      : wbits_(std::move(wbits)), coef_(std::move(coef)), add_(std::move(add)), channels_(channels), kh_(kh), kw_(kw),
        stride_(stride), padding_(padding), dilation_(dilation), order_(order), kt_(&horq::kernel_table(kernel)),
        in_scale_(std::move(in_scale)), in_shift_(std::move(in_shift)), out_floor_(std::move(out_floor)),
        out_ceiling_(std::move(out_ceiling)) {
    check_order(order);
    require(wbits_.shape(1) == horq::conv_words(channels, kh * kw), "weights are not in the conv layout");
    check_epilogue(coef_, add_);  // once: the arrays are held, not copied, and do not change
  }

  // The weights' words do not tell every channel count apart (27 and 18 values are one word each): the
  // channels are given at construction and checked here.
  nb::object operator()(In<float, nb::ndim<4>> x, std::optional<In<float, nb::ndim<4>>> residual,
                        OutputCache* out = nullptr) const {
    require(x.shape(1) == channels_, "x does not have the weights' input channels");
    return run_conv2d(x, wbits_, coef_, add_, kh_, kw_, stride_, padding_, dilation_, order_, *kt_, in_scale_,
                      in_shift_, residual, out_floor_, out_ceiling_, cache_.get(), out);
  }

  nb::object run(nb::handle x, nb::handle second, OutputCache* out) const override {
    In<float, nb::ndim<4>> in;
    std::optional<In<float, nb::ndim<4>>> residual;
    if (!as_input(x, in)) return {};
    if (!second.is_none() && !as_input(second, residual.emplace())) return {};
    return (*this)(in, residual, out);
  }

 private:
  In<horq::word_t, nb::ndim<2>> wbits_;
  In<double, nb::ndim<1>> coef_, add_;
  std::size_t channels_, kh_, kw_;
  Pair stride_, padding_, dilation_;
  int order_;
  const horq::KernelTable* kt_;
  Optional1 in_scale_, in_shift_, out_floor_, out_ceiling_;
  std::unique_ptr<horq::WeightCache> cache_ = std::make_unique<horq::WeightCache>();  // of wbits_, which stays
};

// The checked linear call of both bindings: each row of x is one column, quantized, then multiplied; the
// quantized columns are what a training step keeps for its weight gradient. in_scale / in_shift (n values, together)
// and out_floor / out_ceiling (m values) as conv2d's: the input affine applied as the rows are quantized, the floor
// and ceiling in the stores.
std::pair<nb::object, horq::QuantizedColumns> run_linear(const In<float, nb::ndim<2>>& x,
                                                         const In<horq::word_t, nb::ndim<2>>& wbits,
                                                         const In<double, nb::ndim<1>>& coef,
                                                         const In<double, nb::ndim<1>>& add, int order,
                                                         const horq::KernelTable& kt,
                                                         const Optional1& in_scale = std::nullopt,
                                                         const Optional1& in_shift = std::nullopt,
                                                         const Optional1& out_floor = std::nullopt,
                                                         const Optional1& out_ceiling = std::nullopt,
                                                         OutputCache* out = nullptr) {
  check_order(order);
  const std::size_t rows = x.shape(0), n = x.shape(1), m = wbits.shape(0);
  check_linear(rows, n, m, wbits.shape(1), coef.shape(0), add.shape(0));
  const bool affine = input_affine(in_scale, in_shift, n, "input affine length != in_features");
  require(!out_floor || out_floor->shape(0) == m, "floor length != out_features");
  require(!out_ceiling || out_ceiling->shape(0) == m, "ceiling length != out_features");
  float* y;
  nb::object arr = new_output(out, {rows, m}, &y);
  horq::QuantizedColumns q;
  {
    nb::gil_scoped_release nogil;
    const horq::SerialScope serial(horq::small_binary_job(m, rows, order, wbits.shape(1), x.size()));
    q = horq::quantize_rows(kt, x.data(), rows, n, order, affine ? in_scale->data() : nullptr,
                            affine ? in_shift->data() : nullptr);
    horq::horq_gemm(kt, wbits.data(), m, q,
                    {coef.data(), add.data(), nullptr, out_floor ? out_floor->data() : nullptr,
                     out_ceiling ? out_ceiling->data() : nullptr},
                    1, y);
  }
  return {std::move(arr), std::move(q)};
}

nb::object linear(In<float, nb::ndim<2>> x, In<horq::word_t, nb::ndim<2>> wbits, In<double, nb::ndim<1>> coef,
                  In<double, nb::ndim<1>> add, int order, const std::string& kernel) {
  check_epilogue(coef, add);
  return run_linear(x, wbits, coef, add, order, horq::kernel_table(kernel)).first;
}

// linear with everything but the input given once, as PreparedConv: the runtime's binary linear steps, which a
// StepChain runs with the steps around them (horq.kernels.LinearLayer's calls).
class PreparedLinear : public CoreStep {
 public:
  PreparedLinear(In<horq::word_t, nb::ndim<2>> wbits, In<double, nb::ndim<1>> coef, In<double, nb::ndim<1>> add,
                 std::size_t in_features, int order, const std::string& kernel, Optional1 in_scale, Optional1 in_shift,
                 Optional1 out_floor, Optional1 out_ceiling)
      : wbits_(std::move(wbits)), coef_(std::move(coef)), add_(std::move(add)), in_features_(in_features),
        order_(order), kt_(&horq::kernel_table(kernel)), in_scale_(std::move(in_scale)), in_shift_(std::move(in_shift)),
        out_floor_(std::move(out_floor)), out_ceiling_(std::move(out_ceiling)) {
    check_order(order);
    require(wbits_.shape(1) == horq::words_for(in_features), "weights are not in_features bits a row");
    check_epilogue(coef_, add_);  // once, as PreparedConv
  }

  nb::object operator()(In<float, nb::ndim<2>> x, OutputCache* out = nullptr) const {
    require(x.shape(1) == in_features_, "x does not have the weights' in_features");
    return run_linear(x, wbits_, coef_, add_, order_, *kt_, in_scale_, in_shift_, out_floor_, out_ceiling_, out)
        .first;
  }

  nb::object run(nb::handle x, nb::handle second, OutputCache* out) const override {
    In<float, nb::ndim<2>> in;
    if (!second.is_none() || !as_input(x, in)) return {};
    return (*this)(in, out);
  }

 private:
  In<horq::word_t, nb::ndim<2>> wbits_;
  In<double, nb::ndim<1>> coef_, add_;
  std::size_t in_features_;
  int order_;
  const horq::KernelTable* kt_;
  Optional1 in_scale_, in_shift_, out_floor_, out_ceiling_;
};

void def_layers(nb::module_& m) {
  m.def("conv2d", &conv2d, nb::arg("x"), nb::arg("wbits"), nb::arg("coef"), nb::arg("add"), nb::arg("kh"),
        nb::arg("kw"), nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"), nb::arg("order"),
        nb::arg("kernel") = "", nb::arg("in_scale") = nb::none(), nb::arg("in_shift") = nb::none(),
        nb::arg("residual") = nb::none(), nb::arg("out_floor") = nb::none(), nb::arg("out_ceiling") = nb::none());
  m.def("linear", &linear, nb::arg("x"), nb::arg("wbits"), nb::arg("coef"), nb::arg("add"), nb::arg("order"),
        nb::arg("kernel") = "");
  nb::class_<CoreStep>(m, "CoreStep");  // the base of the steps a StepChain runs (def_chain)
  nb::class_<PreparedConv, CoreStep>(m, "PreparedConv")
      .def(nb::init<In<horq::word_t, nb::ndim<2>>, In<double, nb::ndim<1>>, In<double, nb::ndim<1>>, std::size_t,
                    std::size_t, std::size_t, Pair, Pair, Pair, int, const std::string&, Optional1, Optional1,
                    Optional1, Optional1>(),
           nb::arg("wbits"), nb::arg("coef"), nb::arg("add"), nb::arg("channels"), nb::arg("kh"), nb::arg("kw"),
           nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"), nb::arg("order"), nb::arg("kernel") = "",
           nb::arg("in_scale") = nb::none(), nb::arg("in_shift") = nb::none(), nb::arg("out_floor") = nb::none(),
           nb::arg("out_ceiling") = nb::none())
      .def(
          "__call__",
          [](const PreparedConv& c, In<float, nb::ndim<4>> x, std::optional<In<float, nb::ndim<4>>> residual) {
            return c(x, residual);
          },
          nb::arg("x"), nb::arg("residual") = nb::none());
  nb::class_<PreparedLinear, CoreStep>(m, "PreparedLinear")
      .def(nb::init<In<horq::word_t, nb::ndim<2>>, In<double, nb::ndim<1>>, In<double, nb::ndim<1>>, std::size_t, int,
                    const std::string&, Optional1, Optional1, Optional1, Optional1>(),
           nb::arg("wbits"), nb::arg("coef"), nb::arg("add"), nb::arg("in_features"), nb::arg("order"),
           nb::arg("kernel") = "", nb::arg("in_scale") = nb::none(), nb::arg("in_shift") = nb::none(),
           nb::arg("out_floor") = nb::none(), nb::arg("out_ceiling") = nb::none())
      .def("__call__", [](const PreparedLinear& l, In<float, nb::ndim<2>> x) { return l(x); }, nb::arg("x"));
}

// ---- training (src/horq/nn/native_train.py) ------------------------------------------------------------
// The forward pass of conv2d / linear that also returns the quantized columns it computed (bits (ncols,
// order, kw) and betas (ncols, order), owned by one heap object), and the float rebuild of a block of those
// columns for the weight gradient (core/train.h), plus the weight binarizer and the STE helpers.

nb::tuple keep_columns(horq::QuantizedColumns&& q) {
  auto* held = new horq::QuantizedColumns(std::move(q));
  nb::capsule owner(held, [](void* p) noexcept { delete static_cast<horq::QuantizedColumns*>(p); });
  const std::size_t order = static_cast<std::size_t>(held->order);
  const std::size_t bshape[3] = {held->ncols, order, held->kw}, tshape[2] = {held->ncols, order};
  return nb::make_tuple(nb::ndarray<nb::numpy, horq::word_t>(held->bits.data(), 3, bshape, owner),
                        nb::ndarray<nb::numpy, double>(held->betas.data(), 2, tshape, owner));
}

// The axes of a 4-d map's channels, rows and columns: NCHW, or NHWC with channels_last (PyTorch's channels_last
// memory as an array), and a new (uninitialized) float32 map of (n, c, h, w) laid out the same way.
struct MapAxes {
  std::size_t c, h, w;
};
MapAxes map_axes(bool channels_last) { return channels_last ? MapAxes{3, 1, 2} : MapAxes{1, 2, 3}; }
FloatArray new_map(std::size_t n, std::size_t c, std::size_t h, std::size_t w, bool channels_last, float** data) {
  return channels_last ? make_array<float>({n, h, w, c}, data, false) : make_array<float>({n, c, h, w}, data, false);
}

// channels_last: x is (N, H, W, C) and y (N, OH, OW, M) (PyTorch's channels_last, as NHWC arrays); the
// columns are the same.
nb::tuple conv2d_train(In<float, nb::ndim<4>> x, In<horq::word_t, nb::ndim<2>> wbits, In<double, nb::ndim<1>> coef,
                       In<double, nb::ndim<1>> add, std::size_t kh, std::size_t kw, Pair stride, Pair padding,
                       Pair dilation, int order, bool channels_last, const std::string& kernel) {
  check_order(order);
  const MapAxes ax = map_axes(channels_last);
  horq::ConvGeometry g = conv_geometry(x.shape(0), x.shape(ax.c), x.shape(ax.h), x.shape(ax.w), kh, kw, stride,
                                       padding, dilation, wbits.shape(0), wbits.shape(1), coef.shape(0), add.shape(0));
  check_epilogue(coef, add);
  g.nhwc = channels_last;
  const std::size_t m = wbits.shape(0);
  const auto& kt = horq::kernel_table(kernel);
  float* y;
  auto arr = new_map(g.batch, m, g.out_h, g.out_w, channels_last, &y);
  horq::QuantizedColumns q;
  {
    nb::gil_scoped_release nogil;
    q = horq::quantize_conv_columns(kt, x.data(), g, order);
    // One image's pixels per channel plane (NCHW), or every column's m outputs in a row (NHWC: a linear layer's).
    horq::horq_gemm(kt, wbits.data(), m, q, {coef.data(), add.data()}, channels_last ? 1 : g.out_h * g.out_w, y);
    horq::materialize_columns(q);
  }
  return nb::make_tuple(arr, keep_columns(std::move(q)));
}

nb::tuple linear_train(In<float, nb::ndim<2>> x, In<horq::word_t, nb::ndim<2>> wbits, In<double, nb::ndim<1>> coef,
                       In<double, nb::ndim<1>> add, int order, const std::string& kernel) {
  check_epilogue(coef, add);
  auto [arr, q] = run_linear(x, wbits, coef, add, order, horq::kernel_table(kernel));
  return nb::make_tuple(arr, keep_columns(std::move(q)));
}

void expand_columns(In<horq::word_t, nb::ndim<3>> bits, In<double, nb::ndim<2>> betas, std::size_t groups,
                    std::size_t cg, std::size_t gw, std::size_t col0, std::size_t col1,
                    nb::ndarray<float, nb::ndim<2>, nb::c_contig, nb::device::cpu> out, const std::string& kernel) {
  const std::size_t ncols = bits.shape(0), order = bits.shape(1), ld = bits.shape(2);
  require(order >= 1 && order <= static_cast<std::size_t>(horq::kMaxOrder), "bad order");
  require(betas.shape(0) == ncols && betas.shape(1) == order, "betas do not match bits");
  require(groups >= 1 && cg >= 1 && (groups == 1 || gw == horq::words_for(cg)), "bad group layout");
  require(groups >= 1 && cg >= 1 && (groups - 1) * gw * horq::kWordBits + cg <= ld * horq::kWordBits,
          "groups do not fit the bits");
  require(col0 < col1 && col1 <= ncols, "bad column range");
  require(out.shape(0) == col1 - col0 && out.shape(1) == groups * cg, "out has the wrong shape");
  const auto& kt = horq::kernel_table(kernel);
  nb::gil_scoped_release nogil;
  horq::expand_columns(kt, bits.data(), betas.data(), ld, static_cast<int>(order), groups, cg, gw, col0, col1,
                       out.data());
}

// (alpha, bits, w_eff) of weight rows; w_eff is None unless asked for (the native backward does without it).
nb::tuple binarize_weight_rows(In<float, nb::ndim<2>> w, bool with_eff, const std::string& kernel) {
  const std::size_t m = w.shape(0), n = w.shape(1);
  check_n(n);
  float *alpha, *eff = nullptr;
  horq::word_t* bits;
  auto aalpha = make_array<float>({m}, &alpha, false);
  auto abits = make_array<horq::word_t>({m, horq::words_for(n)}, &bits, false);
  std::optional<FloatArray> aeff;
  if (with_eff) aeff = make_array<float>({m, n}, &eff, false);
  const auto& kt = horq::kernel_table(kernel);
  {
    nb::gil_scoped_release nogil;
    kt.binarize_rows(w.data(), m, n, alpha, bits, eff);
  }
  return nb::make_tuple(aalpha, abits, aeff);
}

FloatArray binary_weight_grad(In<float, nb::ndim<2>> w, In<float, nb::ndim<1>> alpha, In<float, nb::ndim<2>> g,
                              double clip, const std::string& kernel) {
  const std::size_t m = w.shape(0), n = w.shape(1);
  require(alpha.shape(0) == m && g.shape(0) == m && g.shape(1) == n, "shapes do not match");
  const auto& kt = horq::kernel_table(kernel);
  float* dw;
  auto arr = make_array<float>({m, n}, &dw, false);
  nb::gil_scoped_release nogil;
  kt.weight_grad(w.data(), alpha.data(), g.data(), m, n, clip, dw);
  return arr;
}

// A pooling geometry over (n, c, h, w) maps, checked: the pooling window and the output size (any size up to
// ceil mode's: every output's window starts inside the padded input).
horq::ConvGeometry pool_geometry(std::size_t n, std::size_t c, std::size_t h, std::size_t w, std::size_t kh,
                                 std::size_t kw, Pair stride, Pair padding, Pair dilation, std::size_t out_h,
                                 std::size_t out_w) {
  horq::ConvGeometry g{n, c, h, w, kh, kw, std::get<0>(stride), std::get<1>(stride), std::get<0>(padding),
                       std::get<1>(padding), std::get<0>(dilation), std::get<1>(dilation), out_h, out_w};
  require(kh >= 1 && kw >= 1 && g.sh >= 1 && g.sw >= 1 && g.dh >= 1 && g.dw >= 1, "bad pooling geometry");
  require(out_h >= 1 && out_w >= 1 && (out_h - 1) * g.sh <= g.height + 2 * g.ph &&
              (out_w - 1) * g.sw <= g.width + 2 * g.pw,
          "pooling output size does not fit the input");
  return g;
}

// Max pooling of an NCHW float32 map into (N, C, out_h, out_w), max with `floor` (none, one value or one per
// channel): the runtime's max_pool2d (pool.h).
nb::object run_max_pool2d(const In<float, nb::ndim<4>>& x, std::size_t kh, std::size_t kw, Pair stride, Pair padding,
                          Pair dilation, std::size_t out_h, std::size_t out_w, const Optional1& floor,
                          const horq::KernelTable& kt, OutputCache* out = nullptr) {
  const horq::ConvGeometry g = pool_geometry(x.shape(0), x.shape(1), x.shape(2), x.shape(3), kh, kw, stride, padding,
                                             dilation, out_h, out_w);
  const std::size_t nfloor = floor ? floor->shape(0) : 0;
  require(!floor || nfloor == 1 || nfloor == g.channels, "floor must hold one value or one per channel");
  float* y;
  nb::object arr = new_output(out, {g.batch, g.channels, out_h, out_w}, &y);
  nb::gil_scoped_release nogil;
  horq::max_pool2d(kt, x.data(), g, floor ? floor->data() : nullptr, nfloor, y);
  return arr;
}

nb::object max_pool2d(In<float, nb::ndim<4>> x, std::size_t kh, std::size_t kw, Pair stride, Pair padding,
                      Pair dilation, std::size_t out_h, std::size_t out_w, Optional1 floor, const std::string& kernel) {
  return run_max_pool2d(x, kh, kw, stride, padding, dilation, out_h, out_w, floor, horq::kernel_table(kernel));
}

// A float linear layer on a few samples: x (rows, n) against w (m, n), then + bias, max(., floor) and min(., ceiling)
// per output (float_linear.h); the runtime's float classifier at small batches.
nb::object run_float_linear(const In<float, nb::ndim<2>>& x, const In<float, nb::ndim<2>>& w, const Optional1& bias,
                            const Optional1& floor, const Optional1& ceiling, const horq::KernelTable& kt,
                            OutputCache* out = nullptr) {
  const std::size_t rows = x.shape(0), n = x.shape(1), m = w.shape(0);
  require(rows >= 1 && n >= 1 && m >= 1, "empty input or weights");
  require(w.shape(1) == n, "weights have a row length other than x's features");
  require(!bias || bias->shape(0) == m, "bias length != outputs");
  require(!floor || floor->shape(0) == m, "floor length != outputs");
  require(!ceiling || ceiling->shape(0) == m, "ceiling length != outputs");
  float* y;
  nb::object arr = new_output(out, {rows, m}, &y);
  nb::gil_scoped_release nogil;
  horq::float_linear(kt, x.data(), rows, n, w.data(), m, bias ? bias->data() : nullptr,
                     floor ? floor->data() : nullptr, ceiling ? ceiling->data() : nullptr, y);
  return arr;
}

nb::object float_linear(In<float, nb::ndim<2>> x, In<float, nb::ndim<2>> w, Optional1 bias, Optional1 floor,
                        Optional1 ceiling, const std::string& kernel) {
  return run_float_linear(x, w, bias, floor, ceiling, horq::kernel_table(kernel));
}

// Global average pooling of an NCHW float32 map into (N, C, 1, 1) (pool.h global_avg_pool).
nb::object run_global_avg_pool(const In<float, nb::ndim<4>>& x, OutputCache* out) {
  const std::size_t n = x.shape(0), c = x.shape(1), hw = x.shape(2) * x.shape(3);
  require(n >= 1 && c >= 1 && hw >= 1, "empty input");
  float* y;
  nb::object arr = new_output(out, {n, c, 1, 1}, &y);
  nb::gil_scoped_release nogil;
  horq::global_avg_pool(x.data(), n * c, hw, y);
  return arr;
}

nb::object global_avg_pool(In<float, nb::ndim<4>> x) { return run_global_avg_pool(x, nullptr); }

// The checked geometry of a float convolution of x with weights w (m x C*kh*kw) and its output channels.
horq::ConvGeometry float_conv_geometry(const In<float, nb::ndim<4>>& x, const In<float, nb::ndim<2>>& w,
                                       std::size_t kh, std::size_t kw, Pair stride, Pair padding, Pair dilation,
                                       const Optional1& bias, const Optional1& floor, const Optional1& ceiling,
                                       std::size_t groups) {
  const std::size_t m = w.shape(0);
  const horq::ConvGeometry g =
      output_geometry(x.shape(0), x.shape(1), x.shape(2), x.shape(3), kh, kw, stride, padding, dilation);
  require(g.batch >= 1 && g.channels >= 1 && m >= 1, "empty batch, channels or weights");
  require(groups >= 1 && g.channels % groups == 0 && m % groups == 0,
          "groups must divide x's channels and the weights' rows");
  require(w.shape(1) == g.channels / groups * kh * kw,
          "weights have C/groups*kh*kw != x's channels per group times the kernel size");
  require(!bias || bias->shape(0) == m, "bias length != output channels");
  require(!floor || floor->shape(0) == m, "floor length != output channels");
  require(!ceiling || ceiling->shape(0) == m, "ceiling length != output channels");
  return g;
}

// FloatConvAlgorithm (float_conv.h) by name: "auto", "direct" or "winograd".
horq::FloatConvAlgorithm float_conv_algorithm(const std::string& name) {
  if (name == "auto") return horq::FloatConvAlgorithm::automatic;
  if (name == "direct") return horq::FloatConvAlgorithm::direct;
  if (name == "winograd") return horq::FloatConvAlgorithm::winograd;
  throw std::invalid_argument("algorithm must be 'auto', 'direct' or 'winograd', got '" + name + "'");
}

// A full-precision convolution of an NCHW float32 map with weights w (m x C*kh*kw, rows in (c, i, j) order),
// then + bias, max(., floor) and min(., ceiling) per output channel: the runtime's float conv2d step (float_conv.h).
nb::object run_float_conv2d(const In<float, nb::ndim<4>>& x, const In<float, nb::ndim<2>>& w, std::size_t kh,
                            std::size_t kw, Pair stride, Pair padding, Pair dilation, const Optional1& bias,
                            const Optional1& floor, const Optional1& ceiling, std::size_t groups,
                            const horq::KernelTable& kt, horq::FloatConvAlgorithm algo, OutputCache* out = nullptr) {
  const horq::ConvGeometry g =
      float_conv_geometry(x, w, kh, kw, stride, padding, dilation, bias, floor, ceiling, groups);
  const std::size_t m = w.shape(0);
  float* y;
  nb::object arr = new_output(out, {g.batch, m, g.out_h, g.out_w}, &y);
  nb::gil_scoped_release nogil;
  horq::float_conv2d(kt, x.data(), g, w.data(), m, bias ? bias->data() : nullptr, floor ? floor->data() : nullptr,
                     ceiling ? ceiling->data() : nullptr, y, algo, groups);
  return arr;
}

nb::object float_conv2d(In<float, nb::ndim<4>> x, In<float, nb::ndim<2>> w, std::size_t kh, std::size_t kw,
                        Pair stride, Pair padding, Pair dilation, Optional1 bias, Optional1 floor, Optional1 ceiling,
                        std::size_t groups, const std::string& kernel, const std::string& algorithm) {
  return run_float_conv2d(x, w, kh, kw, stride, padding, dilation, bias, floor, ceiling, groups,
                          horq::kernel_table(kernel), float_conv_algorithm(algorithm));
}

// A pooling's arguments as float_conv2d_pool takes them after the convolution's: kh, kw, stride, padding, dilation,
// the output's height and width, and the floor.
using PoolArgs = std::tuple<std::size_t, std::size_t, Pair, Pair, Pair, std::size_t, std::size_t, Optional1>;

// float_conv2d, then max_pool2d of its output (pooling geometry pkh .. pout_w, floor pool_floor), in one call
// (float_conv.h float_conv2d_pool): the runtime's float conv2d step with a max_pool2d fused into it.
nb::object run_float_conv2d_pool(const In<float, nb::ndim<4>>& x, const In<float, nb::ndim<2>>& w, std::size_t kh,
                                 std::size_t kw, Pair stride, Pair padding, Pair dilation, const Optional1& bias,
                                 const Optional1& floor, const Optional1& ceiling, std::size_t groups,
                                 const PoolArgs& pool, const horq::KernelTable& kt, horq::FloatConvAlgorithm algo,
                                 OutputCache* out = nullptr) {
  const horq::ConvGeometry g =
      float_conv_geometry(x, w, kh, kw, stride, padding, dilation, bias, floor, ceiling, groups);
  const std::size_t m = w.shape(0);
  const auto& [pkh, pkw, pstride, ppadding, pdilation, pout_h, pout_w, pool_floor] = pool;
  const horq::ConvGeometry pg =
      pool_geometry(g.batch, m, g.out_h, g.out_w, pkh, pkw, pstride, ppadding, pdilation, pout_h, pout_w);
  const std::size_t npf = pool_floor ? pool_floor->shape(0) : 0;
  require(!pool_floor || npf == 1 || npf == m, "pool_floor must hold one value or one per output channel");
  float* y;
  nb::object arr = new_output(out, {g.batch, m, pout_h, pout_w}, &y);
  nb::gil_scoped_release nogil;
  horq::float_conv2d_pool(kt, x.data(), g, w.data(), m, bias ? bias->data() : nullptr,
                          floor ? floor->data() : nullptr, ceiling ? ceiling->data() : nullptr, pg,
                          pool_floor ? pool_floor->data() : nullptr, npf, y, algo, groups);
  return arr;
}

nb::object float_conv2d_pool(In<float, nb::ndim<4>> x, In<float, nb::ndim<2>> w, std::size_t kh, std::size_t kw,
                             Pair stride, Pair padding, Pair dilation, Optional1 bias, Optional1 floor,
                             Optional1 ceiling, std::size_t groups, std::size_t pkh, std::size_t pkw, Pair pstride,
                             Pair ppadding, Pair pdilation, std::size_t pout_h, std::size_t pout_w,
                             Optional1 pool_floor, const std::string& kernel, const std::string& algorithm) {
  return run_float_conv2d_pool(x, w, kh, kw, stride, padding, dilation, bias, floor, ceiling, groups,
                               PoolArgs{pkh, pkw, pstride, ppadding, pdilation, pout_h, pout_w, pool_floor},
                               horq::kernel_table(kernel), float_conv_algorithm(algorithm));
}

void clip_window(nb::ndarray<float, nb::c_contig, nb::device::cpu> g, In<float> x, float clip) {
  require(g.size() == x.size(), "g and x differ in size");
  nb::gil_scoped_release nogil;
  horq::clip_window(g.data(), x.data(), g.size(), clip);
}

// (N, C, H, W) -> (N * H * W, C): an NCHW map's pixels as rows, the order the weight gradient reads an output
// gradient in (one image per task, the path's in-register transposes of to_nhwc: 0.32 ms for mnist-cnn's
// 64 x 64 x 14 x 14 gradient on an AMD EPYC Zen 3, where PyTorch's permuted copy took 0.70 ms alone and 4 ms
// per step inside a training step).
// With `sums`, also each channel's sum over the batch (a convolution's bias gradient), float32 from double: per
// image and channel in plane_sums' order, then over the images in order, so the same bits at any thread count.
nb::tuple nchw_rows(In<float, nb::ndim<4>> x, bool sums, const std::string& kernel) {
  const std::size_t N = x.shape(0), C = x.shape(1), P = x.shape(2) * x.shape(3);
  const auto& kt = horq::kernel_table(kernel);
  float *out, *total = nullptr;
  auto arr = make_array<float>({N * P, C}, &out, false);
  std::optional<FloatArray> asums;
  if (sums) asums = make_array<float>({C}, &total, false);
  {
    nb::gil_scoped_release nogil;
    const float* src = x.data();
    std::vector<double> part(sums ? N * C : 0);
    horq::parallel_for(N, [&](std::size_t i) {
      kt.to_nhwc(src + i * C * P, P, C, P, nullptr, nullptr, out + i * P * C, C);
      if (sums) horq::plane_sums(src + i * C * P, C, P, part.data() + i * C);  // the image just read: in cache
    });
    for (std::size_t c = 0; c < C && sums; ++c) {
      double s = 0.0;
      for (std::size_t i = 0; i < N; ++i) s += part[i * C + c];
      total[c] = static_cast<float>(s);
    }
  }
  return nb::make_tuple(arr, asums);
}

// ---- backward products on packed signs (core/sign_gemm.h, core/train.h) ----------------------------------

// out (J, M) = sum_r rscale[r] * a[r, :] * s_j(r); s is word-block-major (words_for(R), J).
FloatArray sign_gemm(In<float, nb::ndim<2>> a, In<horq::word_t, nb::ndim<2>> s, Optional1 rscale,
                     const std::string& kernel) {
  const std::size_t R = a.shape(0), M = a.shape(1), J = s.shape(1);
  require(R >= 1 && s.shape(0) == horq::words_for(R), "s must have words_for(R) word rows");
  require(!rscale || rscale->shape(0) == R, "rscale must have R values");
  const auto& kt = horq::kernel_table(kernel);
  float* out;
  auto arr = make_array<float>({J, M}, &out, false);
  nb::gil_scoped_release nogil;
  std::vector<const float*> rows(R);
  for (std::size_t r = 0; r < R; ++r) rows[r] = a.data() + r * M;
  horq::sign_gemm(kt, horq::SignGemm{rows.data(), rscale ? rscale->data() : nullptr, R, M, s.data(), J, out, M,
                                     false},
                  J);
  return arr;
}

WordArray transpose_planes(In<horq::word_t, nb::ndim<3>> bits, int k, const std::string& kernel) {
  const std::size_t ncols = bits.shape(0), order = bits.shape(1), ld = bits.shape(2);
  require(ncols >= 1 && k >= 0 && static_cast<std::size_t>(k) < order, "bad plane");
  horq::word_t* out;
  const auto& kt = horq::kernel_table(kernel);
  auto arr = make_array<horq::word_t>({horq::words_for(ncols), ld * horq::kWordBits}, &out, false);
  nb::gil_scoped_release nogil;
  horq::transpose_planes(kt, bits.data(), ncols, static_cast<int>(order), ld, k, out);
  return arr;
}

// The weight gradient from the kept planes, gathered into PyTorch's weight order (M, groups * cg).
FloatArray planes_weight_grad(In<float, nb::ndim<2>> g, In<horq::word_t, nb::ndim<3>> bits,
                              In<double, nb::ndim<2>> betas, std::size_t groups, std::size_t cg, std::size_t gw,
                              std::size_t taps, const std::string& kernel) {
  const std::size_t ncols = bits.shape(0), order = bits.shape(1), ld = bits.shape(2), M = g.shape(1);
  require(ncols >= 1 && g.shape(0) == ncols, "g must have one row per column");
  require(order >= 1 && order <= static_cast<std::size_t>(horq::kMaxOrder), "bad order");
  require(betas.shape(0) == ncols && betas.shape(1) == order, "betas do not match bits");
  require(groups >= 1 && cg >= 1 && taps >= 1 && (groups * cg) % taps == 0, "bad layout");
  require((groups - 1) * gw * horq::kWordBits + cg <= ld * horq::kWordBits, "layout does not fit the bits");
  const auto& kt = horq::kernel_table(kernel);
  float* dw;
  auto arr = make_array<float>({M, groups * cg}, &dw, false);
  nb::gil_scoped_release nogil;
  if (groups == 1 && taps == 1) {  // PyTorch's order is the product's transposed: done block by block
    horq::planes_weight_grad_rows(kt, g.data(), M, bits.data(), betas.data(), ncols, static_cast<int>(order), ld, cg,
                                  dw);
    return arr;
  }
  // Written where it is read (the stride's padding never is): not zeroed.
  std::unique_ptr<float[]> out(new float[ld * horq::kWordBits * horq::weight_grad_stride(M)]);
  // Bit positions up to the last value's (a compact or linear layout's trailing padding is not computed).
  horq::planes_weight_grad(kt, g.data(), M, bits.data(), betas.data(), ncols, static_cast<int>(order), ld,
                           (groups - 1) * gw * horq::kWordBits + cg, out.get());
  horq::gather_weight_grad(out.get(), M, groups, cg, gw, taps, dw);
  return arr;
}

// The latent weights' gradient of a linear layer from its kept planes (one product per plane, then weight_grad's
// straight-through rule), (M, n) with w's shape.
FloatArray linear_weight_grad(In<float, nb::ndim<2>> g, In<horq::word_t, nb::ndim<3>> bits,
                              In<double, nb::ndim<2>> betas, In<float, nb::ndim<2>> w, In<float, nb::ndim<1>> alpha,
                              double clip, const std::string& kernel) {
  const std::size_t ncols = bits.shape(0), order = bits.shape(1), ld = bits.shape(2), M = g.shape(1);
  const std::size_t n = w.shape(1);
  require(ncols >= 1 && g.shape(0) == ncols, "g must have one row per column");
  require(order >= 1 && order <= static_cast<std::size_t>(horq::kMaxOrder), "bad order");
  require(betas.shape(0) == ncols && betas.shape(1) == order, "betas do not match bits");
  require(w.shape(0) == M && alpha.shape(0) == M, "w and alpha must have one row per output of g");
  require(n >= 1 && horq::words_for(n) == ld, "w's rows do not match the bits");
  const auto& kt = horq::kernel_table(kernel);
  float* dw;
  auto arr = make_array<float>({M, n}, &dw, false);
  nb::gil_scoped_release nogil;
  const horq::LatentWeights latent{w.data(), alpha.data(), clip};
  horq::planes_weight_grad_rows(kt, g.data(), M, bits.data(), betas.data(), ncols, static_cast<int>(order), ld, n, dw,
                                &latent);
  return arr;
}

// channels_last: g, x and the result NHWC ((N, OH, OW, M), (N, H, W, C)).
FloatArray conv_input_grad(In<float, nb::ndim<4>> g, In<float, nb::ndim<1>> alpha,
                           In<horq::word_t, nb::ndim<2>> wbits, In<float, nb::ndim<4>> x, std::size_t kh,
                           std::size_t kw, Pair stride, Pair padding, Pair dilation, float clip, bool channels_last,
                           const std::string& kernel) {
  const std::size_t m = wbits.shape(0);
  const MapAxes ax = map_axes(channels_last);
  horq::ConvGeometry geo = conv_geometry(x.shape(0), x.shape(ax.c), x.shape(ax.h), x.shape(ax.w), kh, kw, stride,
                                         padding, dilation, m, horq::conv_words(x.shape(ax.c), kh * kw), m, m);
  geo.nhwc = channels_last;
  require(wbits.shape(1) == horq::words_for(geo.channels * kh * kw), "wbits must have words_for(C * kh * kw) words");
  require(alpha.shape(0) == m, "alpha must have one value per filter");
  require(g.shape(0) == geo.batch && g.shape(ax.c) == m && g.shape(ax.h) == geo.out_h &&
              g.shape(ax.w) == geo.out_w,
          "g does not have the output's shape");
  const auto& kt = horq::kernel_table(kernel);
  float* gx;
  auto arr = new_map(geo.batch, geo.channels, geo.height, geo.width, channels_last, &gx);
  nb::gil_scoped_release nogil;
  horq::conv_input_grad(kt, g.data(), alpha.data(), wbits.data(), geo, m, x.data(), clip, gx);
  return arr;
}

FloatArray linear_input_grad(In<float, nb::ndim<2>> g, In<float, nb::ndim<1>> alpha,
                             In<horq::word_t, nb::ndim<2>> wbits, In<float, nb::ndim<2>> x, float clip,
                             const std::string& kernel) {
  const std::size_t N = x.shape(0), n = x.shape(1), O = wbits.shape(0);
  require(N >= 1 && O >= 1 && n >= 1 && wbits.shape(1) == horq::words_for(n),
          "wbits must be (out_features, words_for(in_features))");
  require(g.shape(0) == N && g.shape(1) == O && alpha.shape(0) == O, "g or alpha do not match");
  const auto& kt = horq::kernel_table(kernel);
  float* gx;
  auto arr = make_array<float>({N, n}, &gx, false);
  nb::gil_scoped_release nogil;
  horq::linear_input_grad(kt, g.data(), alpha.data(), wbits.data(), N, O, n, x.data(), clip, gx);
  return arr;
}

// ---- runtime steps chained in C++ (src/horq/runtime/program.py) ----------------------------------------------
// A runtime call goes through Python once per step (the executor's loop, the layer's wrapper, nanobind's dispatch
// and argument conversion: a few microseconds a step, serial at any thread count). Runs of consecutive steps that
// have a CoreStep go through a StepChain instead: one Python call for the run.

// float_conv2d (or float_conv2d_pool) with everything but x given once: the runtime's float convolution step, its
// fused pool included.
class FloatConvStep : public CoreStep {
 public:
  FloatConvStep(In<float, nb::ndim<2>> w, std::size_t kh, std::size_t kw, Pair stride, Pair padding, Pair dilation,
                Optional1 bias, Optional1 floor, Optional1 ceiling, std::size_t groups, std::optional<PoolArgs> pool,
                const std::string& kernel, const std::string& algorithm)
      : w_(std::move(w)), kh_(kh), kw_(kw), stride_(stride), padding_(padding), dilation_(dilation),
        bias_(std::move(bias)), floor_(std::move(floor)), ceiling_(std::move(ceiling)), groups_(groups),
        pool_(std::move(pool)),
        kt_(&horq::kernel_table(kernel)), algo_(float_conv_algorithm(algorithm)) {}

  nb::object run(nb::handle x, nb::handle, OutputCache* out) const override {
    In<float, nb::ndim<4>> in;
    if (!as_input(x, in)) return {};
    return pool_ ? run_float_conv2d_pool(in, w_, kh_, kw_, stride_, padding_, dilation_, bias_, floor_, ceiling_,
                                         groups_, *pool_, *kt_, algo_, out)
                 : run_float_conv2d(in, w_, kh_, kw_, stride_, padding_, dilation_, bias_, floor_, ceiling_, groups_,
                                    *kt_, algo_, out);
  }

 private:
  In<float, nb::ndim<2>> w_;
  std::size_t kh_, kw_;
  Pair stride_, padding_, dilation_;
  Optional1 bias_, floor_, ceiling_;
  std::size_t groups_;
  std::optional<PoolArgs> pool_;
  const horq::KernelTable* kt_;
  horq::FloatConvAlgorithm algo_;
};

class GlobalAvgPoolStep : public CoreStep {
 public:
  nb::object run(nb::handle x, nb::handle, OutputCache* out) const override {
    In<float, nb::ndim<4>> in;
    if (!as_input(x, in)) return {};
    return run_global_avg_pool(in, out);
  }
};

// max_pool2d with everything but x given once: the runtime's max_pool2d step (its fused floor included).
class PoolStep : public CoreStep {
 public:
  PoolStep(std::size_t kh, std::size_t kw, Pair stride, Pair padding, Pair dilation, std::size_t out_h,
           std::size_t out_w, Optional1 floor, const std::string& kernel)
      : kh_(kh), kw_(kw), stride_(stride), padding_(padding), dilation_(dilation), out_h_(out_h), out_w_(out_w),
        floor_(std::move(floor)), kt_(&horq::kernel_table(kernel)) {}

  nb::object run(nb::handle x, nb::handle, OutputCache* out) const override {
    In<float, nb::ndim<4>> in;
    if (!as_input(x, in)) return {};
    return run_max_pool2d(in, kh_, kw_, stride_, padding_, dilation_, out_h_, out_w_, floor_, *kt_, out);
  }

 private:
  std::size_t kh_, kw_;
  Pair stride_, padding_, dilation_;
  std::size_t out_h_, out_w_;
  Optional1 floor_;
  const horq::KernelTable* kt_;
};

// float_linear with the weights, bias, floor and ceiling given once, for inputs of at most max_rows rows (more go to
// the step's Python function: the runtime hands larger batches to numpy's matrix product).
class FloatLinearStep : public CoreStep {
 public:
  FloatLinearStep(In<float, nb::ndim<2>> w, Optional1 bias, Optional1 floor, Optional1 ceiling,
                  const std::string& kernel, std::size_t max_rows)
      : w_(std::move(w)), bias_(std::move(bias)), floor_(std::move(floor)), ceiling_(std::move(ceiling)),
        kt_(&horq::kernel_table(kernel)), max_rows_(max_rows) {}

  nb::object run(nb::handle x, nb::handle, OutputCache* out) const override {
    In<float, nb::ndim<2>> in;
    if (!as_input(x, in) || in.shape(0) > max_rows_) return {};
    return run_float_linear(in, w_, bias_, floor_, ceiling_, *kt_, out);
  }

 private:
  In<float, nb::ndim<2>> w_;
  Optional1 bias_, floor_, ceiling_;
  const horq::KernelTable* kt_;
  std::size_t max_rows_;
};

// The runtime's flatten of a C-contiguous float32 array (N, ...): a view of it as (N, rest), as numpy's reshape
// gives (the view keeps the array alive).
class FlattenStep : public CoreStep {
 public:
  nb::object run(nb::handle x, nb::handle, OutputCache*) const override {
    nb::ndarray<float, nb::c_contig, nb::device::cpu> in;
    if (!as_input(x, in) || in.ndim() < 1 || in.shape(0) == 0) return {};
    const std::size_t shape[2] = {in.shape(0), in.size() / in.shape(0)};
    return nb::cast(FloatArray(in.data(), 2, shape, x));
  }
};

// Steps run in order on the executor's slots (program.py Program: slot 0 the input, slot i + 1 step i's output):
// each entry (core step, Python function, output slot, input slots, slots freed after it) reads its one or two
// inputs from env, writes its output there and sets the freed slots to None, as the executor's loop does; where the
// core step does not take an input (CoreStep::run), the Python function runs instead.
class StepChain {
 public:
  explicit StepChain(nb::list steps) {
    for (nb::handle item : steps) {
      const auto [step, fn, out, ins, free] =
          nb::cast<std::tuple<nb::object, nb::object, std::size_t, std::vector<std::size_t>,
                              std::vector<std::size_t>>>(item);
      require(ins.size() == 1 || ins.size() == 2, "a chained step takes one or two inputs");
      if (!nb::isinstance<CoreStep>(step)) throw nb::type_error("a chained step must be a CoreStep");
      entries_.push_back({step, nb::cast<const CoreStep*>(step), fn, out, ins, free, {}});
    }
  }

  void operator()(nb::list env) const {
    PyObject* const list = env.ptr();
    const std::size_t slots = env.size();
    const auto slot = [&](std::size_t i) { return nb::handle(PyList_GET_ITEM(list, static_cast<Py_ssize_t>(i))); };
    for (const Entry& e : entries_) {
      require(e.out < slots && e.ins[0] < slots && e.ins.back() < slots, "a chained step's slot is out of range");
      const nb::handle x = slot(e.ins[0]), second = e.ins.size() > 1 ? slot(e.ins[1]) : nb::none();
      nb::object y = e.step->run(x, second, &e.kept);
      if (!y.is_valid()) y = e.ins.size() > 1 ? e.fn(x, second) : e.fn(x);
      PyList_SetItem(list, static_cast<Py_ssize_t>(e.out), y.release().ptr());  // steals the reference
      for (const std::size_t i : e.free)
        if (i < slots) PyList_SetItem(list, static_cast<Py_ssize_t>(i), nb::none().release().ptr());
    }
  }

 private:
  struct Entry {
    nb::object owner;  // keeps the step alive
    const CoreStep* step;
    nb::object fn;
    std::size_t out;
    std::vector<std::size_t> ins, free;
    mutable OutputCache kept;  // the step's output array for its next call
  };
  std::vector<Entry> entries_;
};

// A one-input step called on its own (tests): its output, or TypeError for an input it does not take.
template <class Step>
nb::object call_step(const Step& step, nb::handle x) {
  nb::object y = step.run(x, nb::none(), nullptr);
  if (!y.is_valid()) throw nb::type_error("x must be a C-contiguous float32 array the step takes (its rank; rows)");
  return y;
}

void def_chain(nb::module_& m) {
  nb::class_<FloatConvStep, CoreStep>(m, "FloatConvStep")
      .def(nb::init<In<float, nb::ndim<2>>, std::size_t, std::size_t, Pair, Pair, Pair, Optional1, Optional1,
                    Optional1, std::size_t, std::optional<PoolArgs>, const std::string&, const std::string&>(),
           nb::arg("w"), nb::arg("kh"), nb::arg("kw"), nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"),
           nb::arg("bias").none(), nb::arg("floor").none(), nb::arg("ceiling").none(), nb::arg("groups"),
           nb::arg("pool").none(), nb::arg("kernel") = "", nb::arg("algorithm") = "auto")
      .def("__call__", &call_step<FloatConvStep>, nb::arg("x"));
  nb::class_<GlobalAvgPoolStep, CoreStep>(m, "GlobalAvgPoolStep")
      .def(nb::init<>())
      .def("__call__", &call_step<GlobalAvgPoolStep>, nb::arg("x"));
  nb::class_<PoolStep, CoreStep>(m, "PoolStep")
      .def(nb::init<std::size_t, std::size_t, Pair, Pair, Pair, std::size_t, std::size_t, Optional1,
                    const std::string&>(),
           nb::arg("kh"), nb::arg("kw"), nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"), nb::arg("out_h"),
           nb::arg("out_w"), nb::arg("floor").none(), nb::arg("kernel") = "")
      .def("__call__", &call_step<PoolStep>, nb::arg("x"));
  nb::class_<FloatLinearStep, CoreStep>(m, "FloatLinearStep")
      .def(nb::init<In<float, nb::ndim<2>>, Optional1, Optional1, Optional1, const std::string&, std::size_t>(),
           nb::arg("w"), nb::arg("bias").none(), nb::arg("floor").none(), nb::arg("ceiling").none(),
           nb::arg("kernel") = "", nb::arg("max_rows"))
      .def("__call__", &call_step<FloatLinearStep>, nb::arg("x"));
  nb::class_<FlattenStep, CoreStep>(m, "FlattenStep")
      .def(nb::init<>())
      .def("__call__", &call_step<FlattenStep>, nb::arg("x"));
  nb::class_<StepChain>(m, "StepChain")
      .def(nb::init<nb::list>(), nb::arg("steps"))
      .def("__call__", &StepChain::operator(), nb::arg("env"));
}

void def_training(nb::module_& m) {
  m.def("conv2d_train", &conv2d_train, nb::arg("x"), nb::arg("wbits"), nb::arg("coef"), nb::arg("add"),
        nb::arg("kh"), nb::arg("kw"), nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"), nb::arg("order"),
        nb::arg("channels_last") = false, nb::arg("kernel") = "");
  m.def("linear_train", &linear_train, nb::arg("x"), nb::arg("wbits"), nb::arg("coef"), nb::arg("add"),
        nb::arg("order"), nb::arg("kernel") = "");
  m.def("expand_columns", &expand_columns, nb::arg("bits"), nb::arg("betas"), nb::arg("groups"), nb::arg("cg"),
        nb::arg("gw"), nb::arg("col0"), nb::arg("col1"), nb::arg("out"),
        nb::arg("kernel") = "");
  m.def("binarize_weight_rows", &binarize_weight_rows, nb::arg("w"), nb::arg("with_eff") = true,
        nb::arg("kernel") = "");
  m.def("binary_weight_grad", &binary_weight_grad, nb::arg("w"), nb::arg("alpha"), nb::arg("g"), nb::arg("clip"),
        nb::arg("kernel") = "");
  m.def("float_conv2d", &float_conv2d, nb::arg("x"), nb::arg("w"), nb::arg("kh"), nb::arg("kw"), nb::arg("stride"),
        nb::arg("padding"), nb::arg("dilation"), nb::arg("bias") = nb::none(), nb::arg("floor") = nb::none(),
        nb::arg("ceiling") = nb::none(), nb::arg("groups") = 1, nb::arg("kernel") = "", nb::arg("algorithm") = "auto");
  m.def("float_conv2d_pool", &float_conv2d_pool, nb::arg("x"), nb::arg("w"), nb::arg("kh"), nb::arg("kw"),
        nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"), nb::arg("bias").none(), nb::arg("floor").none(),
        nb::arg("ceiling").none(), nb::arg("groups"), nb::arg("pkh"), nb::arg("pkw"), nb::arg("pstride"),
        nb::arg("ppadding"), nb::arg("pdilation"), nb::arg("pout_h"), nb::arg("pout_w"), nb::arg("pool_floor").none(),
        nb::arg("kernel") = "", nb::arg("algorithm") = "auto");
  m.def("float_linear", &float_linear, nb::arg("x"), nb::arg("w"), nb::arg("bias").none(), nb::arg("floor").none(),
        nb::arg("ceiling").none() = nb::none(), nb::arg("kernel") = "");
  m.def("global_avg_pool", &global_avg_pool, nb::arg("x"));
  m.def("all_finite", [](In<float> x) {
    nb::gil_scoped_release nogil;
    return horq::all_finite(x.data(), x.size());
  }, nb::arg("x"));
  m.def("max_pool2d", &max_pool2d, nb::arg("x"), nb::arg("kh"), nb::arg("kw"), nb::arg("stride"),
        nb::arg("padding"), nb::arg("dilation"), nb::arg("out_h"), nb::arg("out_w"),
        nb::arg("floor").none() = nb::none(), nb::arg("kernel") = "");
  m.def("clip_window", &clip_window, nb::arg("g"), nb::arg("x"), nb::arg("clip"));
  m.def("nchw_rows", &nchw_rows, nb::arg("x"), nb::arg("sums") = false, nb::arg("kernel") = "");
  m.def("sign_gemm", &sign_gemm, nb::arg("a"), nb::arg("s"), nb::arg("rscale").none() = nb::none(),
        nb::arg("kernel") = "");
  m.def("transpose_planes", &transpose_planes, nb::arg("bits"), nb::arg("k"), nb::arg("kernel") = "");
  m.def("planes_weight_grad", &planes_weight_grad, nb::arg("g"), nb::arg("bits"), nb::arg("betas"),
        nb::arg("groups"), nb::arg("cg"), nb::arg("gw"), nb::arg("taps"), nb::arg("kernel") = "");
  m.def("linear_weight_grad", &linear_weight_grad, nb::arg("g"), nb::arg("bits"), nb::arg("betas"), nb::arg("w"),
        nb::arg("alpha"), nb::arg("clip"), nb::arg("kernel") = "");
  m.def("conv_input_grad", &conv_input_grad, nb::arg("g"), nb::arg("alpha"), nb::arg("wbits"), nb::arg("x"),
        nb::arg("kh"), nb::arg("kw"), nb::arg("stride"), nb::arg("padding"), nb::arg("dilation"),
        nb::arg("clip"), nb::arg("channels_last") = false, nb::arg("kernel") = "");
  m.def("linear_input_grad", &linear_input_grad, nb::arg("g"), nb::arg("alpha"), nb::arg("wbits"), nb::arg("x"),
        nb::arg("clip"), nb::arg("kernel") = "");
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "horq native core: bit packing and XNOR-popcount kernels";
  def_kernels(m);
  def_layers(m);
  def_training(m);
  def_chain(m);
}
