/*
 * AES-256 (encrypt and decrypt one block, CTR) and GHASH on x86-64's AES-NI and
 * PCLMULQDQ instructions, for ztcore.crypto._armor's suite 3 (included there only).
 *
 * Why here and not only OpenSSL's EVP: a packet takes nine EVP calls, and after a
 * pause (a round trip 20 ms after the previous one) the first armor or dearmor call
 * took about 40 us on the project's machine, against 1 us back to back: EVP's
 * dispatch code and data are evicted from the caches in between and must be fetched
 * again. These few hundred bytes of code stay small enough to come back quickly. EVP
 * remains the path on other CPUs (and the reference the tests hold this code to).
 *
 * Algorithms as published: FIPS-197 (AES, key expansion with AESKEYGENASSIST),
 * NIST SP 800-38D (GCM: GHASH over GF(2^128) modulo x^128 + x^7 + x^2 + x + 1) and
 * Intel's white papers on AES-NI and on carry-less multiplication for GCM (operands
 * byte-reflected, product shifted left by one bit, reduced in two phases).
 *
 * Everything is compiled with a target attribute, so the module still builds and
 * runs on x86-64 CPUs without these instructions; ni_supported() says whether they
 * may be called.
 */

#ifndef ZTCORE_AESNI_H
#define ZTCORE_AESNI_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ZT_AESNI_CODE 1

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define NI_TARGET __attribute__((target("aes,pclmul,ssse3")))

typedef struct {
    __m128i k0[15];   /* K0 encryption round keys (GMAC) */
    __m128i k1[15];   /* K1 encryption round keys (ECB, CTR) */
    __m128i k1d[15];  /* K1 decryption round keys (equivalent inverse cipher) */
    __m128i h;        /* GHASH key E_K0(0), byte-reflected */
    __m128i h2, h3, h4; /* its powers, for four blocks at a time */
} NiKeys;

static int ni_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("ssse3");
}

/* ---- AES-256 ------------------------------------------------------------------ */

/* Each 32-bit word XORed with all the words before it: w0, w0^w1, w0^w1^w2, w0^..^w3. */
NI_TARGET static inline __m128i ni_prefix_xor(__m128i t)
{
    t = _mm_xor_si128(t, _mm_slli_si128(t, 4));
    return _mm_xor_si128(t, _mm_slli_si128(t, 8));
}

NI_TARGET static inline __m128i ni_expand_a(__m128i t1, __m128i assist)
{
    /* Words w[i] = w[i-8] ^ SubWord(RotWord(w[i-1])) ^ rcon, chained across the block. */
    return _mm_xor_si128(ni_prefix_xor(t1), _mm_shuffle_epi32(assist, 0xff));
}

NI_TARGET static inline __m128i ni_expand_b(__m128i t1, __m128i t3)
{
    /* The odd half of AES-256's schedule: SubWord without rotation or rcon. */
    return _mm_xor_si128(ni_prefix_xor(t3), _mm_shuffle_epi32(_mm_aeskeygenassist_si128(t1, 0x00), 0xaa));
}

NI_TARGET static void ni_expand(const unsigned char key[32], __m128i rk[15])
{
    __m128i t1 = _mm_loadu_si128((const __m128i *)key);
    __m128i t3 = _mm_loadu_si128((const __m128i *)(key + 16));
    rk[0] = t1;
    rk[1] = t3;
    /* AESKEYGENASSIST takes its round constant as an immediate: one line per round. */
    t1 = ni_expand_a(t1, _mm_aeskeygenassist_si128(t3, 0x01)); rk[2] = t1; t3 = ni_expand_b(t1, t3); rk[3] = t3;
    t1 = ni_expand_a(t1, _mm_aeskeygenassist_si128(t3, 0x02)); rk[4] = t1; t3 = ni_expand_b(t1, t3); rk[5] = t3;
    t1 = ni_expand_a(t1, _mm_aeskeygenassist_si128(t3, 0x04)); rk[6] = t1; t3 = ni_expand_b(t1, t3); rk[7] = t3;
    t1 = ni_expand_a(t1, _mm_aeskeygenassist_si128(t3, 0x08)); rk[8] = t1; t3 = ni_expand_b(t1, t3); rk[9] = t3;
    t1 = ni_expand_a(t1, _mm_aeskeygenassist_si128(t3, 0x10)); rk[10] = t1; t3 = ni_expand_b(t1, t3); rk[11] = t3;
    t1 = ni_expand_a(t1, _mm_aeskeygenassist_si128(t3, 0x20)); rk[12] = t1; t3 = ni_expand_b(t1, t3); rk[13] = t3;
    rk[14] = ni_expand_a(t1, _mm_aeskeygenassist_si128(t3, 0x40));
}

NI_TARGET static void ni_decryption_keys(const __m128i rk[15], __m128i dk[15])
{
    dk[0] = rk[14];
    for (int i = 1; i < 14; ++i)
        dk[i] = _mm_aesimc_si128(rk[14 - i]);
    dk[14] = rk[0];
}

NI_TARGET static inline __m128i ni_encrypt(const __m128i rk[15], __m128i b)
{
    b = _mm_xor_si128(b, rk[0]);
    for (int i = 1; i < 14; ++i)
        b = _mm_aesenc_si128(b, rk[i]);
    return _mm_aesenclast_si128(b, rk[14]);
}

NI_TARGET static inline __m128i ni_decrypt(const __m128i dk[15], __m128i b)
{
    b = _mm_xor_si128(b, dk[0]);
    for (int i = 1; i < 14; ++i)
        b = _mm_aesdec_si128(b, dk[i]);
    return _mm_aesdeclast_si128(b, dk[14]);
}

NI_TARGET static inline __m128i ni_gfmul(__m128i a, __m128i b);

NI_TARGET static void ni_setup(NiKeys *k, const unsigned char k0[32], const unsigned char k1[32])
{
    ni_expand(k0, k->k0);
    ni_expand(k1, k->k1);
    ni_decryption_keys(k->k1, k->k1d);
    const __m128i bswap = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    k->h = _mm_shuffle_epi8(ni_encrypt(k->k0, _mm_setzero_si128()), bswap);
    k->h2 = ni_gfmul(k->h, k->h);
    k->h3 = ni_gfmul(k->h2, k->h);
    k->h4 = ni_gfmul(k->h3, k->h);
}

NI_TARGET static void ni_ecb(const __m128i keys[15], int decrypt, const unsigned char in[16], unsigned char out[16])
{
    __m128i b = _mm_loadu_si128((const __m128i *)in);
    _mm_storeu_si128((__m128i *)out, decrypt ? ni_decrypt(keys, b) : ni_encrypt(keys, b));
}

/* ---- CTR: the counter block's last 32 bits count up big-endian, carrying into the
 * rest as a 128-bit big-endian increment would (OpenSSL's CTR mode). State carries
 * across calls so that one keystream can cover several segments. */

typedef struct {
    unsigned char counter[16];
    unsigned char stream[16];
    unsigned int used; /* keystream bytes of `stream` already consumed (16: none left) */
} NiCtr;

static void ni_ctr_start(NiCtr *c, const unsigned char iv[16])
{
    memcpy(c->counter, iv, 16);
    c->used = 16;
}

static inline void ni_ctr_next(unsigned char counter[16])
{
    for (int i = 15; i >= 0; --i)
        if (++counter[i] != 0)
            break;
}

NI_TARGET static void ni_ctr(const __m128i rk[15], NiCtr *c, const unsigned char *in, unsigned char *out, size_t len)
{
    const __m128i bswap = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m128i one = _mm_set_epi32(0, 0, 0, 1);
    while (len > 0 && c->used < 16) {
        *out++ = (unsigned char)(*in++ ^ c->stream[c->used++]);
        --len;
    }
    /* Byte-reflected, the counter's last 32-bit word is the lowest lane: one vector add a
     * block, as long as that word cannot wrap within this call (SIV clears its top bit,
     * so it never does; a wrap takes the byte-wise loop below). */
    const uint32_t low = ((uint32_t)c->counter[12] << 24) | ((uint32_t)c->counter[13] << 16) |
                         ((uint32_t)c->counter[14] << 8) | c->counter[15];
    if ((len + 15) / 16 <= (size_t)(0xffffffffu - low)) {
        __m128i ctr = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)c->counter), bswap);
        /* Four independent blocks at a time keep the AES unit busy. */
        while (len >= 64) {
            __m128i b[4];
            for (int j = 0; j < 4; ++j) {
                b[j] = _mm_xor_si128(_mm_shuffle_epi8(ctr, bswap), rk[0]);
                ctr = _mm_add_epi32(ctr, one);
            }
            for (int i = 1; i < 14; ++i)
                for (int j = 0; j < 4; ++j)
                    b[j] = _mm_aesenc_si128(b[j], rk[i]);
            for (int j = 0; j < 4; ++j) {
                b[j] = _mm_aesenclast_si128(b[j], rk[14]);
                __m128i x = _mm_loadu_si128((const __m128i *)(in + 16 * j));
                _mm_storeu_si128((__m128i *)(out + 16 * j), _mm_xor_si128(x, b[j]));
            }
            in += 64;
            out += 64;
            len -= 64;
        }
        while (len >= 16) {
            __m128i k = ni_encrypt(rk, _mm_shuffle_epi8(ctr, bswap));
            ctr = _mm_add_epi32(ctr, one);
            _mm_storeu_si128((__m128i *)out, _mm_xor_si128(_mm_loadu_si128((const __m128i *)in), k));
            in += 16;
            out += 16;
            len -= 16;
        }
        _mm_storeu_si128((__m128i *)c->counter, _mm_shuffle_epi8(ctr, bswap));
    }
    while (len >= 16) {
        __m128i k = ni_encrypt(rk, _mm_loadu_si128((const __m128i *)c->counter));
        ni_ctr_next(c->counter);
        _mm_storeu_si128((__m128i *)out, _mm_xor_si128(_mm_loadu_si128((const __m128i *)in), k));
        in += 16;
        out += 16;
        len -= 16;
    }
    if (len > 0) {
        _mm_storeu_si128((__m128i *)c->stream, ni_encrypt(rk, _mm_loadu_si128((const __m128i *)c->counter)));
        ni_ctr_next(c->counter);
        c->used = 0;
        while (len > 0) {
            *out++ = (unsigned char)(*in++ ^ c->stream[c->used++]);
            --len;
        }
    }
}

/* ---- GHASH ----------------------------------------------------------------------- */

/* a * b in GF(2^128), both byte-reflected (as loaded through the bswap shuffle). */
NI_TARGET static inline __m128i ni_gfmul(__m128i a, __m128i b)
{
    __m128i lo = _mm_clmulepi64_si128(a, b, 0x00);
    __m128i mid = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10), _mm_clmulepi64_si128(a, b, 0x01));
    __m128i hi = _mm_clmulepi64_si128(a, b, 0x11);
    lo = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
    hi = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));
    /* The 256-bit product hi:lo, shifted left by one bit (bit reflection). */
    __m128i lo_carry = _mm_srli_epi32(lo, 31);
    __m128i hi_carry = _mm_srli_epi32(hi, 31);
    lo = _mm_slli_epi32(lo, 1);
    hi = _mm_slli_epi32(hi, 1);
    __m128i across = _mm_srli_si128(lo_carry, 12);
    hi_carry = _mm_slli_si128(hi_carry, 4);
    lo_carry = _mm_slli_si128(lo_carry, 4);
    lo = _mm_or_si128(lo, lo_carry);
    hi = _mm_or_si128(hi, hi_carry);
    hi = _mm_or_si128(hi, across);
    /* Reduction modulo x^128 + x^7 + x^2 + x + 1, first phase... */
    __m128i t = _mm_xor_si128(_mm_xor_si128(_mm_slli_epi32(lo, 31), _mm_slli_epi32(lo, 30)), _mm_slli_epi32(lo, 25));
    __m128i t_hi = _mm_srli_si128(t, 4);
    lo = _mm_xor_si128(lo, _mm_slli_si128(t, 12));
    /* ...and second phase. */
    __m128i u = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi32(lo, 1), _mm_srli_epi32(lo, 2)), _mm_srli_epi32(lo, 7));
    u = _mm_xor_si128(u, t_hi);
    lo = _mm_xor_si128(lo, u);
    return _mm_xor_si128(hi, lo);
}

typedef struct {
    __m128i x;            /* running hash, byte-reflected */
    unsigned char buf[16];
    unsigned int buflen;
    unsigned long long total; /* bytes hashed (all of it AAD in GMAC) */
} NiGhash;

NI_TARGET static void ni_ghash_start(NiGhash *g)
{
    g->x = _mm_setzero_si128();
    g->buflen = 0;
    g->total = 0;
}

NI_TARGET static void ni_ghash_update(const NiKeys *k, NiGhash *g, const unsigned char *p, size_t len)
{
    const __m128i bswap = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    g->total += len;
    if (g->buflen) {
        while (len > 0 && g->buflen < 16) {
            g->buf[g->buflen++] = *p++;
            --len;
        }
        if (g->buflen < 16)
            return;
        __m128i b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)g->buf), bswap);
        g->x = ni_gfmul(_mm_xor_si128(g->x, b), k->h);
        g->buflen = 0;
    }
    /* Four blocks at a time: X' = (X ^ B0) H^4 ^ B1 H^3 ^ B2 H^2 ^ B3 H, the same value as
     * four steps of X = (X ^ B) H (multiplication distributes over XOR), with the four
     * products independent of each other. */
    while (len >= 64) {
        __m128i b0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), bswap);
        __m128i b1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), bswap);
        __m128i b2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), bswap);
        __m128i b3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), bswap);
        __m128i y = _mm_xor_si128(ni_gfmul(_mm_xor_si128(g->x, b0), k->h4), ni_gfmul(b1, k->h3));
        g->x = _mm_xor_si128(y, _mm_xor_si128(ni_gfmul(b2, k->h2), ni_gfmul(b3, k->h)));
        p += 64;
        len -= 64;
    }
    while (len >= 16) {
        __m128i b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), bswap);
        g->x = ni_gfmul(_mm_xor_si128(g->x, b), k->h);
        p += 16;
        len -= 16;
    }
    if (len > 0) {
        memcpy(g->buf, p, len);
        g->buflen = (unsigned int)len;
    }
}

/* GMAC: the GCM tag for nonce iv8 || 0^32, everything hashed so far as AAD, no ciphertext. */
NI_TARGET static void ni_gmac_finish(const NiKeys *k, NiGhash *g, const unsigned char iv8[8], unsigned char tag[16])
{
    const __m128i bswap = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    if (g->buflen) {
        memset(g->buf + g->buflen, 0, 16 - g->buflen);
        __m128i b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)g->buf), bswap);
        g->x = ni_gfmul(_mm_xor_si128(g->x, b), k->h);
        g->buflen = 0;
    }
    /* Length block len(A) || len(C) in bits, big-endian; reflected, len(A) is the high half. */
    __m128i lengths = _mm_set_epi64x((long long)(g->total * 8), 0);
    __m128i s = _mm_shuffle_epi8(ni_gfmul(_mm_xor_si128(g->x, lengths), k->h), bswap);
    unsigned char j0[16];
    memcpy(j0, iv8, 8);
    memset(j0 + 8, 0, 7);
    j0[15] = 1;
    __m128i t = _mm_xor_si128(s, ni_encrypt(k->k0, _mm_loadu_si128((const __m128i *)j0)));
    _mm_storeu_si128((__m128i *)tag, t);
}

/* ---- the three steps of AES-GMAC-SIV (as siv_gmac_fold, siv_ctr, siv_ecb in _armor.c) --- */

NI_TARGET static void ni_siv_gmac_fold(const NiKeys *k, const unsigned char iv8[8], const unsigned char *const *seg,
                                       const size_t *len, int nseg, unsigned char fold[8])
{
    NiGhash g;
    unsigned char t[16];
    ni_ghash_start(&g);
    for (int i = 0; i < nseg; ++i)
        if (len[i])
            ni_ghash_update(k, &g, seg[i], len[i]);
    ni_gmac_finish(k, &g, iv8, t);
    for (int i = 0; i < 8; ++i)
        fold[i] = (unsigned char)(t[i] ^ t[i + 8]);
}

NI_TARGET static void ni_siv_ctr(const NiKeys *k, const unsigned char tag[16], const unsigned char *in1,
                                 unsigned char *out1, size_t len1, const unsigned char *in2, unsigned char *out2,
                                 size_t len2)
{
    NiCtr c;
    unsigned char iv[16];
    memcpy(iv, tag, 16);
    iv[12] &= 0x7f;
    ni_ctr_start(&c, iv);
    if (len1)
        ni_ctr(k->k1, &c, in1, out1, len1);
    if (len2)
        ni_ctr(k->k1, &c, in2, out2, len2);
}

#endif /* x86-64 with GCC or Clang */
#endif /* ZTCORE_AESNI_H */
