/*
 * ztcore.netstack._wire -- the userspace stack's commonest output in one call: a UDP
 * datagram in an IPv4 packet, both checksums computed. Pure-Python reference:
 * ztcore.netstack.frames.build_udp_ipv4_py (build_udp + build_ipv4); tests hold the
 * two to each other byte for byte.
 *
 *     udp_ipv4(src: bytes, dst: bytes, source_port: int, dest_port: int, ident: int,
 *              ttl: int, payload: bytes) -> bytes
 *
 * The IPv4 header is 20 bytes without options, DF clear (as the stack's unfragmented
 * packets), the UDP checksum covers the pseudo-header and is sent as 0xffff when it
 * computes to zero (zero means "none").
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "_inet.h"

static PyObject *udp_ipv4(PyObject *self, PyObject *args)
{
    Py_buffer src, dst, payload;
    int sport, dport, ident, ttl;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*iiiiy*:udp_ipv4", &src, &dst, &sport, &dport, &ident, &ttl, &payload))
        return NULL;
    PyObject *out = NULL;
    const size_t total = 28 + (size_t)payload.len;
    if (src.len != 4 || dst.len != 4) {
        PyErr_SetString(PyExc_ValueError, "src and dst must be 4-byte IPv4 addresses");
    } else if (sport < 0 || sport > 0xffff || dport < 0 || dport > 0xffff || ident < 0 || ident > 0xffff ||
               ttl < 0 || ttl > 0xff) {
        PyErr_SetString(PyExc_ValueError, "ports and ident are 16 bits, ttl 8");
    } else if (total > 0xffff) {
        PyErr_SetString(PyExc_ValueError, "IPv4 packet too long");
    } else if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total)) != NULL) {
        unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
        const unsigned char *s = src.buf, *d = dst.buf;
        const size_t ulen = total - 20;
        put_ipv4_header(p, total, (unsigned)ident, (unsigned)ttl, 17, s, d);
        unsigned char *u = p + 20;
        u[0] = (unsigned char)(sport >> 8);
        u[1] = (unsigned char)sport;
        u[2] = (unsigned char)(dport >> 8);
        u[3] = (unsigned char)dport;
        u[4] = (unsigned char)(ulen >> 8);
        u[5] = (unsigned char)ulen;
        u[6] = u[7] = 0;
        memcpy(u + 8, payload.buf, (size_t)payload.len);
        /* Pseudo-header: source, destination, zero, protocol, UDP length. */
        uint32_t sum = sum16(s, 4, 0);
        sum = sum16(d, 4, sum);
        sum += 17 + (uint32_t)ulen;
        uint16_t uck = fold16(sum16(u, ulen, sum));
        if (uck == 0)
            uck = 0xffff;
        u[6] = (unsigned char)(uck >> 8);
        u[7] = (unsigned char)uck;
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    PyBuffer_Release(&payload);
    return out;
}

static PyMethodDef wire_methods[] = {
    {"udp_ipv4", udp_ipv4, METH_VARARGS,
     "udp_ipv4(src, dst, source_port, dest_port, ident, ttl, payload) -> bytes: an IPv4 packet carrying "
     "a UDP datagram, checksums computed."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef wire_module = {
    PyModuleDef_HEAD_INIT, "ztcore.netstack._wire", "The userspace stack's UDP-in-IPv4 output in one call.", -1,
    wire_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__wire(void)
{
    return PyModule_Create(&wire_module);
}
