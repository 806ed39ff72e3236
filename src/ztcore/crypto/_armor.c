/*
 * ztcore.crypto._armor -- one C call per VL1 packet to armor or dearmor it.
 *
 * Packet head layout (see ztcore.vl1.packet): 8-byte IV/packet ID, 5-byte
 * destination, 5-byte source, flags byte (FFCCCHHH), 8-byte MAC, then the
 * verb byte and the payload. The MAC/AAD never covers the 3 hop bits.
 *
 * Cipher suites 0 and 1 (Poly1305, optionally Salsa20/12): the per-packet
 * Salsa20/12 key is the agreed key with its first 21 bytes XORed with
 * IV || destination || source || (flags without hops) || size (16-bit little
 * endian); keystream bytes 0..31 key Poly1305, suite 1 encrypts with the
 * keystream from byte 64 on, and the MAC field is the first 8 bytes of the
 * Poly1305 tag of the (encrypted) verb+payload. Salsa20/12 and Poly1305 are
 * libsodium's, handed over as function addresses (`bind_sodium`).
 *
 * Cipher suite 3 (AES-GMAC-SIV, keys K0 and K1): GMAC under K0 with nonce
 * IV || 0^32 over AAD || zero pad to 16 || plaintext, folded to 64 bits;
 * tag = AES-ECB(K1, IV || fold); payload = AES-CTR(K1) from the tag with the
 * top bit of its 32-bit counter cleared. The wire carries tag[0:8] as the
 * packet ID and tag[8:16] as the MAC.
 *
 * Which AES: on x86-64 CPUs with AES-NI and PCLMULQDQ, the few hundred lines of
 * _aesni.h (one compact function per step, no dispatch); elsewhere, or with
 * Siv(..., aesni=False), the EVP AES-256-GCM/ECB/CTR of the libcrypto the
 * interpreter already has loaded (_hashlib/_ssl): the Python side looks the EVP
 * functions up there and binds their addresses (`bind_openssl`). Back to back the
 * two cost about the same (0.5 and 1 us a packet); the difference is after a
 * pause: on the project's machine a packet 20 ms after the previous one took
 * about 40 us through EVP's nine calls, whose code and data had left the caches,
 * and about 17 us through _aesni.h, which is what a round trip pays at each end.
 * Tests hold the two paths to each other and to ZeroTier's vectors. With neither
 * (no AES-NI, and OpenSSL linked statically with its symbols hidden), suite 3
 * stays on the pure-Python path. Like ztcore.identity._mhh, this module links
 * against nothing: a compiler and Python's headers build it.
 *
 * Thread safety: every function here runs with the GIL held and never calls
 * back into Python while a cipher context is in use, so one Siv object (and
 * its round keys or EVP contexts) can be shared by all threads, as AesGmacSiv is.
 *
 *     bind_sodium(salsa2012_xor: int, poly1305: int) -> None
 *     bind_openssl(addresses: tuple[int, ...]) -> None   (order: OPENSSL_NAMES)
 *     armor_poly(key, packet_id, destination, source, flags, verb_byte, payload) -> bytes
 *     dearmor_poly(key, packet) -> (verb_byte, payload) | error code (int)
 *     Siv(k0, k1, *, aesni=True): .backend ("aes-ni" | "openssl")
 *                  .armor(packet_id, destination, source, flags, verb_byte, payload) -> bytes
 *                  .dearmor(packet) -> (verb_byte, payload) | error code (int)
 *                  .encrypt(iv8, aad, plaintext) -> (tag16, ciphertext)
 *                  .decrypt(tag16, aad, ciphertext) -> plaintext | None
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_armor_api.h" /* the packet layout (IDX_*), and the C interface published below */

/* Error codes returned (as ints) by the dearmor functions. */
#define E_TOO_SHORT 1
#define E_TOO_LONG 2
#define E_BAD_MAC 3
#define E_UNKNOWN_CIPHER 4

/* ---- bound functions ----------------------------------------------------- */

typedef int (*salsa2012_xor_fn)(unsigned char *c, const unsigned char *m, unsigned long long mlen,
                                const unsigned char *n, const unsigned char *k);
typedef int (*poly1305_fn)(unsigned char *out, const unsigned char *in, unsigned long long inlen,
                           const unsigned char *k);
static salsa2012_xor_fn crypto_stream_salsa2012_xor = NULL;
static poly1305_fn crypto_onetimeauth_poly1305 = NULL;

/* OpenSSL (1.1.1 and 3.x share these signatures); EVP objects are opaque here. */
typedef void *(*ctx_new_fn)(void);
typedef void (*ctx_free_fn)(void *ctx);
typedef int (*cipher_init_fn)(void *ctx, const void *cipher, void *engine, const unsigned char *key,
                              const unsigned char *iv, int enc);
typedef int (*cipher_update_fn)(void *ctx, unsigned char *out, int *outl, const unsigned char *in, int inl);
typedef int (*cipher_final_fn)(void *ctx, unsigned char *out, int *outl);
typedef int (*ctx_ctrl_fn)(void *ctx, int type, int arg, void *ptr);
typedef int (*set_padding_fn)(void *ctx, int pad);
typedef const void *(*cipher_get_fn)(void);

static struct {
    ctx_new_fn ctx_new;
    ctx_free_fn ctx_free;
    cipher_init_fn init;
    cipher_update_fn update;
    cipher_final_fn final;
    ctx_ctrl_fn ctrl;
    set_padding_fn set_padding;
    cipher_get_fn aes_256_gcm;
    cipher_get_fn aes_256_ecb;
    cipher_get_fn aes_256_ctr;
} ossl;
static int ossl_bound = 0;
#define N_OSSL 10
#define EVP_CTRL_AEAD_GET_TAG 0x10

/* ---- helpers --------------------------------------------------------------- */

static int get_u64(PyObject *o, unsigned long long max, const char *what, unsigned long long *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s must be an int in 0..%llu", what, max);
        }
        return -1;
    }
    if (v > max) {
        PyErr_Format(PyExc_ValueError, "%s must be an int in 0..%llu", what, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* A read-only contiguous view; bytes objects are used without the buffer protocol. */
typedef struct {
    const unsigned char *buf;
    Py_ssize_t len;
    Py_buffer view;
    int has_view;
} Input;

static int input_get(PyObject *o, Input *in)
{
    if (PyBytes_CheckExact(o)) {
        in->buf = (const unsigned char *)PyBytes_AS_STRING(o);
        in->len = PyBytes_GET_SIZE(o);
        in->has_view = 0;
        return 0;
    }
    if (PyObject_GetBuffer(o, &in->view, PyBUF_SIMPLE) < 0)
        return -1;
    in->buf = (const unsigned char *)in->view.buf;
    in->len = in->view.len;
    in->has_view = 1;
    return 0;
}

static void input_release(Input *in)
{
    if (in->has_view) {
        PyBuffer_Release(&in->view);
        in->has_view = 0;
    }
}

static int ct_equal(const unsigned char *a, const unsigned char *b, size_t n)
{
    unsigned char d = 0;
    for (size_t i = 0; i < n; ++i)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static void put_be(unsigned char *p, unsigned long long v, int n)
{
    for (int i = n - 1; i >= 0; --i) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

/* Header bytes 0..17 with the flags byte: IV, destination, source, flags (hops kept). */
static void put_head(unsigned char *p, unsigned long long packet_id, unsigned long long dest,
                     unsigned long long src, int flags)
{
    put_be(p, packet_id, 8);
    put_be(p + IDX_DEST, dest, 5);
    put_be(p + IDX_SOURCE, src, 5);
    p[IDX_FLAGS] = (unsigned char)flags;
}

/* Parse (packet_id, destination, source, flags, verb_byte, payload) after `first` leading args. */
typedef struct {
    unsigned long long packet_id, dest, src;
    int flags, verb_byte;
    Input payload;
} SealArgs;

static int seal_args(PyObject *const *args, SealArgs *a)
{
    unsigned long long v;
    if (get_u64(args[0], 0xffffffffffffffffULL, "packet_id", &a->packet_id) < 0 ||
        get_u64(args[1], 0xffffffffffULL, "destination", &a->dest) < 0 ||
        get_u64(args[2], 0xffffffffffULL, "source", &a->src) < 0)
        return -1;
    if (get_u64(args[3], 0xff, "flags", &v) < 0)
        return -1;
    a->flags = (int)v;
    if (get_u64(args[4], 0xff, "verb_byte", &v) < 0)
        return -1;
    a->verb_byte = (int)v;
    if (input_get(args[5], &a->payload) < 0)
        return -1;
    if (a->payload.len > MAX_PACKET_LENGTH - IDX_PAYLOAD) {
        input_release(&a->payload);
        PyErr_SetString(PyExc_ValueError, "payload too long for a packet");
        return -1;
    }
    return 0;
}

/* (verb_byte, payload) as a dearmor returns it; takes over the reference to `payload`. */
static PyObject *verb_and_payload(int verb_byte, PyObject *payload)
{
    PyObject *v = PyLong_FromLong(verb_byte);
    PyObject *t = v ? PyTuple_New(2) : NULL;
    if (t == NULL) {
        Py_XDECREF(v);
        Py_DECREF(payload);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, v);
    PyTuple_SET_ITEM(t, 1, payload);
    return t;
}

static PyObject *opened(int verb_byte, const unsigned char *payload, Py_ssize_t len)
{
    PyObject *p = PyBytes_FromStringAndSize((const char *)payload, len);
    return p ? verb_and_payload(verb_byte, p) : NULL;
}

/* ---- suites 0 and 1 ---------------------------------------------------------- */

static int sodium_ready(void)
{
    if (crypto_stream_salsa2012_xor == NULL || crypto_onetimeauth_poly1305 == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind_sodium() was not called");
        return 0;
    }
    return 1;
}

static int get_key32(PyObject *o, unsigned char key[32])
{
    Input k;
    if (input_get(o, &k) < 0)
        return -1;
    if (k.len < 32) {
        input_release(&k);
        PyErr_SetString(PyExc_ValueError, "the Salsa20/Poly1305 key must be at least 32 bytes");
        return -1;
    }
    memcpy(key, k.buf, 32);
    input_release(&k);
    return 0;
}

/* Per-packet Salsa20/12 key from the agreed key and header bytes 0..18 (flags included). */
static void mangle_key(unsigned char mk[32], const unsigned char key[32], const unsigned char head[19],
                       size_t size)
{
    memcpy(mk, key, 32);
    for (int i = 0; i < 18; ++i)
        mk[i] ^= head[i];
    mk[18] ^= (unsigned char)(head[IDX_FLAGS] & 0xf8);
    mk[19] ^= (unsigned char)(size & 0xff);
    mk[20] ^= (unsigned char)((size >> 8) & 0xff);
}

/* Seal in place: `w` holds the head (bytes 0..18, flags included) and the plaintext verb
 * and payload from IDX_VERB on; writes the MAC and, for suite 1, encrypts. */
static int poly_seal(const unsigned char key[32], unsigned char *w, size_t n)
{
    unsigned char mk[32], tag[16];
    unsigned char scratch[64 + MAX_PACKET_LENGTH];
    const size_t body = n - IDX_VERB;
    mangle_key(mk, key, w, n);
    if (((w[IDX_FLAGS] >> 3) & 7) == 1) {
        memset(scratch, 0, 64);
        memcpy(scratch + 64, w + IDX_VERB, body);
        crypto_stream_salsa2012_xor(scratch, scratch, 64 + body, w, mk);
        crypto_onetimeauth_poly1305(tag, scratch + 64, body, scratch);
        memcpy(w + IDX_VERB, scratch + 64, body);
    } else {
        memset(scratch, 0, 32);
        crypto_stream_salsa2012_xor(scratch, scratch, 32, w, mk);
        crypto_onetimeauth_poly1305(tag, w + IDX_VERB, body, scratch);
    }
    memcpy(w + IDX_MAC, tag, 8);
    return 0;
}

/* Check and (suite 1) decrypt a whole packet of `n` bytes (IDX_PAYLOAD..MAX_PACKET_LENGTH,
 * suite 0 or 1): the verb and payload go to `plain` (n - IDX_VERB bytes). 0 or E_BAD_MAC. */
static int poly_open(const unsigned char key[32], const unsigned char *d, size_t n, unsigned char *plain)
{
    unsigned char mk[32], tag[16];
    unsigned char scratch[64 + MAX_PACKET_LENGTH];
    const size_t body = n - IDX_VERB;
    mangle_key(mk, key, d, n);
    if (((d[IDX_FLAGS] >> 3) & 7) == 1) {
        memset(scratch, 0, 64);
        memcpy(scratch + 64, d + IDX_VERB, body);
        crypto_stream_salsa2012_xor(scratch, scratch, 64 + body, d, mk);
        crypto_onetimeauth_poly1305(tag, d + IDX_VERB, body, scratch);
        if (!ct_equal(tag, d + IDX_MAC, 8))
            return E_BAD_MAC;
        memcpy(plain, scratch + 64, body);
    } else {
        memset(scratch, 0, 32);
        crypto_stream_salsa2012_xor(scratch, scratch, 32, d, mk);
        crypto_onetimeauth_poly1305(tag, d + IDX_VERB, body, scratch);
        if (!ct_equal(tag, d + IDX_MAC, 8))
            return E_BAD_MAC;
        memcpy(plain, d + IDX_VERB, body);
    }
    return 0;
}

static PyObject *armor_poly(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    unsigned char key[32];
    SealArgs a;

    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "armor_poly() takes 7 arguments");
        return NULL;
    }
    if (!sodium_ready() || get_key32(args[0], key) < 0 || seal_args(args + 1, &a) < 0)
        return NULL;
    const int suite = (a.flags >> 3) & 7;
    if (suite != 0 && suite != 1) {
        input_release(&a.payload);
        PyErr_SetString(PyExc_ValueError, "armor_poly() does cipher suites 0 and 1 only");
        return NULL;
    }
    const size_t n = IDX_PAYLOAD + (size_t)a.payload.len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (out == NULL) {
        input_release(&a.payload);
        return NULL;
    }
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(out);
    put_head(w, a.packet_id, a.dest, a.src, a.flags);
    w[IDX_VERB] = (unsigned char)a.verb_byte;
    memcpy(w + IDX_PAYLOAD, a.payload.buf, (size_t)a.payload.len);
    input_release(&a.payload);
    poly_seal(key, w, n);
    return out;
}

static PyObject *dearmor_poly(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    unsigned char key[32];
    unsigned char plain[MAX_PACKET_LENGTH];
    Input d;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "dearmor_poly() takes 2 arguments");
        return NULL;
    }
    if (!sodium_ready() || get_key32(args[0], key) < 0 || input_get(args[1], &d) < 0)
        return NULL;
    int rc = d.len < IDX_PAYLOAD ? E_TOO_SHORT : d.len > MAX_PACKET_LENGTH ? E_TOO_LONG : 0;
    if (rc == 0 && ((d.buf[IDX_FLAGS] >> 3) & 7) > 1)
        rc = E_UNKNOWN_CIPHER;
    if (rc == 0)
        rc = poly_open(key, d.buf, (size_t)d.len, plain);
    const Py_ssize_t body = d.len - IDX_VERB;
    input_release(&d);
    if (rc != 0)
        return PyLong_FromLong(rc);
    return opened(plain[0], plain + 1, body - 1);
}

/* ---- suite 3: AES-GMAC-SIV (the Siv type) ------------------------------------ */

#include "_siv.h"

/* ---- C interface for the package's other extensions (_armor_api.h) ------------ */

static int api_siv_seal(PyObject *siv, unsigned long long iv, unsigned char *packet, size_t n)
{
    return siv_seal((SivObject *)siv, iv, packet, n);
}

static int api_siv_open(PyObject *siv, const unsigned char *packet, size_t n, unsigned char *plain)
{
    return siv_open((SivObject *)siv, packet, n, plain);
}

static int api_poly_ready(void)
{
    return crypto_stream_salsa2012_xor != NULL && crypto_onetimeauth_poly1305 != NULL;
}

static ZtArmorApi armor_api = {ZT_ARMOR_API_ABI, &SivType, api_poly_ready, poly_seal, poly_open, api_siv_seal, api_siv_open};

/* ---- binding ----------------------------------------------------------------- */

static void *address_of(PyObject *o)
{
    void *address = PyLong_AsVoidPtr(o);
    if (address == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "function address must not be NULL");
    return address;
}

static PyObject *bind_sodium(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "bind_sodium() takes 2 arguments");
        return NULL;
    }
    void *salsa = address_of(args[0]);
    if (salsa == NULL)
        return NULL;
    void *poly = address_of(args[1]);
    if (poly == NULL)
        return NULL;
    crypto_stream_salsa2012_xor = (salsa2012_xor_fn)salsa;
    crypto_onetimeauth_poly1305 = (poly1305_fn)poly;
    Py_RETURN_NONE;
}

static PyObject *bind_openssl(PyObject *self, PyObject *arg)
{
    (void)self;
    void *a[N_OSSL];
    if (ossl_bound) {
        /* Contexts made with the first library must be freed by it: never rebind. */
        PyErr_SetString(PyExc_RuntimeError, "bind_openssl() was already called");
        return NULL;
    }
    if (!PyTuple_Check(arg) || PyTuple_GET_SIZE(arg) != N_OSSL) {
        PyErr_Format(PyExc_TypeError, "bind_openssl() takes a tuple of %d addresses", N_OSSL);
        return NULL;
    }
    for (int i = 0; i < N_OSSL; ++i) {
        a[i] = address_of(PyTuple_GET_ITEM(arg, i));
        if (a[i] == NULL)
            return NULL;
    }
    ossl.ctx_new = (ctx_new_fn)a[0];
    ossl.ctx_free = (ctx_free_fn)a[1];
    ossl.init = (cipher_init_fn)a[2];
    ossl.update = (cipher_update_fn)a[3];
    ossl.final = (cipher_final_fn)a[4];
    ossl.ctrl = (ctx_ctrl_fn)a[5];
    ossl.set_padding = (set_padding_fn)a[6];
    ossl.aes_256_gcm = (cipher_get_fn)a[7];
    ossl.aes_256_ecb = (cipher_get_fn)a[8];
    ossl.aes_256_ctr = (cipher_get_fn)a[9];
    ossl_bound = 1;
    Py_RETURN_NONE;
}

static PyMethodDef armor_methods[] = {
    {"bind_sodium", (PyCFunction)(void (*)(void))bind_sodium, METH_FASTCALL,
     "bind_sodium(salsa2012_xor, poly1305, /)\n\nAddresses of libsodium's crypto_stream_salsa2012_xor and "
     "crypto_onetimeauth_poly1305."},
    {"bind_openssl", bind_openssl, METH_O,
     "bind_openssl(addresses, /)\n\nAddresses of the OpenSSL EVP functions, in the order of OPENSSL_NAMES."},
    {"armor_poly", (PyCFunction)(void (*)(void))armor_poly, METH_FASTCALL,
     "armor_poly(key, packet_id, destination, source, flags, verb_byte, payload, /) -> bytes\n\n"
     "Armor a packet with cipher suite 0 or 1 (taken from flags, whose hop bits are kept)."},
    {"dearmor_poly", (PyCFunction)(void (*)(void))dearmor_poly, METH_FASTCALL,
     "dearmor_poly(key, packet, /) -> (verb_byte, payload) | error code"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef armor_module = {
    PyModuleDef_HEAD_INIT, "ztcore.crypto._armor", "One C call per VL1 packet to armor or dearmor it.", -1,
    armor_methods,
};

PyMODINIT_FUNC PyInit__armor(void)
{
    if (PyType_Ready(&SivType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&armor_module);
    if (m == NULL)
        return NULL;
    PyObject *names = Py_BuildValue("(ssssssssss)", "EVP_CIPHER_CTX_new", "EVP_CIPHER_CTX_free",
                                    "EVP_CipherInit_ex", "EVP_CipherUpdate", "EVP_CipherFinal_ex",
                                    "EVP_CIPHER_CTX_ctrl", "EVP_CIPHER_CTX_set_padding", "EVP_aes_256_gcm",
                                    "EVP_aes_256_ecb", "EVP_aes_256_ctr");
    Py_INCREF(&SivType);
    PyObject *api = PyCapsule_New(&armor_api, ZT_ARMOR_API_NAME, NULL);
    if (api == NULL || PyModule_AddObject(m, "_API", api) < 0) {
        Py_XDECREF(api);
        Py_XDECREF(names);
        Py_DECREF(m);
        return NULL;
    }
    if (names == NULL || PyModule_AddObject(m, "OPENSSL_NAMES", names) < 0 ||
        PyModule_AddObject(m, "Siv", (PyObject *)&SivType) < 0 ||
        PyModule_AddIntConstant(m, "HAVE_AESNI", aesni_usable()) < 0 ||
        PyModule_AddIntConstant(m, "E_TOO_SHORT", E_TOO_SHORT) < 0 ||
        PyModule_AddIntConstant(m, "E_TOO_LONG", E_TOO_LONG) < 0 ||
        PyModule_AddIntConstant(m, "E_BAD_MAC", E_BAD_MAC) < 0 ||
        PyModule_AddIntConstant(m, "E_UNKNOWN_CIPHER", E_UNKNOWN_CIPHER) < 0) {
        Py_XDECREF(names);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
