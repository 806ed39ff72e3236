"""The libsodium prototypes ztcore binds, as one C declaration string.

Read by two users: the build step (`_sodium_build.py`, through setup.py's
``cffi_modules``) which turns it into the pre-parsed ``_sodium_ffi`` module, and
`ztcore.crypto._sodium` when running from a tree where that step has not run.
This module imports nothing, so the build can load it without the package.
Debian's runtime package ships the shared library without headers, hence the
declarations here.
"""

CDEF = """
int sodium_init(void);
int crypto_stream_salsa2012_xor(unsigned char *c, const unsigned char *m,
    unsigned long long mlen, const unsigned char *n, const unsigned char *k);
int crypto_stream_salsa20_xor_ic(unsigned char *c, const unsigned char *m,
    unsigned long long mlen, const unsigned char *n, uint64_t ic, const unsigned char *k);
int crypto_onetimeauth_poly1305(unsigned char *out, const unsigned char *in,
    unsigned long long inlen, const unsigned char *k);
int crypto_scalarmult_curve25519(unsigned char *q, const unsigned char *n, const unsigned char *p);
int crypto_scalarmult_curve25519_base(unsigned char *q, const unsigned char *n);
int crypto_sign_ed25519_seed_keypair(unsigned char *pk, unsigned char *sk, const unsigned char *seed);
int crypto_sign_ed25519_detached(unsigned char *sig, unsigned long long *siglen_p,
    const unsigned char *m, unsigned long long mlen, const unsigned char *sk);
int crypto_sign_ed25519_verify_detached(const unsigned char *sig, const unsigned char *m,
    unsigned long long mlen, const unsigned char *pk);
"""
