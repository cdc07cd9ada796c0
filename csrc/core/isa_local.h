// Code that an ISA file (*_avx2.cpp, *_avx512.cpp: compiled with that ISA's flags) shares with other files must
// stay that file's own. An inline function, a function template over sizes or shared types (std::vector<double>'s
// members among them) or a lambda inside either is emitted as one weak symbol in every file that compiles it, and
// the linker keeps one copy for all of them: if it keeps an ISA file's, the generic path (or the avx2 path, given
// an avx512 file's copy) runs instructions its CPU may not have. The shared implementation headers (the *_walk.h
// loops, outer_panel.h) therefore put their code in an unnamed namespace, templates over an ISA's own types are
// that file's own anyway, and an ISA file's containers take the allocator below, whose type is the file's own.
// tests/kernels/test_portable_build.py checks the built library for weak symbols that an ISA file shares with
// another file, and runs the C++ test on emulated CPUs without AVX-512 and without AVX.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace horq {
namespace {

// std::allocator<T>, as the including file's own type; Uninit: resize() default-initializes (layer.h's
// UninitAllocator), for buffers every element of which is written before it is read.
template <class T, bool Uninit = false>
struct LocalAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = LocalAllocator<U, Uninit>;
  };
  LocalAllocator() = default;
  template <class U>
  LocalAllocator(const LocalAllocator<U, Uninit>&) noexcept {}
  template <class U>
  void construct(U* p) {
    if constexpr (Uninit) {
      ::new (static_cast<void*>(p)) U;
    } else {
      ::new (static_cast<void*>(p)) U();
    }
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

template <class T>
using LocalVector = std::vector<T, LocalAllocator<T>>;
template <class T>
using LocalUninitVector = std::vector<T, LocalAllocator<T, true>>;

// Floats per 64-byte cache line, and the first float at or after buf that starts one: a buffer allocated
// kLineFloats - 1 floats longer than it is used, whose vector loads and stores then stay within lines (a split one
// costs two). Here, in the unnamed namespace, so that ISA and other files alike may call it.
constexpr std::size_t kLineFloats = 64 / sizeof(float);
inline float* line_start(float* buf) {
  const std::size_t at = reinterpret_cast<std::uintptr_t>(buf) / sizeof(float) % kLineFloats;
  return buf + (kLineFloats - at) % kLineFloats;
}

}  // namespace
}  // namespace horq
