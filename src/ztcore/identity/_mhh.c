/*
 * ztcore.identity._mhh -- C kernel of ZeroTier's memory-hard identity hash.
 *
 * The hash (used to derive a type-0 identity's address from its public key
 * and to check it) is: SHA-512 of the public key gives a 64-byte digest; its
 * first 32 bytes key Salsa20/20 and the next 8 are the IV. A 2 MiB scratch
 * area is filled block by block with "previous block XOR next keystream
 * block", then 131072 steps read pairs of big-endian 64-bit words from the
 * scratch area to pick a digest word and a scratch word to swap, each step
 * followed by XORing the digest with the next keystream block (the stream
 * continues from where the fill stopped).
 *
 * The SHA-512 seed digest is computed by the Python caller, so this module
 * needs only Salsa20. It is libsodium's, handed over as a function address by
 * the Python side (which has already loaded and initialised libsodium): the
 * extension links against nothing, so it builds with a compiler and Python's
 * headers alone and runs with whichever libsodium soname the system has.
 *
 *     bind_salsa20(address: int) -> None   (crypto_stream_salsa20_xor_ic)
 *     hash(seed_digest: bytes) -> bytes    (64 bytes in, 64 bytes out)
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int (*salsa20_xor_ic_fn)(unsigned char *c, const unsigned char *m, unsigned long long mlen,
                                 const unsigned char *n, uint64_t ic, const unsigned char *k);
static salsa20_xor_ic_fn crypto_stream_salsa20_xor_ic = NULL;

#define MHH_MEMORY 2097152u                  /* scratch area, bytes */
#define MHH_WORDS (MHH_MEMORY / 8u)          /* 64-bit words in the scratch area */
#define MHH_FILL_BLOCKS (MHH_MEMORY / 64u)   /* keystream blocks consumed by the fill */
#define MHH_STEPS (MHH_WORDS / 2u)           /* final-loop steps, one keystream block each */
#define MHH_CHUNK_BLOCKS 1024u               /* final-loop keystream is made 64 KiB at a time */

static inline uint64_t load_be64(uint64_t raw)
{
#if defined(__BYTE_ORDER__) && (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
    return raw;
#else
    return __builtin_bswap64(raw);
#endif
}

/* Returns 0 on success, -1 if memory could not be allocated. Runs without the GIL. */
static int mhh_compute(unsigned char digest[64])
{
    unsigned char key[32], iv[8];
    uint64_t d[8];
    uint64_t *mem = (uint64_t *)malloc(MHH_MEMORY);
    uint64_t *ks = (uint64_t *)malloc(MHH_CHUNK_BLOCKS * 64u);
    if (!mem || !ks) {
        free(mem);
        free(ks);
        return -1;
    }
    /* The cipher is keyed once from the seed; the digest changes afterwards. */
    memcpy(key, digest, 32);
    memcpy(iv, digest + 32, 8);
    memcpy(d, digest, 64);

    /* Fill: block n = block n-1 XOR keystream block n, i.e. a running XOR of
     * the keystream, so one keystream call plus a prefix-XOR pass does it. */
    memset(mem, 0, MHH_MEMORY);
    crypto_stream_salsa20_xor_ic((unsigned char *)mem, (const unsigned char *)mem, MHH_MEMORY, iv, 0, key);
    for (size_t i = 8; i < MHH_WORDS; ++i)
        mem[i] ^= mem[i - 8];

    /* Final loop: swaps steered by the scratch contents, keystream continues. */
    size_t w = 0;
    uint64_t block = MHH_FILL_BLOCKS;
    for (size_t done = 0; done < MHH_STEPS; done += MHH_CHUNK_BLOCKS) {
        memset(ks, 0, MHH_CHUNK_BLOCKS * 64u);
        crypto_stream_salsa20_xor_ic((unsigned char *)ks, (const unsigned char *)ks, MHH_CHUNK_BLOCKS * 64u, iv,
                                     block, key);
        block += MHH_CHUNK_BLOCKS;
        const uint64_t *k = ks;
        for (unsigned int s = 0; s < MHH_CHUNK_BLOCKS; ++s, k += 8) {
            const unsigned int idx1 = (unsigned int)(load_be64(mem[w++]) % 8u);
            const size_t idx2 = (size_t)(load_be64(mem[w++]) % MHH_WORDS);
            const uint64_t tmp = mem[idx2];
            mem[idx2] = d[idx1];
            d[idx1] = tmp;
            d[0] ^= k[0];
            d[1] ^= k[1];
            d[2] ^= k[2];
            d[3] ^= k[3];
            d[4] ^= k[4];
            d[5] ^= k[5];
            d[6] ^= k[6];
            d[7] ^= k[7];
        }
    }

    memcpy(digest, d, 64);
    free(mem);
    free(ks);
    return 0;
}

static PyObject *mhh_hash(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    unsigned char digest[64];
    int rc;

    if (crypto_stream_salsa20_xor_ic == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind_salsa20() was not called");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (view.len != 64) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "memory-hard hash seed must be a 64-byte SHA-512 digest");
        return NULL;
    }
    memcpy(digest, view.buf, 64);
    PyBuffer_Release(&view);

    Py_BEGIN_ALLOW_THREADS
    rc = mhh_compute(digest);
    Py_END_ALLOW_THREADS

    if (rc != 0)
        return PyErr_NoMemory();
    return PyBytes_FromStringAndSize((const char *)digest, 64);
}

static PyObject *mhh_bind_salsa20(PyObject *self, PyObject *arg)
{
    (void)self;
    void *address = PyLong_AsVoidPtr(arg);
    if (address == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "Salsa20 function address must not be NULL");
        return NULL;
    }
    crypto_stream_salsa20_xor_ic = (salsa20_xor_ic_fn)address;
    Py_RETURN_NONE;
}

static PyMethodDef mhh_methods[] = {
    {"bind_salsa20", mhh_bind_salsa20, METH_O,
     "bind_salsa20(address, /)\n\nUse the crypto_stream_salsa20_xor_ic function at this address."},
    {"hash", mhh_hash, METH_O,
     "hash(seed_digest, /) -> bytes\n\nMemory-hard hash from the 64-byte SHA-512 digest of a public key."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef mhh_module = {
    PyModuleDef_HEAD_INIT, "ztcore.identity._mhh", "C kernel of ZeroTier's memory-hard identity hash.", -1,
    mhh_methods,
};

PyMODINIT_FUNC PyInit__mhh(void)
{
    return PyModule_Create(&mhh_module);
}
