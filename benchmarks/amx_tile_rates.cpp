// How fast the AMX tile unit runs int8 dot products on this CPU, alone and fed from memory: the measurements
// behind docs/KERNELS.md "Tried and not kept: the GEMM on AMX tiles". Not part of the library (horq has no
// AMX path); x86-64 Linux with AMX-TILE + AMX-INT8 only.
//
//   g++ -O2 -mamx-tile -mamx-int8 -mavx512f -mavx512bw benchmarks/amx_tile_rates.cpp -o /tmp/amx_tile_rates
//   /tmp/amx_tile_rates
//
// Each case runs blocks of 9 row words (a 3x3 convolution over 64 channels: one 64-byte tile row per word)
// with 4 accumulator tiles (2 filter tiles x 2 column tiles, 16 x 16 int32 each) and prints nanoseconds per
// TDPBSSD (16 x 16 x 64 = 16,384 multiply-accumulates of +-1 bytes):
//   chain          one accumulator, operands in registers: the instruction's own rate
//   four chains    4 accumulators, operands in registers, zeroed and stored per block
//   loads, L1      4 tile loads per 4 dot products (2 A + 2 B tiles of unchanged buffers in L1)
//   B rewritten    the B tiles (18 KB) written with vector stores before each block (bits -> bytes), then loaded
//   B rotating     B written two blocks ahead into 4 rotating buffers (72 KB: past L1), loaded from L2
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {

struct alignas(64) TileConfig {
  std::uint8_t palette, start_row, reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};

constexpr int kWords = 9, kTile = 1024, kBlocks = 100000;
alignas(64) std::int8_t a_tiles[2 * kWords * kTile];
alignas(64) std::int8_t b_tiles[4 * 2 * kWords * kTile];
alignas(64) std::int32_t c_out[4 * 256];

void write_tiles(std::int8_t* b, int tiles, long seed) {
  const __m512i v = _mm512_set1_epi8(static_cast<char>(seed));
  for (int i = 0; i < tiles * 16; ++i)
    _mm512_storeu_si512(b + i * 64, _mm512_add_epi8(v, _mm512_set1_epi8(static_cast<char>(i))));
}

void zero_accumulators() {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}

void store_accumulators() {
  _tile_stored(0, c_out, 64);
  _tile_stored(1, c_out + 256, 64);
  _tile_stored(2, c_out + 512, 64);
  _tile_stored(3, c_out + 768, 64);
}

void block(const std::int8_t* b) {
  zero_accumulators();
  for (int w = 0; w < kWords; ++w) {
    _tile_loadd(4, a_tiles + w * kTile, 64);
    _tile_loadd(6, b + w * kTile, 64);
    _tile_dpbssd(0, 4, 6);
    _tile_loadd(5, a_tiles + (kWords + w) * kTile, 64);
    _tile_dpbssd(1, 5, 6);
    _tile_loadd(7, b + (kWords + w) * kTile, 64);
    _tile_dpbssd(2, 4, 7);
    _tile_dpbssd(3, 5, 7);
  }
  store_accumulators();
}

template <class F>
void report(const char* name, long dots, F&& run) {
  const auto t0 = std::chrono::steady_clock::now();
  run();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%-14s %6.2f ns per TDPBSSD\n", name, s / static_cast<double>(dots) * 1e9);
}

}  // namespace

int main() {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) {
    std::printf("the OS did not grant AMX tile data to this process\n");
    return 1;
  }
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
  _tile_loadconfig(&cfg);
  std::memset(a_tiles, 1, sizeof a_tiles);
  std::memset(b_tiles, 1, sizeof b_tiles);
  const long dots = 4L * kWords * kBlocks;
  report("chain", dots, [] {
    _tile_loadd(4, a_tiles, 64);
    _tile_loadd(6, b_tiles, 64);
    for (long i = 0; i < 4L * kWords * kBlocks; ++i) _tile_dpbssd(0, 4, 6);
  });
  report("four chains", dots, [] {
    _tile_loadd(4, a_tiles, 64);
    _tile_loadd(5, a_tiles + kTile, 64);
    _tile_loadd(6, b_tiles, 64);
    _tile_loadd(7, b_tiles + kTile, 64);
    for (long i = 0; i < kBlocks; ++i) {
      zero_accumulators();
      for (int w = 0; w < kWords; ++w) {
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 5, 6);
        _tile_dpbssd(2, 4, 7);
        _tile_dpbssd(3, 5, 7);
      }
      store_accumulators();
    }
  });
  report("loads, L1", dots, [] {
    for (long i = 0; i < kBlocks; ++i) block(b_tiles);
  });
  report("B rewritten", dots, [] {
    for (long i = 0; i < kBlocks; ++i) {
      write_tiles(b_tiles, 2 * kWords, i);
      block(b_tiles);
    }
  });
  report("B rotating", dots, [] {
    for (long i = 0; i < kBlocks; ++i) {
      write_tiles(b_tiles + ((i + 2) % 4) * 2 * kWords * kTile, 2 * kWords, i);
      block(b_tiles + (i % 4) * 2 * kWords * kTile);
    }
  });
  _tile_release();
  return 0;
}
