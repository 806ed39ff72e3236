/*
 * The C interface of ztcore.crypto._armor for other extension modules of the package
 * (ztcore._lane): the same per-packet work as armor_poly/dearmor_poly and Siv, on the
 * caller's buffers, without Python objects in between. Published as a capsule; the
 * user gets it with PyCapsule_Import(ZT_ARMOR_API_NAME, 0) and checks `abi`.
 *
 * Buffers are whole VL1 packets (IDX_PAYLOAD..MAX_PACKET_LENGTH bytes, head layout
 * as in _armor.c). seal: the head and the plaintext verb+payload are in place; the MAC
 * (and for suite 3 the packet ID) are written and the body encrypted, in place.
 * open: verb+payload (n - 27 bytes) are written to `plain`. Results: 0 ok, 3 bad MAC
 * (E_BAD_MAC), -1 an OpenSSL call failed. The Salsa20/Poly1305 functions need
 * bind_sodium() to have run (ztcore.crypto.armor does it at import).
 */

#ifndef ZTCORE_ARMOR_API_H
#define ZTCORE_ARMOR_API_H

#include <Python.h>
#include <stddef.h>

/* VL1 packet head layout (ztcore.vl1.packet): 8-byte IV/packet ID, 5-byte destination,
 * 5-byte source, flags byte, 8-byte MAC, then the verb byte and the payload. */
#define IDX_DEST 8
#define IDX_SOURCE 13
#define IDX_FLAGS 18
#define IDX_MAC 19
#define IDX_VERB 27
#define IDX_PAYLOAD 28
#define MAX_PACKET_LENGTH 10024 /* 7 fragments of the default 1432-byte physical MTU */

#define ZT_ARMOR_API_NAME "ztcore.crypto._armor._API"
#define ZT_ARMOR_API_ABI 2

typedef struct {
    unsigned int abi;
    PyTypeObject *siv_type;
    int (*poly_ready)(void); /* 1 once bind_sodium() has run */
    int (*poly_seal)(const unsigned char key[32], unsigned char *packet, size_t n);
    int (*poly_open)(const unsigned char key[32], const unsigned char *packet, size_t n, unsigned char *plain);
    int (*siv_seal)(PyObject *siv, unsigned long long iv, unsigned char *packet, size_t n);
    int (*siv_open)(PyObject *siv, const unsigned char *packet, size_t n, unsigned char *plain);
} ZtArmorApi;

#endif /* ZTCORE_ARMOR_API_H */
