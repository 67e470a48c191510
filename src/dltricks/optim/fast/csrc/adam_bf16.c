/* One step of Adam/AdamW with bfloat16 moments, stochastically rounded: see
 * dltricks/optim/fast/native.py for the math and the contract. Plain C that gcc/clang
 * vectorize at -O3 -march=native; no intrinsics, so it builds on any CPU. */
#include <stdint.h>
#include <string.h>
#include <math.h>

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

void dltricks_adam_bf16(
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
