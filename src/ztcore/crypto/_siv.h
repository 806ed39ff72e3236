/*
 * ztcore.crypto._armor's Siv type: cipher suite 3 (AES-GMAC-SIV) on AES-NI (_aesni.h)
 * or OpenSSL's EVP. Included by _armor.c only, after its helpers and bindings
 * (one translation unit, one extension module); see _armor.c for the construction.
 */

#ifndef ZTCORE_ARMOR_SIV_H
#define ZTCORE_ARMOR_SIV_H

#include "_aesni.h"

/* ---- suite 3: AES-GMAC-SIV ------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    void *ni;      /* NiKeys (16-byte aligned) when AES-NI does the work, else NULL and EVP does */
    void *gcm;     /* AES-256-GCM under K0, encrypt direction (GMAC only: everything is AAD) */
    void *ecb_enc; /* AES-256-ECB under K1 */
    void *ecb_dec;
    void *ctr; /* AES-256-CTR under K1, IV reset per message */
} SivObject;

static int aesni_usable(void)
{
#ifdef ZT_AESNI_CODE
    static int usable = -1;
    if (usable < 0)
        usable = ni_supported();
    return usable;
#else
    return 0;
#endif
}

static void siv_dealloc(SivObject *s)
{
    free(s->ni);
    if (ossl_bound) {
        if (s->gcm)
            ossl.ctx_free(s->gcm);
        if (s->ecb_enc)
            ossl.ctx_free(s->ecb_enc);
        if (s->ecb_dec)
            ossl.ctx_free(s->ecb_dec);
        if (s->ctr)
            ossl.ctx_free(s->ctr);
    }
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *siv_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *k0o, *k1o;
    static char *kwlist[] = {"k0", "k1", "aesni", NULL};
    Input k0, k1;
    unsigned char zero16[16] = {0};
    int want_ni = 1;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$p:Siv", kwlist, &k0o, &k1o, &want_ni))
        return NULL;
    const int use_ni = want_ni && aesni_usable();
    if (!use_ni && !ossl_bound) {
        PyErr_SetString(PyExc_RuntimeError, "bind_openssl() was not called");
        return NULL;
    }
    if (input_get(k0o, &k0) < 0)
        return NULL;
    if (input_get(k1o, &k1) < 0) {
        input_release(&k0);
        return NULL;
    }
    SivObject *s = NULL;
    if (k0.len != 32 || k1.len != 32) {
        PyErr_SetString(PyExc_ValueError, "AES-GMAC-SIV needs two 32-byte keys");
        goto done;
    }
    s = (SivObject *)type->tp_alloc(type, 0);
    if (s == NULL)
        goto done;
#ifdef ZT_AESNI_CODE
    if (use_ni) {
        s->ni = aligned_alloc(16, sizeof(NiKeys));
        if (s->ni == NULL) {
            Py_CLEAR(s);
            PyErr_NoMemory();
            goto done;
        }
        ni_setup((NiKeys *)s->ni, k0.buf, k1.buf);
        goto done;
    }
#endif
    s->gcm = ossl.ctx_new();
    s->ecb_enc = ossl.ctx_new();
    s->ecb_dec = ossl.ctx_new();
    s->ctr = ossl.ctx_new();
    if (!s->gcm || !s->ecb_enc || !s->ecb_dec || !s->ctr) {
        Py_CLEAR(s);
        PyErr_NoMemory();
        goto done;
    }
    if (ossl.init(s->gcm, ossl.aes_256_gcm(), NULL, k0.buf, NULL, 1) != 1 ||
        ossl.init(s->ecb_enc, ossl.aes_256_ecb(), NULL, k1.buf, NULL, 1) != 1 ||
        ossl.init(s->ecb_dec, ossl.aes_256_ecb(), NULL, k1.buf, NULL, 0) != 1 ||
        ossl.init(s->ctr, ossl.aes_256_ctr(), NULL, k1.buf, zero16, 1) != 1 ||
        ossl.set_padding(s->ecb_enc, 0) != 1 || ossl.set_padding(s->ecb_dec, 0) != 1) {
        Py_CLEAR(s);
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL refused to set up AES-256 contexts");
        goto done;
    }
done:
    input_release(&k0);
    input_release(&k1);
    return (PyObject *)s;
}

/* GMAC of the concatenated segments (the caller lays out the AAD padding), folded to 8 bytes. */
static int siv_gmac_fold(SivObject *s, const unsigned char iv8[8], const unsigned char *const *seg,
                         const size_t *len, int nseg, unsigned char fold[8])
{
    unsigned char nonce[12], t[16], dummy[16];
    int outl;
#ifdef ZT_AESNI_CODE
    if (s->ni) {
        ni_siv_gmac_fold((const NiKeys *)s->ni, iv8, seg, len, nseg, fold);
        return 0;
    }
#endif
    memcpy(nonce, iv8, 8);
    memset(nonce + 8, 0, 4);
    if (ossl.init(s->gcm, NULL, NULL, NULL, nonce, 1) != 1)
        return -1;
    for (int i = 0; i < nseg; ++i) {
        if (len[i] == 0)
            continue;
        if (len[i] > (size_t)INT32_MAX || ossl.update(s->gcm, NULL, &outl, seg[i], (int)len[i]) != 1)
            return -1;
    }
    if (ossl.final(s->gcm, dummy, &outl) != 1 || ossl.ctrl(s->gcm, EVP_CTRL_AEAD_GET_TAG, 16, t) != 1)
        return -1;
    for (int i = 0; i < 8; ++i)
        fold[i] = (unsigned char)(t[i] ^ t[i + 8]);
    return 0;
}

/* AES-CTR under K1 from the tag (top counter bit cleared) over up to two segments. */
static int siv_ctr(SivObject *s, const unsigned char tag[16], const unsigned char *in1, unsigned char *out1,
                   size_t len1, const unsigned char *in2, unsigned char *out2, size_t len2)
{
    unsigned char iv[16];
    int outl;
#ifdef ZT_AESNI_CODE
    if (s->ni) {
        ni_siv_ctr((const NiKeys *)s->ni, tag, in1, out1, len1, in2, out2, len2);
        return 0;
    }
#endif
    memcpy(iv, tag, 16);
    iv[12] &= 0x7f;
    if (ossl.init(s->ctr, NULL, NULL, NULL, iv, 1) != 1)
        return -1;
    if (len1 && (len1 > (size_t)INT32_MAX || ossl.update(s->ctr, out1, &outl, in1, (int)len1) != 1))
        return -1;
    if (len2 && (len2 > (size_t)INT32_MAX || ossl.update(s->ctr, out2, &outl, in2, (int)len2) != 1))
        return -1;
    return 0;
}

/* One block of AES-256 under K1, encrypting (the tag) or decrypting (to recover IV || fold). */
static int siv_ecb(SivObject *s, int decrypt, const unsigned char in[16], unsigned char out[16])
{
    int outl = 0;
#ifdef ZT_AESNI_CODE
    if (s->ni) {
        const NiKeys *k = (const NiKeys *)s->ni;
        ni_ecb(decrypt ? k->k1d : k->k1, decrypt, in, out);
        return 0;
    }
#endif
    return (ossl.update(decrypt ? s->ecb_dec : s->ecb_enc, out, &outl, in, 16) == 1 && outl == 16) ? 0 : -1;
}

static PyObject *openssl_failed(void)
{
    PyErr_SetString(PyExc_RuntimeError, "an OpenSSL AES call failed");
    return NULL;
}

/* Seal in place: `w` holds destination, source and flags (bytes 8..18) and the plaintext
 * verb and payload from IDX_VERB on; writes the packet ID (tag[0:8]) and MAC (tag[8:16])
 * and encrypts. `iv` is the 64-bit nonce (the packet ID a suite-1 packet would carry).
 * 0, or -1 if an OpenSSL call failed. */
static int siv_seal(SivObject *s, unsigned long long iv, unsigned char *w, size_t n)
{
    unsigned char hdr[17], ivfold[16], tag[16];
    const size_t plen = n - IDX_PAYLOAD;
    /* AAD = destination || source || flags without hops, zero-padded to 16; then the verb. */
    memcpy(hdr, w + IDX_DEST, 10);
    hdr[10] = (unsigned char)(w[IDX_FLAGS] & 0xf8);
    memset(hdr + 11, 0, 5);
    hdr[16] = w[IDX_VERB];
    put_be(ivfold, iv, 8);
    const unsigned char *seg[2] = {hdr, w + IDX_PAYLOAD};
    const size_t len[2] = {17, plen};
    int rc = siv_gmac_fold(s, ivfold, seg, len, 2, ivfold + 8);
    if (rc == 0)
        rc = siv_ecb(s, 0, ivfold, tag);
    if (rc == 0)
        rc = siv_ctr(s, tag, hdr + 16, w + IDX_VERB, 1, w + IDX_PAYLOAD, w + IDX_PAYLOAD, plen);
    if (rc != 0)
        return -1;
    memcpy(w, tag, 8);
    memcpy(w + IDX_MAC, tag + 8, 8);
    return 0;
}

/* Check and decrypt a whole suite-3 packet of `n` bytes (IDX_PAYLOAD..MAX_PACKET_LENGTH):
 * the verb and payload go to `plain` (n - IDX_VERB bytes). 0, E_BAD_MAC, or -1 if an
 * OpenSSL call failed. */
static int siv_open(SivObject *s, const unsigned char *d, size_t n, unsigned char *plain)
{
    unsigned char hdr[17], tag[16], ivmac[16], fold[8];
    const size_t plen = n - IDX_PAYLOAD;
    memcpy(tag, d, 8);
    memcpy(tag + 8, d + IDX_MAC, 8);
    memcpy(hdr, d + IDX_DEST, 10);
    hdr[10] = (unsigned char)(d[IDX_FLAGS] & 0xf8);
    memset(hdr + 11, 0, 5);
    int rc = siv_ecb(s, 1, tag, ivmac);
    if (rc == 0)
        rc = siv_ctr(s, tag, d + IDX_VERB, hdr + 16, 1, d + IDX_PAYLOAD, plain + 1, plen);
    if (rc == 0) {
        plain[0] = hdr[16];
        const unsigned char *seg[2] = {hdr, plain + 1};
        const size_t len[2] = {17, plen};
        rc = siv_gmac_fold(s, ivmac, seg, len, 2, fold);
    }
    if (rc != 0)
        return -1;
    return ct_equal(fold, ivmac + 8, 8) ? 0 : E_BAD_MAC;
}

static PyObject *siv_armor(SivObject *s, PyObject *const *args, Py_ssize_t nargs)
{
    SealArgs a;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "Siv.armor() takes 6 arguments");
        return NULL;
    }
    if (seal_args(args, &a) < 0)
        return NULL;
    if (((a.flags >> 3) & 7) != 3) {
        input_release(&a.payload);
        PyErr_SetString(PyExc_ValueError, "Siv.armor() does cipher suite 3 only");
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
    if (siv_seal(s, a.packet_id, w, n) != 0) {
        Py_DECREF(out);
        return openssl_failed();
    }
    return out;
}

static PyObject *siv_dearmor(SivObject *s, PyObject *arg)
{
    Input d;
    unsigned char plain[MAX_PACKET_LENGTH];
    if (input_get(arg, &d) < 0)
        return NULL;
    int rc = d.len < IDX_PAYLOAD ? E_TOO_SHORT : d.len > MAX_PACKET_LENGTH ? E_TOO_LONG : 0;
    if (rc == 0 && ((d.buf[IDX_FLAGS] >> 3) & 7) != 3)
        rc = E_UNKNOWN_CIPHER;
    if (rc == 0)
        rc = siv_open(s, d.buf, (size_t)d.len, plain);
    const Py_ssize_t body = d.len - IDX_VERB;
    input_release(&d);
    if (rc < 0)
        return openssl_failed();
    if (rc != 0)
        return PyLong_FromLong(rc);
    return opened(plain[0], plain + 1, body - 1);
}

/* Generic message API (any AAD), as AesGmacSiv.encrypt/decrypt. */
static PyObject *siv_encrypt(SivObject *s, PyObject *const *args, Py_ssize_t nargs)
{
    Input iv, aad, pt;
    unsigned char ivfold[16], tag[16];
    static const unsigned char zero16[16] = {0};
    PyObject *ct = NULL, *result = NULL;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "Siv.encrypt() takes 3 arguments");
        return NULL;
    }
    if (input_get(args[0], &iv) < 0)
        return NULL;
    if (input_get(args[1], &aad) < 0) {
        input_release(&iv);
        return NULL;
    }
    if (input_get(args[2], &pt) < 0) {
        input_release(&iv);
        input_release(&aad);
        return NULL;
    }
    if (iv.len != 8) {
        PyErr_SetString(PyExc_ValueError, "AES-GMAC-SIV IV must be 8 bytes");
        goto done;
    }
    ct = PyBytes_FromStringAndSize(NULL, pt.len);
    if (ct == NULL)
        goto done;
    memcpy(ivfold, iv.buf, 8);
    const unsigned char *seg[3] = {aad.buf, zero16, pt.buf};
    const size_t len[3] = {(size_t)aad.len, (size_t)((16 - (aad.len & 15)) & 15), (size_t)pt.len};
    if (siv_gmac_fold(s, ivfold, seg, len, 3, ivfold + 8) != 0 || siv_ecb(s, 0, ivfold, tag) != 0 ||
        siv_ctr(s, tag, pt.buf, (unsigned char *)PyBytes_AS_STRING(ct), (size_t)pt.len, NULL, NULL, 0) != 0) {
        openssl_failed();
        goto done;
    }
    result = Py_BuildValue("(y#O)", (const char *)tag, (Py_ssize_t)16, ct);
done:
    Py_XDECREF(ct);
    input_release(&iv);
    input_release(&aad);
    input_release(&pt);
    return result;
}

static PyObject *siv_decrypt(SivObject *s, PyObject *const *args, Py_ssize_t nargs)
{
    Input tag, aad, ct;
    unsigned char ivmac[16], fold[8];
    static const unsigned char zero16[16] = {0};
    PyObject *pt = NULL, *result = NULL;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "Siv.decrypt() takes 3 arguments");
        return NULL;
    }
    if (input_get(args[0], &tag) < 0)
        return NULL;
    if (input_get(args[1], &aad) < 0) {
        input_release(&tag);
        return NULL;
    }
    if (input_get(args[2], &ct) < 0) {
        input_release(&tag);
        input_release(&aad);
        return NULL;
    }
    if (tag.len != 16) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    pt = PyBytes_FromStringAndSize(NULL, ct.len);
    if (pt == NULL)
        goto done;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(pt);
    const unsigned char *seg[3] = {aad.buf, zero16, p};
    const size_t len[3] = {(size_t)aad.len, (size_t)((16 - (aad.len & 15)) & 15), (size_t)ct.len};
    if (siv_ecb(s, 1, tag.buf, ivmac) != 0 ||
        siv_ctr(s, tag.buf, ct.buf, p, (size_t)ct.len, NULL, NULL, 0) != 0 ||
        siv_gmac_fold(s, ivmac, seg, len, 3, fold) != 0) {
        openssl_failed();
        goto done;
    }
    result = ct_equal(fold, ivmac + 8, 8) ? Py_NewRef(pt) : Py_NewRef(Py_None);
done:
    Py_XDECREF(pt);
    input_release(&tag);
    input_release(&aad);
    input_release(&ct);
    return result;
}

static PyMethodDef siv_methods[] = {
    {"armor", (PyCFunction)(void (*)(void))siv_armor, METH_FASTCALL,
     "armor(packet_id, destination, source, flags, verb_byte, payload, /) -> bytes"},
    {"dearmor", (PyCFunction)siv_dearmor, METH_O, "dearmor(packet, /) -> (verb_byte, payload) | error code"},
    {"encrypt", (PyCFunction)(void (*)(void))siv_encrypt, METH_FASTCALL,
     "encrypt(iv8, aad, plaintext, /) -> (tag16, ciphertext)"},
    {"decrypt", (PyCFunction)(void (*)(void))siv_decrypt, METH_FASTCALL,
     "decrypt(tag16, aad, ciphertext, /) -> plaintext | None"},
    {NULL, NULL, 0, NULL},
};

static PyObject *siv_backend(SivObject *s, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(s->ni ? "aes-ni" : "openssl");
}

static PyGetSetDef siv_getset[] = {
    {"backend", (getter)siv_backend, NULL, "Which code does the AES: \"aes-ni\" or \"openssl\" (EVP).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SivType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ztcore.crypto._armor.Siv",
    .tp_basicsize = sizeof(SivObject),
    .tp_dealloc = (destructor)siv_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Siv(k0, k1, *, aesni=True): AES-GMAC-SIV (cipher suite 3) on AES-NI where the CPU has it "
              "(unless aesni=False), else on prepared OpenSSL EVP contexts.",
    .tp_methods = siv_methods,
    .tp_getset = siv_getset,
    .tp_new = siv_new,
};

#endif /* ZTCORE_ARMOR_SIV_H */
