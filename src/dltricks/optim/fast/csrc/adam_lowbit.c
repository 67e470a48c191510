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

/* ---- int8 block codes (state_precision.quantize_blocks / dequantize_blocks) -------------
 * Blocks of 256 elements, each with its float32 absmax. exp_avg: signed codes c in
 * [-127, 127] for sign(c) (|c| / 127)^4 absmax; exp_avg_sq: unsigned codes c in [0, 255]
 * (stored as bytes) for (c / 255)^4 absmax. Decoding and encoding are written operation by
 * operation as the torch functions compute them in float32 (same products in the same
 * order, the same correctly rounded sqrt and round-half-to-even), so a moment that comes out
 * of the update with the same float32 value gets the same code. */
#define DLTRICKS_BLOCK 256

static inline __attribute__((always_inline)) void adam_int8_loop(
    float *restrict p, const float *restrict g, int8_t *restrict mc, float *restrict mabs,
    uint8_t *restrict vc, float *restrict vabs, int64_t blocks, float decay, float l2,
    float step_size, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2,
    float inv_sqrt_bc2, float eps, const int maximize, const int coupled)
{
    const float inv_signed = 1.0f / 127.0f, inv_unsigned = 1.0f / 255.0f;
    float mnew[DLTRICKS_BLOCK], vnew[DLTRICKS_BLOCK];
    for (int64_t b = 0; b < blocks; ++b) {
        float *restrict pb = p + b * DLTRICKS_BLOCK;
        const float *restrict gb = g + b * DLTRICKS_BLOCK;
        int8_t *restrict mb = mc + b * DLTRICKS_BLOCK;
        uint8_t *restrict vb = vc + b * DLTRICKS_BLOCK;
        const float am = mabs[b], av = vabs[b];
        /* Pass 1: decode, update, step; the block maxima of |m| and |v| as integer maxima of
         * their bits (non-negative floats order as their bits; vectorizes without
         * -ffast-math). */
        uint32_t mmax = 0, vmax = 0;
        for (int i = 0; i < DLTRICKS_BLOCK; ++i) {
            float gi = maximize ? -gb[i] : gb[i];
            float pi = pb[i];
            if (coupled) gi += l2 * pi;
            float s = (float)mb[i] * inv_signed;
            float mi = ((fabsf(s) * s) * (s * s)) * am;
            float t = (float)vb[i] * inv_unsigned;
            float tt = t * t;
            float vi = (tt * tt) * av;
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
        /* Pass 2: encode, c = round(C (|x| / absmax)^(1/4)). */
        for (int i = 0; i < DLTRICKS_BLOCK; ++i) {
            float a = fabsf(mnew[i]) * im;
            a = a > 1.0f ? 1.0f : a;
            float c = rintf(sqrtf(sqrtf(a)) * 127.0f);
            mb[i] = (int8_t)(int32_t)(mnew[i] < 0.0f ? -c : c);
            float w = vnew[i] > 0.0f ? vnew[i] : 0.0f;
            float e = w * iv;
            e = e > 1.0f ? 1.0f : e;
            vb[i] = (uint8_t)(int32_t)rintf(sqrtf(sqrtf(e)) * 255.0f);
        }
        mabs[b] = mx;
        vabs[b] = vx;
    }
}

static void adam_int8_range(
    float *restrict p, const float *restrict g, int8_t *restrict mc, float *restrict mabs,
    uint8_t *restrict vc, float *restrict vabs, int64_t blocks, float decay, float l2,
    float step_size, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2,
    float inv_sqrt_bc2, float eps, int32_t maximize, int32_t coupled)
{
#define DLTRICKS_LOOP(MAX, COUPLED)                                                         \
    adam_int8_loop(p, g, mc, mabs, vc, vabs, blocks, decay, l2, step_size, beta1,           \
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
    float *restrict p, const float *restrict g, int8_t *restrict mc, float *restrict mabs,
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
