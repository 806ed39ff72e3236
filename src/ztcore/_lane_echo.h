/*
 * ztcore._lane: the ICMP echo offload. Included by _lane.c only.
 *
 * For the networks the runtime names (set_echo: its userspace responder is the only
 * frame listener there, ztcore.runtime.service), an echo request in a FRAME the lane
 * takes, to one of the given IPv4 addresses, whole, without options, with valid
 * checksums and a reply that fits the MTU, is answered here: the reply the responder
 * would send (ztcore.netstack.responder _input_icmp_echo / _answer_echo), but for the
 * IP identification, which the lane counts itself. Anything else is delivered to the
 * responder, which answers or counts it.
 */

#ifndef ZTCORE_LANE_ECHO_H
#define ZTCORE_LANE_ECHO_H

#include "netstack/_inet.h"

static const Echo *echo_for(LaneObject *l, uint64_t network_id)
{
    for (int i = 0; i < l->n_echo; ++i)
        if (l->echo[i].network_id == network_id)
            return &l->echo[i];
    return NULL;
}

/* If `ip` (plen bytes) is an echo request the responder would answer with one packet,
 * write that reply's IPv4 packet to `out` and return its length; else 0. The checks
 * are the responder's (ztcore.netstack.responder, _input_ipv4 / _input_icmp_echo). */
static size_t echo_reply(LaneObject *l, const Echo *e, const unsigned char *ip, size_t plen, unsigned char *out)
{
    if (plen < 28 || ip[0] != 0x45 || ip[9] != 1 || ip[20] != 8 || ip[21] != 0 || (ip[6] & 0x3f) || ip[7] ||
        ip[12] >= 224)
        return 0;
    int ours = 0;
    for (int i = 0; i < e->n && !ours; ++i)
        ours = memcmp(ip + 16, e->ipv4[i], 4) == 0;
    const size_t total = ((size_t)ip[2] << 8) | ip[3];
    if (!ours || total < 28 || total > plen || (int)total > e->mtu)
        return 0;
    if (fold16(sum16(ip, 20, 0)) != 0 || fold16(sum16(ip + 20, total - 20, 0)) != 0)
        return 0; /* the responder counts bad checksums: its path, not ours */
    put_ipv4_header(out, total, ++l->ip_ident, 64, 1, ip + 16, ip + 12); /* ours -> theirs */
    memcpy(out + 20, ip + 20, total - 20);
    out[20] = 0;
    out[22] = out[23] = 0;
    const uint16_t ick = fold16(sum16(out + 20, total - 20, 0));
    out[22] = (unsigned char)(ick >> 8);
    out[23] = (unsigned char)ick;
    return total;
}

static PyObject *lane_set_echo(LaneObject *l, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "set_echo(network_id, ipv4_addresses: tuple[bytes, ...], mtu)");
        return NULL;
    }
    unsigned long long nwid = PyLong_AsUnsignedLongLong(args[0]);
    long mtu = PyLong_AsLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    const Py_ssize_t n = PyTuple_GET_SIZE(args[1]);
    if (n > MAX_ECHO_ADDRESSES) {
        PyErr_Format(PyExc_ValueError, "at most %d addresses", MAX_ECHO_ADDRESSES);
        return NULL;
    }
    Echo e = {.network_id = nwid, .n = (int)n, .mtu = (int)(mtu < 0 ? 0 : mtu > 65535 ? 65535 : mtu)};
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject *a = PyTuple_GET_ITEM(args[1], i);
        if (!PyBytes_Check(a) || PyBytes_GET_SIZE(a) != 4) {
            PyErr_SetString(PyExc_ValueError, "IPv4 addresses are 4-byte bytes");
            return NULL;
        }
        memcpy(e.ipv4[i], PyBytes_AS_STRING(a), 4);
    }
    for (int i = 0; i < l->n_echo; ++i)
        if (l->echo[i].network_id == nwid) {
            l->echo[i] = e;
            Py_RETURN_NONE;
        }
    if (l->echo == NULL && (l->echo = PyMem_Calloc(MAX_ECHO_NETWORKS, sizeof(Echo))) == NULL)
        return PyErr_NoMemory();
    if (l->n_echo >= MAX_ECHO_NETWORKS) {
        PyErr_Format(PyExc_ValueError, "at most %d networks with an echo offload", MAX_ECHO_NETWORKS);
        return NULL;
    }
    l->echo[l->n_echo++] = e;
    Py_RETURN_NONE;
}

static PyObject *lane_clear_echo(LaneObject *l, PyObject *arg)
{
    unsigned long long nwid = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred())
        return NULL;
    for (int i = 0; i < l->n_echo; ++i)
        if (l->echo[i].network_id == nwid) {
            l->echo[i] = l->echo[--l->n_echo];
            break;
        }
    Py_RETURN_NONE;
}

#endif /* ZTCORE_LANE_ECHO_H */
