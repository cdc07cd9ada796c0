// Each intrinsic the AVX-512 kernels use, on directed inputs, against the behaviour Intel documents:
// compare-predicate truth tables with NaN, -0.0 and denormals; rounding to nearest even at float and double
// ties; NaN quieting in float -> double; per-lane popcount; zero- vs merge-masking; masked stores that leave
// unselected lanes alone; masked loads whose unselected lanes lie on an inaccessible page (fault
// suppression). Linked into harness.cpp, so the emulated build checks immintrin.h against the documented
// results and the hardware build checks those expectations against the CPU.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <utility>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define HORQ_GUARD_PAGES 1
#endif

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok && ++failures <= 10) std::printf("intrinsic %s: not as documented\n", what);
}

template <class T, class U>
T bits_as(U x) {
  static_assert(sizeof(T) == sizeof(U), "same size");
  T r;
  std::memcpy(&r, &x, sizeof r);
  return r;
}

// VCMPPS/VCMPPD truth tables (Intel SDM), predicates 0..15; 16..31 repeat them with the other signalling
// behaviour. Bit 0: a > b, bit 1: a < b, bit 2: a == b, bit 3: unordered (a NaN operand).
constexpr unsigned kTruth[16] = {0b0100, 0b0010, 0b0110, 0b1000, 0b1011, 0b1101, 0b1001, 0b0111,
                                 0b1100, 0b1010, 0b1110, 0b0000, 0b0011, 0b0101, 0b0001, 0b1111};

template <class T>
bool documented(T a, T b, int p) {
  const int rel = std::isnan(a) || std::isnan(b) ? 3 : a > b ? 0 : a < b ? 1 : 2;
  return (kTruth[p & 15] >> rel & 1u) != 0;
}

template <int... P>
void check_predicates(std::integer_sequence<int, P...>) {
  const float nan = std::nanf(""), inf = HUGE_VALF, denorm = bits_as<float>(0x00000001u);
  const float fa[16] = {1, 2, 1, nan, 1, nan, -0.0f, 0.0f, inf, -inf, denorm, -1, 3, nan, 0, -inf};
  const float fb[16] = {2, 1, 1, 1, nan, nan, 0.0f, -0.0f, 1, -inf, 0.0f, -2, 3, inf, 0, inf};
  double da[8], db[8];
  for (int i = 0; i < 8; ++i) da[i] = fa[i], db[i] = fb[i];
  const __m512 a = _mm512_maskz_loadu_ps(0xffff, fa), b = _mm512_maskz_loadu_ps(0xffff, fb);
  const __m512d ad = _mm512_loadu_pd(da), bd = _mm512_loadu_pd(db);
  const __mmask8 k = 0xb5;
  const unsigned got_ps[] = {static_cast<unsigned>(_mm512_cmp_ps_mask(a, b, P))...};
  const unsigned got_pd[] = {static_cast<unsigned>(_mm512_mask_cmp_pd_mask(k, ad, bd, P))...};
  for (int p = 0; p < 32; ++p) {
    unsigned want_ps = 0, want_pd = 0;
    for (int i = 0; i < 16; ++i) want_ps |= static_cast<unsigned>(documented(fa[i], fb[i], p)) << i;
    for (int i = 0; i < 8; ++i) want_pd |= static_cast<unsigned>((k >> i & 1) && documented(da[i], db[i], p)) << i;
    if ((got_ps[p] != want_ps || got_pd[p] != want_pd) && ++failures <= 10)
      std::printf("intrinsic compare predicate %d: ps %04x (want %04x), masked pd %02x (want %02x)\n", p,
                  got_ps[p], want_ps, got_pd[p], want_pd);
  }
}

void check_conversions() {
  const double t = std::ldexp(1.0, -24);  // half a float ulp at 1
  const double d[8] = {1 + t, 1 + 3 * t, 1 + t + std::ldexp(1.0, -50), -(1 + t),
                       1e300, std::ldexp(1.0, -150), 3 * std::ldexp(1.0, -150), -0.0};
  const std::uint32_t want_f[8] = {0x3f800000u, 0x3f800002u, 0x3f800001u, 0xbf800000u,
                                   0x7f800000u, 0x00000000u, 0x00000002u, 0x80000000u};
  alignas(32) float f[8];
  _mm256_store_ps(f, _mm512_cvtpd_ps(_mm512_loadu_pd(d)));
  bool ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && bits_as<std::uint32_t>(f[i]) == want_f[i];
  expect(ok, "_mm512_cvtpd_ps (round to nearest even, overflow, denormals)");

  const std::uint32_t fin[8] = {0x7f800001u, 0xffc00123u, 0x00000001u, 0xff800000u,
                                0x7f7fffffu, 0x80000000u, 0x3dcccccdu, 0x3f800000u};
  const std::uint64_t want_d[8] = {0x7ff8000020000000u, 0xfff8002460000000u, 0x36a0000000000000u, 0xfff0000000000000u,
                                   0x47efffffe0000000u, 0x8000000000000000u, 0x3fb99999a0000000u, 0x3ff0000000000000u};
  double dd[8];
  _mm512_mask_storeu_pd(dd, 0xff, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(0xff, fin)));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && bits_as<std::uint64_t>(dd[i]) == want_d[i];
  expect(ok, "_mm512_cvtps_pd (exact, signalling NaN quieted, payload kept)");

  const std::int64_t p53 = std::int64_t{1} << 53;
  const std::int64_t in[8] = {p53 + 1, -1, INT64_MIN, INT64_MAX, p53 + 3, 0, 12345, -p53 - 1};
  const double want_c[8] = {std::ldexp(1.0, 53), -1, -std::ldexp(1.0, 63), std::ldexp(1.0, 63),
                            std::ldexp(1.0, 53) + 4, 0, 12345, -std::ldexp(1.0, 53)};
  _mm512_mask_storeu_pd(dd, 0xff, _mm512_cvtepi64_pd(_mm512_loadu_si512(in)));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && dd[i] == want_c[i];
  expect(ok, "_mm512_cvtepi64_pd (round to nearest even)");
  // to float32 in one rounding: 2^24 + 1 and 2^24 + 3 are ties (to even); 2^53 + 2^29 + 1 rounds up, where a pass
  // through double would make it a tie (2^53 + 2^29) and round it down to even
  const std::int64_t p24 = std::int64_t{1} << 24;
  const std::int64_t inf32[8] = {p24 + 1, p24 + 3, -p24 - 1, p53 + 1, (p24 << 29) + (std::int64_t{1} << 29) + 1, 0,
                                 -7, INT64_MIN};
  const float want_q[8] = {std::ldexp(1.0f, 24), std::ldexp(1.0f, 24) + 4, -std::ldexp(1.0f, 24),
                           std::ldexp(1.0f, 53), std::ldexp(1.0f, 53) + std::ldexp(1.0f, 30), 0, -7,
                           -std::ldexp(1.0f, 63)};
  alignas(32) float fo[8];
  _mm256_store_ps(fo, _mm512_cvtepi64_ps(_mm512_loadu_si512(inf32)));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && fo[i] == want_q[i];
  expect(ok, "_mm512_cvtepi64_ps (one rounding, to nearest even)");
}

void check_integer() {
  const std::uint64_t x[8] = {0, ~std::uint64_t{0}, std::uint64_t{1} << 63, 0x5555555555555555u,
                              0x8000000000000001u, 0xff, 0x0123456789abcdefu, 7};
  const std::uint64_t want_pc[8] = {0, 64, 1, 32, 2, 8, 32, 3};
  alignas(64) std::uint64_t out[8];
  const __m512i vx = _mm512_loadu_si512(x);
  _mm512_store_si512(out, _mm512_popcnt_epi64(vx));
  expect(std::memcmp(out, want_pc, sizeof out) == 0, "_mm512_popcnt_epi64");
  expect(_mm512_reduce_add_epi64(_mm512_popcnt_epi64(vx)) == 142, "_mm512_reduce_add_epi64");

  _mm512_store_si512(out, _mm512_add_epi64(_mm512_xor_si512(vx, _mm512_set1_epi64(-1)), _mm512_set1_epi64(1)));
  bool ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && out[i] == 0 - x[i];  // two's complement negation, wrapping
  expect(ok, "_mm512_xor_si512 / _mm512_add_epi64 / _mm512_set1_epi64");

  _mm512_store_si512(out, _mm512_mask_or_epi64(_mm512_set1_epi64(0x10), 0x5a, vx, _mm512_set1_epi64(1)));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && out[i] == (0x5a >> i & 1 ? x[i] | 1 : 0x10);
  expect(ok, "_mm512_mask_or_epi64 (merge-masking)");

  _mm512_store_si512(out, _mm512_maskz_loadu_epi64(0xa5, x));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && out[i] == (0xa5 >> i & 1 ? x[i] : 0);
  expect(ok, "_mm512_maskz_loadu_epi64 (zero-masking)");

  _mm512_store_si512(out, _mm512_setzero_si512());
  expect(out[0] == 0 && out[7] == 0, "_mm512_setzero_si512");

  _mm512_store_si512(out, _mm512_srli_epi64(vx, 4));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && out[i] == x[i] >> 4;  // logical: no sign bits shifted in
  expect(ok, "_mm512_srli_epi64");
  _mm512_store_si512(out, _mm512_slli_epi64(vx, 63));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && out[i] == x[i] << 63;
  expect(ok, "_mm512_slli_epi64");

  const __m512i vy = _mm512_add_epi64(vx, _mm512_set1_epi64(1000));
  std::uint64_t y[8];
  for (int i = 0; i < 8; ++i) y[i] = x[i] + 1000;
  _mm512_store_si512(out, _mm512_mask_blend_epi64(0x96, vx, vy));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && out[i] == (0x96 >> i & 1 ? y[i] : x[i]);
  expect(ok, "_mm512_mask_blend_epi64");
  _mm512_store_si512(out, _mm512_shuffle_i64x2(vx, vy, _MM_SHUFFLE(0, 3, 1, 2)));  // lanes 2, 1 of x; 3, 0 of y
  const std::uint64_t want_sh[8] = {x[4], x[5], x[2], x[3], y[6], y[7], y[0], y[1]};
  expect(std::memcmp(out, want_sh, sizeof out) == 0, "_mm512_shuffle_i64x2");
  // 256-bit words: a masked load (lanes past the mask zero), xor, per-word popcount, zero-extended to 512 bits
  const __m256i lo4 = _mm256_maskz_loadu_epi64(0x7, x), hi4 = _mm256_maskz_loadu_epi64(0xf, y + 4);
  _mm512_store_si512(out, _mm512_zextsi256_si512(_mm256_popcnt_epi64(_mm256_xor_si256(lo4, hi4))));
  ok = out[3] == static_cast<std::uint64_t>(__builtin_popcountll(y[7]));
  for (int i = 0; i < 3; ++i) ok = ok && out[i] == static_cast<std::uint64_t>(__builtin_popcountll(x[i] ^ y[4 + i]));
  for (int i = 4; i < 8; ++i) ok = ok && out[i] == 0;
  expect(ok, "_mm256_maskz_loadu_epi64 / _mm256_xor_si256 / _mm256_popcnt_epi64 / _mm512_zextsi256_si512");
  _mm512_store_si512(out, _mm512_unpacklo_epi64(vx, vy));
  const std::uint64_t want_lo[8] = {x[0], y[0], x[2], y[2], x[4], y[4], x[6], y[6]};
  expect(std::memcmp(out, want_lo, sizeof out) == 0, "_mm512_unpacklo_epi64");
  _mm512_store_si512(out, _mm512_unpackhi_epi64(vx, vy));
  const std::uint64_t want_hi[8] = {x[1], y[1], x[3], y[3], x[5], y[5], x[7], y[7]};
  expect(std::memcmp(out, want_hi, sizeof out) == 0, "_mm512_unpackhi_epi64");
  _mm512_store_si512(out, _mm512_permutex_epi64(vx, _MM_SHUFFLE(0, 0, 3, 1)));  // words 1, 3, 0, 0 of each half
  const std::uint64_t want_pm[8] = {x[1], x[3], x[0], x[0], x[5], x[7], x[4], x[4]};
  expect(std::memcmp(out, want_pm, sizeof out) == 0, "_mm512_permutex_epi64");

  // The high halves of the operands are dropped, and the first operand goes above the second.
  const __mmask32 w = _mm512_kunpackw(static_cast<__mmask32>(0xdead1234u), static_cast<__mmask32>(0xbeef8765u));
  expect(w == 0x12348765u, "_mm512_kunpackw");
  const __mmask64 d = _mm512_kunpackd(static_cast<__mmask64>(0xffffffff89abcdefull),
                                      static_cast<__mmask64>(0x1234567801234567ull));
  expect(_cvtmask64_u64(d) == 0x89abcdef01234567ull, "_mm512_kunpackd / _cvtmask64_u64");

  // 16-bit lanes (the bands' per-channel pixel masks): word i tested against a one-bit pattern, and all-ones words
  alignas(64) std::uint16_t hw[32];
  for (int i = 0; i < 32; ++i) hw[i] = static_cast<std::uint16_t>(i * 0x0911u ^ (i % 3 == 0 ? 0x8000u : 0u));
  const __m512i vh = _mm512_load_si512(hw);
  for (int j = 0; j < 16; ++j) {
    unsigned want = 0;
    for (int i = 0; i < 32; ++i) want |= (hw[i] >> j & 1u) << i;
    expect(_mm512_test_epi16_mask(vh, _mm512_set1_epi16(static_cast<short>(1u << j))) == want,
           "_mm512_test_epi16_mask / _mm512_set1_epi16");
  }
  hw[5] = 0;
  expect(_mm512_test_epi16_mask(_mm512_load_si512(hw), _mm512_set1_epi16(-1)) == 0xffffffdfu,
         "_mm512_test_epi16_mask (a zero word)");
}

// The pool's permutes and masked moves, on lanes that name themselves (lane i of a is i, of b 100 + i).
void check_permutes() {
  alignas(64) float av[16], bv[16], out[16];
  for (int i = 0; i < 16; ++i) av[i] = static_cast<float>(i), bv[i] = static_cast<float>(100 + i);
  const __m512 a = _mm512_loadu_ps(av), b = _mm512_loadu_ps(bv);
  // Index bit 4 picks b; higher bits are ignored.
  const __m512i idx = _mm512_setr_epi32(0, 17, 2, 31, 15, 16, 32 + 3, 64 + 18, 5, 21, 6, 22, 7, 23, 8, 24);
  _mm512_storeu_ps(out, _mm512_permutex2var_ps(a, idx, b));
  const float want_p[16] = {0, 101, 2, 115, 15, 100, 3, 102, 5, 105, 6, 106, 7, 107, 8, 108};
  expect(std::memcmp(out, want_p, sizeof out) == 0, "_mm512_permutex2var_ps / _mm512_setr_epi32");
  // valignd: b's lanes from 15 on, then a's.
  _mm512_storeu_ps(out, _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b), 15)));
  bool ok = out[0] == 115.0f;
  for (int i = 1; i < 16; ++i) ok = ok && out[i] == static_cast<float>(i - 1);
  expect(ok, "_mm512_alignr_epi32 / _mm512_castsi512_ps");
  _mm512_storeu_ps(out, _mm512_mask_mov_ps(a, 0x8001, b));
  ok = true;
  for (int i = 0; i < 16; ++i) ok = ok && out[i] == ((i == 0 || i == 15) ? bv[i] : av[i]);
  expect(ok, "_mm512_mask_mov_ps (merge-masking)");
  _mm512_storeu_ps(out, _mm512_mask_loadu_ps(b, 0x00ff, av));
  ok = true;
  for (int i = 0; i < 16; ++i) ok = ok && out[i] == (i < 8 ? av[i] : bv[i]);
  expect(ok, "_mm512_mask_loadu_ps (merge-masking)");
}

void check_float_lanes() {
  const std::uint32_t fin[16] = {0x80000000u, 0xffc00123u, 0xff800000u, 0xbf800000u, 0x3f800000u, 0x7f800001u,
                                 0x00000001u, 0x807fffffu, 0x40490fdbu, 0xc0490fdbu, 0x7f800000u, 0x00000000u,
                                 0xff7fffffu, 0x7fc00000u, 0x3dcccccdu, 0xbdcccccdu};
  const __m512 v = _mm512_maskz_loadu_ps(0xffff, fin);
  alignas(64) std::uint32_t out[16];
  _mm512_store_si512(out, _mm512_castps_si512(_mm512_abs_ps(v)));
  bool ok = true;
  for (int i = 0; i < 16; ++i) ok = ok && out[i] == (fin[i] & 0x7fffffffu);
  expect(ok, "_mm512_abs_ps / _mm512_castps_si512 (sign bit cleared, NaN payload kept)");

  const __mmask16 k = 0xc3f0;
  const __m512i e = _mm512_set1_epi32(0x7f800000);
  const __mmask16 special = _mm512_mask_cmpeq_epi32_mask(k, _mm512_and_si512(_mm512_castps_si512(v), e), e);
  unsigned want = 0;
  for (int i = 0; i < 16; ++i)
    want |= static_cast<unsigned>((k >> i & 1) && (fin[i] & 0x7f800000u) == 0x7f800000u) << i;
  expect(special == want, "_mm512_mask_cmpeq_epi32_mask / _mm512_and_si512 / _mm512_set1_epi32");

  alignas(32) float lo[8], hi[8];
  _mm256_store_ps(lo, _mm512_castps512_ps256(v));
  _mm256_store_ps(hi, _mm512_extractf32x8_ps(v, 1));
  expect(std::memcmp(lo, fin, 32) == 0 && std::memcmp(hi, fin + 8, 32) == 0,
         "_mm512_castps512_ps256 / _mm512_extractf32x8_ps (lane order)");

  // MAXPS (MINPS) returns its second operand unless the first is greater (less): NaN in either, and +-0.0, give the
  // second.
  alignas(64) static const std::int32_t rotate[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0x2f, 0x10};
  const __m512 rot = _mm512_permutexvar_ps(_mm512_loadu_si512(rotate), v);  // lane i: v[i + 1], then v[15], v[0]
  _mm512_store_si512(out, _mm512_castps_si512(rot));
  ok = out[14] == fin[15] && out[15] == fin[0];
  for (int i = 0; i < 14; ++i) ok = ok && out[i] == fin[i + 1];
  expect(ok, "_mm512_permutexvar_ps (index bits above the lane number ignored)");
  _mm512_store_si512(out, _mm512_castps_si512(_mm512_max_ps(v, rot)));
  ok = true;
  for (int i = 0; i < 16; ++i) {
    float a, b;
    std::memcpy(&a, &fin[i], 4), std::memcpy(&b, &fin[i == 14 ? 15 : i == 15 ? 0 : i + 1], 4);
    const float want = a > b ? a : b;
    ok = ok && std::memcmp(&out[i], &want, 4) == 0;
  }
  expect(ok, "_mm512_max_ps (NaN and signed zeros: the second operand)");
  _mm512_store_si512(out, _mm512_castps_si512(_mm512_min_ps(v, rot)));
  ok = true;
  for (int i = 0; i < 16; ++i) {
    float a, b;
    std::memcpy(&a, &fin[i], 4), std::memcpy(&b, &fin[i == 14 ? 15 : i == 15 ? 0 : i + 1], 4);
    const float want = a < b ? a : b;
    ok = ok && std::memcmp(&out[i], &want, 4) == 0;
  }
  expect(ok, "_mm512_min_ps (NaN and signed zeros: the second operand)");

  _mm512_store_si512(out, _mm512_castps_si512(_mm512_maskz_loadu_ps(0x8421, fin)));
  ok = true;
  for (int i = 0; i < 16; ++i) ok = ok && out[i] == (0x8421 >> i & 1 ? fin[i] : 0u);
  _mm512_store_si512(out, _mm512_castps_si512(_mm512_setzero_ps()));
  ok = ok && out[0] == 0 && out[15] == 0;
  expect(ok, "_mm512_maskz_loadu_ps (zero-masking) / _mm512_setzero_ps");

  const std::uint64_t din[8] = {0x8000000000000000u, 0xfff8000000000123u, 0xfff0000000000000u, 0xbff0000000000000u,
                                0x3ff0000000000000u, 0x8000000000000001u, 0x7ff0000000000001u, 0x0000000000000000u};
  double d[8];
  std::memcpy(d, din, sizeof d);
  double r[8];
  _mm512_mask_storeu_pd(r, 0xff, _mm512_abs_pd(_mm512_maskz_loadu_pd(0xff, d)));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && bits_as<std::uint64_t>(r[i]) == (din[i] & 0x7fffffffffffffffu);
  expect(ok, "_mm512_abs_pd");

  // Merge-masked add keeps src lanes; separately rounded add, sub and mul.
  const double u = 1 + std::ldexp(1.0, -52);  // u * u - u rounds differently when fused
  const double p[8] = {1, 2, 3, 4, 5, 6, 7, u}, q[8] = {0.5, 0.25, -3, 1e300, -5, 0.125, 1, u};
  const __m512d vp = _mm512_loadu_pd(p), vq = _mm512_loadu_pd(q);
  _mm512_mask_storeu_pd(r, 0xff, _mm512_mask_add_pd(_mm512_set1_pd(-1.0), 0x3c, vp, vq));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && r[i] == (0x3c >> i & 1 ? p[i] + q[i] : -1.0);
  _mm512_mask_storeu_pd(r, 0xff, _mm512_sub_pd(_mm512_mul_pd(vp, vq), _mm512_add_pd(vp, _mm512_setzero_pd())));
  for (int i = 0; i < 8; ++i) ok = ok && r[i] == p[i] * q[i] - p[i];
  expect(ok, "_mm512_mask_add_pd (merge-masking) / _mm512_add_pd / _mm512_sub_pd / _mm512_mul_pd");

  // The 8-lane register of the Winograd tiles' last columns: lane permute (index bits above 3 ignored), immediate
  // blend (bit i: lane i from the second operand), one rounding in fmadd, separately rounded mul and sub.
  const float f1 = 1 + std::ldexp(1.0f, -23);  // f1 * f1 - f1 rounds differently when fused
  const float fa[8] = {f1, 2, 3, 4, 5, 6, 7, 8}, fb[8] = {f1, -1, 0.5f, 0.25f, 3, -2, 1e30f, 0};
  float fr[8];
  const __m256 va = _mm256_loadu_ps(fa), vb = _mm256_loadu_ps(fb);
  _mm256_storeu_ps(fr, _mm256_permutevar8x32_ps(va, _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0x18)));
  ok = fr[7] == fa[0];
  for (int i = 0; i < 7; ++i) ok = ok && fr[i] == fa[7 - i];
  expect(ok, "_mm256_permutevar8x32_ps / _mm256_setr_epi32 / _mm256_loadu_ps / _mm256_storeu_ps");
  _mm256_storeu_ps(fr, _mm256_blend_ps(va, vb, 0x92));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && fr[i] == (0x92 >> i & 1 ? fb[i] : fa[i]);
  expect(ok, "_mm256_blend_ps");
  // In-lane interleaves and shuffles, 128-bit permutes (store3's 3-way interleave).
  _mm256_storeu_ps(fr, _mm256_unpacklo_ps(va, vb));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && fr[i] == (i % 2 ? fb : fa)[i / 4 * 4 + i % 4 / 2];
  _mm256_storeu_ps(fr, _mm256_unpackhi_ps(va, vb));
  for (int i = 0; i < 8; ++i) ok = ok && fr[i] == (i % 2 ? fb : fa)[i / 4 * 4 + 2 + i % 4 / 2];
  expect(ok, "_mm256_unpacklo_ps / _mm256_unpackhi_ps");
  _mm256_storeu_ps(fr, _mm256_shuffle_ps(va, vb, _MM_SHUFFLE(1, 3, 0, 2)));
  ok = true;
  for (int h = 0; h < 8; h += 4) {
    const int sel[4] = {2, 0, 3, 1};
    for (int i = 0; i < 4; ++i) ok = ok && fr[h + i] == (i < 2 ? fa : fb)[h + sel[i]];
  }
  expect(ok, "_mm256_shuffle_ps");
  _mm256_storeu_ps(fr, _mm256_permute2f128_ps(va, vb, 0x31));
  ok = true;
  for (int i = 0; i < 4; ++i) ok = ok && fr[i] == fa[4 + i] && fr[4 + i] == fb[4 + i];
  _mm256_storeu_ps(fr, _mm256_permute2f128_ps(va, vb, 0x82));
  for (int i = 0; i < 4; ++i) ok = ok && fr[i] == fb[i] && fr[4 + i] == 0.0f;
  expect(ok, "_mm256_permute2f128_ps");
  _mm256_storeu_ps(fr, _mm256_fmadd_ps(va, vb, _mm256_sub_ps(_mm256_setzero_ps(), va)));
  ok = true;
  for (int i = 0; i < 8; ++i) ok = ok && fr[i] == std::fma(fa[i], fb[i], -fa[i]);
  volatile float sq = f1 * f1;
  ok = ok && fr[0] != sq - f1;  // the fused result differs from the twice-rounded one here
  _mm256_storeu_ps(fr, _mm256_sub_ps(_mm256_mul_ps(va, vb), va));
  for (int i = 0; i < 8; ++i) {
    volatile float prod = fa[i] * fb[i];  // rounded to float before the subtraction
    ok = ok && fr[i] == prod - fa[i];
  }
  expect(ok, "_mm256_fmadd_ps (one rounding) / _mm256_mul_ps / _mm256_sub_ps");
}

void check_masked_stores() {
  const double guard = -7.0;
  double d[10];
  for (double& x : d) x = guard;
  _mm512_mask_storeu_pd(d + 1, 0x96, _mm512_set1_pd(2.5));
  bool ok = d[0] == guard && d[9] == guard;
  for (int i = 0; i < 8; ++i) ok = ok && d[1 + i] == (0x96 >> i & 1 ? 2.5 : guard);
  expect(ok, "_mm512_mask_storeu_pd (only selected lanes written)");

  std::uint64_t u[10];
  for (auto& x : u) x = 7;
  _mm512_mask_storeu_epi64(u + 1, 0x0f, _mm512_set1_epi64(-3));
  ok = u[0] == 7 && u[9] == 7;
  for (int i = 0; i < 8; ++i) ok = ok && u[1 + i] == (i < 4 ? ~std::uint64_t{2} : 7);
  expect(ok, "_mm512_mask_storeu_epi64 (only selected lanes written)");

  float f[10];
  for (float& x : f) x = -7.0f;
  _mm256_mask_storeu_ps(f + 1, 0x69, _mm512_cvtpd_ps(_mm512_set1_pd(1.5)));
  ok = f[0] == -7.0f && f[9] == -7.0f;
  for (int i = 0; i < 8; ++i) ok = ok && f[1 + i] == (0x69 >> i & 1 ? 1.5f : -7.0f);
  expect(ok, "_mm256_mask_storeu_ps (only selected lanes written)");
}

// Masked loads of one selected value whose unselected lanes lie on an inaccessible page: must not fault.
void check_fault_suppression() {
#ifdef HORQ_GUARD_PAGES
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  void* base = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED || mprotect(static_cast<char*>(base) + page, page, PROT_NONE) != 0) {
    expect(false, "guard page setup");
    return;
  }
  char* end = static_cast<char*>(base) + page;
  double* d = reinterpret_cast<double*>(end) - 1;
  float* f = reinterpret_cast<float*>(end) - 1;
  *d = 3.0;
  double r[8];
  _mm512_mask_storeu_pd(r, 0xff, _mm512_maskz_loadu_pd(0x01, d));
  bool ok = r[0] == 3.0 && r[1] == 0.0 && r[7] == 0.0;
  alignas(64) std::uint64_t w[8];
  _mm512_store_si512(w, _mm512_maskz_loadu_epi64(0x01, d));
  ok = ok && w[0] == bits_as<std::uint64_t>(3.0) && w[7] == 0;
  *f = 2.0f;
  alignas(64) float v[16];
  _mm512_store_si512(v, _mm512_castps_si512(_mm512_maskz_loadu_ps(0x0001, f)));
  ok = ok && v[0] == 2.0f && v[15] == 0.0f;
  _mm256_store_ps(v, _mm256_maskz_loadu_ps(0x01, f));
  ok = ok && v[0] == 2.0f && v[7] == 0.0f;
  _mm512_store_si512(v, _mm512_castps_si512(_mm512_mask_loadu_ps(_mm512_set1_ps(-1.0f), 0x0001, f)));
  ok = ok && v[0] == 2.0f && v[15] == -1.0f;
  expect(ok, "masked loads next to an inaccessible page");
  munmap(base, 2 * page);
#endif
}

}  // namespace

int check_intrinsics() {
  failures = 0;
  check_predicates(std::make_integer_sequence<int, 32>());
  check_conversions();
  check_integer();
  check_float_lanes();
  check_masked_stores();
  check_permutes();
  check_fault_suppression();
  return failures;
}
