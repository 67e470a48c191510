/* One step of Adam/AdamW with bfloat16 moments (stochastically rounded) or int8 block codes:
 * see dltricks/optim/fast/native.py for the math and the contract. Plain C that gcc/clang
 * vectorize at -O3 -march=native; no intrinsics, so it builds on any CPU. Built with
 * -fopenmp where the compiler has it: the buffer is then split over `threads` threads of the
 * OpenMP runtime already in the process (torch's libgomp.so.1 on Linux wheels, whose thread
 * pool torch's own kernels use); without OpenMP it runs on the calling thread. */
#include <stdint.h>
#include <string.h>
#include <math.h>

/* Elements per thread at least (waking a thread costs microseconds), and the alignment of a
 * thread's part (whole cache lines; for int8 whole blocks). */
#define DLTRICKS_MIN_PART ((int64_t)1 << 18)
#define DLTRICKS_PART_ALIGN 64

static inline int parts_for(int64_t n, int32_t threads) {
    int64_t parts = n / DLTRICKS_MIN_PART;
    if (parts > threads) parts = threads;
    return parts < 1 ? 1 : (int)parts;
}

static inline float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t float_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* state_precision._mix: xor-shift-multiply hash, in uint32 (wrapping) arithmetic. */
static inline uint32_t mix(uint32_t x) {
    x ^= x >> 16; x *= 0x45D9F3Bu;
    x ^= x >> 16; x *= 0x45D9F3Bu;
    return x ^ (x >> 16);
}

static inline __attribute__((always_inline)) void adam_bf16_loop(
    float *restrict p, const float *restrict g, uint16_t *restrict m, uint16_t *restrict v,
    int64_t n, uint32_t key, float decay, float l2, float step_size, float beta1,
    float one_minus_beta1, float beta2, float one_minus_beta2, float inv_sqrt_bc2, float eps,
    const int maximize, const int coupled)
{
    for (int64_t i = 0; i < n; ++i) {
        float gi = maximize ? -g[i] : g[i];
        float pi = p[i];
        if (coupled) gi += l2 * pi;
        float mi = bits_to_float((uint32_t)m[i] << 16);
        float vi = bits_to_float((uint32_t)v[i] << 16);
        mi = beta1 * mi + one_minus_beta1 * gi;
        vi = beta2 * vi + one_minus_beta2 * (gi * gi);
        float denom = sqrtf(vi) * inv_sqrt_bc2 + eps;
        p[i] = pi * decay - step_size * mi / denom;
        /* 32 random bits per element; 16 for each moment. Adding them below the 16 bits
         * bfloat16 keeps and truncating rounds up with probability (dropped bits) / 2^16. */
        uint32_t r = mix((uint32_t)i + key);
        m[i] = (uint16_t)((float_to_bits(mi) + (r & 0xFFFFu)) >> 16);
        v[i] = (uint16_t)((float_to_bits(vi) + (r >> 16)) >> 16);
    }
}

static void adam_bf16_range(
    float *restrict p, const float *restrict g, uint16_t *restrict m, uint16_t *restrict v,
    int64_t n, uint32_t key, float decay, float l2, float step_size, float beta1,
    float one_minus_beta1, float beta2, float one_minus_beta2, float inv_sqrt_bc2, float eps,
    int32_t maximize, int32_t coupled)
{
#define DLTRICKS_LOOP(MAX, COUPLED)                                                        \
    adam_bf16_loop(p, g, m, v, n, key, decay, l2, step_size, beta1, one_minus_beta1, beta2, \
                   one_minus_beta2, inv_sqrt_bc2, eps, MAX, COUPLED)
    if (maximize) {
        if (coupled) DLTRICKS_LOOP(1, 1); else DLTRICKS_LOOP(1, 0);
    } else {
        if (coupled) DLTRICKS_LOOP(0, 1); else DLTRICKS_LOOP(0, 0);
    }
#undef DLTRICKS_LOOP
}

/* The random bits follow the element (key + index), so any split gives the same result. */
void dltricks_adam_bf16(
    float *restrict p, const float *restrict g, uint16_t *restrict m, uint16_t *restrict v,
    int64_t n, uint32_t key, float decay, float l2, float step_size, float beta1,
    float one_minus_beta1, float beta2, float one_minus_beta2, float inv_sqrt_bc2, float eps,
    int32_t maximize, int32_t coupled, int32_t threads)
{
    const int parts = parts_for(n, threads);
    if (parts == 1) { /* no parallel region at all (a forked child, a small buffer) */
        adam_bf16_range(p, g, m, v, n, key, decay, l2, step_size, beta1, one_minus_beta1, beta2,
                        one_minus_beta2, inv_sqrt_bc2, eps, maximize, coupled);
        return;
    }
    const int64_t size =
        (n / parts + DLTRICKS_PART_ALIGN - 1) / DLTRICKS_PART_ALIGN * DLTRICKS_PART_ALIGN;
#pragma omp parallel for num_threads(parts) schedule(static, 1) if (parts > 1)
    for (int part = 0; part < parts; ++part) {
        const int64_t a = part * size, b = a + size < n ? a + size : n;
        if (a < b)
            adam_bf16_range(p + a, g + a, m + a, v + a, b - a, key + (uint32_t)a, decay, l2,
                            step_size, beta1, one_minus_beta1, beta2, one_minus_beta2,
                            inv_sqrt_bc2, eps, maximize, coupled);
    }
}

/* ---- 8-bit block codes (state_precision.quantize_blocks / dequantize_blocks) -------------
 * Blocks of 256 elements, each with its float32 absmax. A code c stands for the level
 * F((c + k) << 20) - L0 of absmax (F: the float32 with those bits; L0 = F(k << 20)): a float
 * format with 3 mantissa bits, shifted so that code 0 is zero. exp_avg: the sign in the
 * code's top bit, magnitudes 0..127 (k = DLTRICKS_SIGNED_K); exp_avg_sq: codes 0..255
 * (k = DLTRICKS_UNSIGNED_K), code 0 read as DLTRICKS_UNSIGNED_ZERO. Encoding is the nearest
 * level of a = |x| / absmax, found on the bits of a + L0: ((bits + 2^19) >> 20) - k. Written
 * operation by operation as the torch functions compute in float32, so a moment with the
 * same float32 value gets the same code. */
#define DLTRICKS_BLOCK 256
#define DLTRICKS_SIGNED_K 889u   /* (0x3F800000 >> 20) - 127 */
#define DLTRICKS_UNSIGNED_K 761u /* (0x3F800000 >> 20) - 255 */
/* What exp_avg_sq's code 0 reads as: 2^-37, a quarter of its lowest level (the middle of the
 * values that round to 0), so that a second moment too small for the map stays in Adam's
 * denominator. Every other level is above it: the level is max(level, this). */
#define DLTRICKS_UNSIGNED_ZERO 7.275957614183426e-12f

static inline __attribute__((always_inline)) void adam_int8_loop(
    float *restrict p, const float *restrict g, uint8_t *restrict mc, float *restrict mabs,
    uint8_t *restrict vc, float *restrict vabs, int64_t blocks, float decay, float l2,
    float step_size, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2,
    float inv_sqrt_bc2, float eps, const int maximize, const int coupled)
{
    const float low_m = bits_to_float(DLTRICKS_SIGNED_K << 20);
    const float low_v = bits_to_float(DLTRICKS_UNSIGNED_K << 20);
    float mnew[DLTRICKS_BLOCK], vnew[DLTRICKS_BLOCK];
    for (int64_t b = 0; b < blocks; ++b) {
        float *restrict pb = p + b * DLTRICKS_BLOCK;
        const float *restrict gb = g + b * DLTRICKS_BLOCK;
        uint8_t *restrict mb = mc + b * DLTRICKS_BLOCK;
        uint8_t *restrict vb = vc + b * DLTRICKS_BLOCK;
        const float am = mabs[b], av = vabs[b];
        /* Pass 1: decode, update, step; the block maxima of |m| and |v| as integer maxima of
         * their bits (non-negative floats order as their bits; vectorizes without
         * -ffast-math). The sign of m is its code's top bit, set on the float's. */
        uint32_t mmax = 0, vmax = 0;
        for (int i = 0; i < DLTRICKS_BLOCK; ++i) {
            float gi = maximize ? -gb[i] : gb[i];
            float pi = pb[i];
            if (coupled) gi += l2 * pi;
            const uint32_t cm = mb[i], cv = vb[i];
            float mag = (bits_to_float(((cm & 127u) + DLTRICKS_SIGNED_K) << 20) - low_m) * am;
            float mi = bits_to_float(float_to_bits(mag) | ((cm & 128u) << 24));
            float vlevel = bits_to_float((cv + DLTRICKS_UNSIGNED_K) << 20) - low_v;
            vlevel = vlevel > DLTRICKS_UNSIGNED_ZERO ? vlevel : DLTRICKS_UNSIGNED_ZERO;
            float vi = vlevel * av;
            mi = beta1 * mi + one_minus_beta1 * gi;
            vi = beta2 * vi + one_minus_beta2 * (gi * gi);
            float denom = sqrtf(vi) * inv_sqrt_bc2 + eps;
            pb[i] = pi * decay - step_size * mi / denom;
            mnew[i] = mi;
            vnew[i] = vi;
            uint32_t mbits = float_to_bits(mi) & 0x7FFFFFFFu;
            uint32_t vbits = float_to_bits(vi) & 0x7FFFFFFFu;
            mmax = mbits > mmax ? mbits : mmax;
            vmax = vbits > vmax ? vbits : vmax;
        }
        const float mx = bits_to_float(mmax), vx = bits_to_float(vmax);
        const float im = mx > 0.0f ? 1.0f / mx : 0.0f;
        const float iv = vx > 0.0f ? 1.0f / vx : 0.0f;
        /* Pass 2: encode, c = ((bits(min(a, 1) + L0) + 2^19) >> 20) - k. */
        for (int i = 0; i < DLTRICKS_BLOCK; ++i) {
            float a = fabsf(mnew[i]) * im;
            a = (a < 1.0f ? a : 1.0f) + low_m;
            uint32_t c = ((float_to_bits(a) + (1u << 19)) >> 20) - DLTRICKS_SIGNED_K;
            mb[i] = (uint8_t)(c | (mnew[i] < 0.0f ? 128u : 0u));
            float w = vnew[i] > 0.0f ? vnew[i] : 0.0f;
            float e = w * iv;
            e = (e < 1.0f ? e : 1.0f) + low_v;
            vb[i] = (uint8_t)(((float_to_bits(e) + (1u << 19)) >> 20) - DLTRICKS_UNSIGNED_K);
        }
        mabs[b] = mx;
        vabs[b] = vx;
    }
}

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* The same loop, eight elements at a time with AVX2 (where -march=native has it): gcc
 * vectorizes the plain loop above 32 bytes at a time (the width of the codes), with shuffles
 * to widen and narrow them that cost about a fifth of the step. Same operations, same codes;
 * the parameter may differ in the last bit where gcc contracts a product and a sum into an
 * FMA at another place. */
#define DLTRICKS_INT8_LANES 8

static inline float max_of_bits(__m256i x) { /* largest of eight non-negative floats' bits */
    __m128i r = _mm_max_epu32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
    r = _mm_max_epu32(r, _mm_shuffle_epi32(r, 0x4E));
    r = _mm_max_epu32(r, _mm_shuffle_epi32(r, 0xB1));
    return bits_to_float((uint32_t)_mm_cvtsi128_si32(r));
}

static inline __attribute__((always_inline)) void adam_int8_loop_avx2(
    float *restrict p, const float *restrict g, uint8_t *restrict mc, float *restrict mabs,
    uint8_t *restrict vc, float *restrict vabs, int64_t blocks, float decay, float l2,
    float step_size, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2,
    float inv_sqrt_bc2, float eps, const int maximize, const int coupled)
{
    const __m256i k_m = _mm256_set1_epi32((int32_t)DLTRICKS_SIGNED_K);
    const __m256i k_v = _mm256_set1_epi32((int32_t)DLTRICKS_UNSIGNED_K);
    const __m256i low7 = _mm256_set1_epi32(127), bit7 = _mm256_set1_epi32(128);
    const __m256i abs_bits = _mm256_set1_epi32(0x7FFFFFFF), half = _mm256_set1_epi32(1 << 19);
    const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32((int32_t)0x80000000u));
    const __m256 low_m = _mm256_set1_ps(bits_to_float(DLTRICKS_SIGNED_K << 20));
    const __m256 low_v = _mm256_set1_ps(bits_to_float(DLTRICKS_UNSIGNED_K << 20));
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    const __m256 v_zero = _mm256_set1_ps(DLTRICKS_UNSIGNED_ZERO);
    const __m256 b1 = _mm256_set1_ps(beta1), c1 = _mm256_set1_ps(one_minus_beta1);
    const __m256 b2 = _mm256_set1_ps(beta2), c2 = _mm256_set1_ps(one_minus_beta2);
    const __m256 bc2 = _mm256_set1_ps(inv_sqrt_bc2), e = _mm256_set1_ps(eps);
    const __m256 d = _mm256_set1_ps(decay), lr = _mm256_set1_ps(step_size);
    const __m256 lam = _mm256_set1_ps(l2);
    float mnew[DLTRICKS_BLOCK] __attribute__((aligned(32)));
    float vnew[DLTRICKS_BLOCK] __attribute__((aligned(32)));
    for (int64_t b = 0; b < blocks; ++b) {
        float *restrict pb = p + b * DLTRICKS_BLOCK;
        const float *restrict gb = g + b * DLTRICKS_BLOCK;
        uint8_t *restrict mb = mc + b * DLTRICKS_BLOCK;
        uint8_t *restrict vb = vc + b * DLTRICKS_BLOCK;
        const __m256 am = _mm256_set1_ps(mabs[b]), av = _mm256_set1_ps(vabs[b]);
        __m256i mmax = _mm256_setzero_si256(), vmax = _mm256_setzero_si256();
        for (int i = 0; i < DLTRICKS_BLOCK; i += 8) {
            __m256 gi = _mm256_loadu_ps(gb + i);
            const __m256 pi = _mm256_loadu_ps(pb + i);
            if (maximize) gi = _mm256_xor_ps(gi, sign);
            if (coupled) gi = _mm256_fmadd_ps(lam, pi, gi);
            const __m256i cm = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(mb + i)));
            const __m256i cv = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(vb + i)));
            const __m256i mlevel =
                _mm256_slli_epi32(_mm256_add_epi32(_mm256_and_si256(cm, low7), k_m), 20);
            const __m256 mag = _mm256_mul_ps(_mm256_sub_ps(_mm256_castsi256_ps(mlevel), low_m), am);
            __m256 mi = _mm256_or_ps(
                mag, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(cm, bit7), 24)));
            const __m256i vbits = _mm256_slli_epi32(_mm256_add_epi32(cv, k_v), 20);
            const __m256 vlevel = _mm256_sub_ps(_mm256_castsi256_ps(vbits), low_v);
            __m256 vi = _mm256_mul_ps(_mm256_max_ps(vlevel, v_zero), av);
            mi = _mm256_fmadd_ps(b1, mi, _mm256_mul_ps(c1, gi));
            vi = _mm256_fmadd_ps(b2, vi, _mm256_mul_ps(c2, _mm256_mul_ps(gi, gi)));
            const __m256 denom = _mm256_fmadd_ps(_mm256_sqrt_ps(vi), bc2, e);
            const __m256 step = _mm256_div_ps(_mm256_mul_ps(lr, mi), denom);
            _mm256_storeu_ps(pb + i, _mm256_fmsub_ps(pi, d, step));
            _mm256_store_ps(mnew + i, mi);
            _mm256_store_ps(vnew + i, vi);
            mmax = _mm256_max_epu32(mmax, _mm256_and_si256(_mm256_castps_si256(mi), abs_bits));
            vmax = _mm256_max_epu32(vmax, _mm256_and_si256(_mm256_castps_si256(vi), abs_bits));
        }
        const float mx = max_of_bits(mmax), vx = max_of_bits(vmax);
        const __m256 im = _mm256_set1_ps(mx > 0.0f ? 1.0f / mx : 0.0f);
        const __m256 iv = _mm256_set1_ps(vx > 0.0f ? 1.0f / vx : 0.0f);
        for (int i = 0; i < DLTRICKS_BLOCK; i += 8) {
            const __m256 mi = _mm256_load_ps(mnew + i), vi = _mm256_load_ps(vnew + i);
            /* min(x, 1) as the plain loop's (x < 1 ? x : 1): vminps returns its second
             * operand unless the first is smaller. */
            __m256 a = _mm256_mul_ps(_mm256_andnot_ps(sign, mi), im);
            a = _mm256_add_ps(_mm256_min_ps(a, one), low_m);
            __m256 w = _mm256_mul_ps(_mm256_and_ps(vi, _mm256_cmp_ps(vi, zero, _CMP_GT_OQ)), iv);
            w = _mm256_add_ps(_mm256_min_ps(w, one), low_v);
            __m256i qm = _mm256_sub_epi32(
                _mm256_srli_epi32(_mm256_add_epi32(_mm256_castps_si256(a), half), 20), k_m);
            const __m256i qv = _mm256_sub_epi32(
                _mm256_srli_epi32(_mm256_add_epi32(_mm256_castps_si256(w), half), 20), k_v);
            qm = _mm256_or_si256(
                qm, _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(mi, zero, _CMP_LT_OQ)),
                                     bit7));
            /* Narrow: both to 16 bits (qm in the low, qv in the high 64 bits of each lane),
             * lanes in order, then to bytes. */
            const __m256i both = _mm256_permute4x64_epi64(_mm256_packus_epi32(qm, qv), 0xD8);
            const __m128i lo = _mm256_castsi256_si128(both), hi = _mm256_extracti128_si256(both, 1);
            _mm_storel_epi64((__m128i *)(mb + i), _mm_packus_epi16(lo, lo));
            _mm_storel_epi64((__m128i *)(vb + i), _mm_packus_epi16(hi, hi));
        }
        mabs[b] = mx;
        vabs[b] = vx;
    }
}
#define DLTRICKS_INT8_LOOP adam_int8_loop_avx2
#else
#define DLTRICKS_INT8_LANES 0
#define DLTRICKS_INT8_LOOP adam_int8_loop
#endif

/* 8 where the int8 kernel is the AVX2 loop, 0 where it is the plain loop. */
int32_t dltricks_int8_lanes(void) { return DLTRICKS_INT8_LANES; }

static void adam_int8_range(
    float *restrict p, const float *restrict g, uint8_t *restrict mc, float *restrict mabs,
    uint8_t *restrict vc, float *restrict vabs, int64_t blocks, float decay, float l2,
    float step_size, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2,
    float inv_sqrt_bc2, float eps, int32_t maximize, int32_t coupled)
{
#define DLTRICKS_LOOP(MAX, COUPLED)                                                         \
    DLTRICKS_INT8_LOOP(p, g, mc, mabs, vc, vabs, blocks, decay, l2, step_size, beta1,       \
                   one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bc2, eps, MAX, COUPLED)
    if (maximize) {
        if (coupled) DLTRICKS_LOOP(1, 1); else DLTRICKS_LOOP(1, 0);
    } else {
        if (coupled) DLTRICKS_LOOP(0, 1); else DLTRICKS_LOOP(0, 0);
    }
#undef DLTRICKS_LOOP
}

/* Blocks are independent: any split over whole blocks gives the same result. */
void dltricks_adam_int8(
    float *restrict p, const float *restrict g, uint8_t *restrict mc, float *restrict mabs,
    uint8_t *restrict vc, float *restrict vabs, int64_t blocks, float decay, float l2,
    float step_size, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2,
    float inv_sqrt_bc2, float eps, int32_t maximize, int32_t coupled, int32_t threads)
{
    const int parts = parts_for(blocks * DLTRICKS_BLOCK, threads);
    if (parts == 1) {
        adam_int8_range(p, g, mc, mabs, vc, vabs, blocks, decay, l2, step_size, beta1,
                        one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bc2, eps, maximize,
                        coupled);
        return;
    }
    const int64_t size = (blocks + parts - 1) / parts;
#pragma omp parallel for num_threads(parts) schedule(static, 1) if (parts > 1)
    for (int part = 0; part < parts; ++part) {
        const int64_t a = part * size, b = a + size < blocks ? a + size : blocks;
        if (a < b)
            adam_int8_range(p + a * DLTRICKS_BLOCK, g + a * DLTRICKS_BLOCK,
                            mc + a * DLTRICKS_BLOCK, mabs + a, vc + a * DLTRICKS_BLOCK,
                            vabs + a, b - a, decay, l2, step_size, beta1, one_minus_beta1,
                            beta2, one_minus_beta2, inv_sqrt_bc2, eps, maximize, coupled);
    }
}
