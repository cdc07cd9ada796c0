// Python bindings: argument checks and calls into core/, nothing else.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <stdexcept>

#include "core/bitpack.h"

namespace nb = nanobind;
using FloatMatrix = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

NB_MODULE(_core, m) {
  m.doc() = "horq native core: bit packing and XNOR-popcount kernels";
  m.def(
      "pack_signs",
      [](FloatMatrix x) {
        const std::size_t rows = x.shape(0), n = x.shape(1), nw = horq::words_for(n);
        auto* out = new horq::word_t[rows * nw > 0 ? rows * nw : 1];
        nb::capsule owner(out, [](void* p) noexcept { delete[] static_cast<horq::word_t*>(p); });
        horq::pack_signs_generic(x.data(), rows, n, n, out);
        return nb::ndarray<nb::numpy, horq::word_t, nb::ndim<2>>(out, {rows, nw}, owner);
      },
      nb::arg("x"), "Packs the signs of each row of a C-contiguous float32 matrix (bit 1 = negative).");
}
