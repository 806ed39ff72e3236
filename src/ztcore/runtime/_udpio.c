/*
 * ztcore.runtime._udpio -- read a UDP socket's queued datagrams in one call, and send
 * the pieces of one packet in one.
 *
 * asyncio's datagram transport reads one datagram per event-loop iteration;
 * the runtime instead drains a socket per wake-up. This module does the drain
 * with recvmmsg(2) (Linux; a recvfrom(2) loop elsewhere), never blocking
 * (MSG_DONTWAIT), and returns the datagrams with their source addresses in the
 * form socket.recvfrom gives them: (host, port) for IPv4 and the same first
 * two fields for IPv6 (numeric host, "%scope" for scoped addresses).
 *
 *     recv_batch(fd: int, max_count: int) -> list[tuple[bytes, tuple[str, int]]]
 *     send_batch(fd: int, datagrams: tuple[bytes, ...], host: str, port: int) -> int
 *
 * An empty list means nothing is queued. A socket error with nothing read
 * raises OSError (the caller counts it and goes on); an error after some
 * datagrams were read is reported by the kernel on the next call.
 *
 * send_batch sends the datagrams, in order, to one numeric address with sendmmsg(2)
 * (Linux; a sendto(2) loop elsewhere), never blocking, and returns how many went: fewer
 * than given when the socket's buffer filled (the caller queues the rest). An error
 * before the first raises OSError (BlockingIOError for a full buffer).
 *
 * Source addresses repeat (a node talks to few peers), so the last few are
 * remembered and the same (host, port) tuple object is handed out again
 * instead of formatting the address for every datagram.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SLOT_SIZE 65536   /* the largest UDP payload fits */
#define MAX_BATCH 256
#define ADDR_CACHE 16

static unsigned char *buffers = NULL; /* MAX_BATCH slots, allocated on first use */

#ifdef __linux__
static struct mmsghdr msgs[MAX_BATCH];
static struct iovec iovs[MAX_BATCH];
#endif
static struct sockaddr_storage names[MAX_BATCH];

/* Recently seen source addresses and their Python tuples (the GIL guards these). */
static struct {
    socklen_t len;
    struct sockaddr_storage addr;
    PyObject *tuple;
} cache[ADDR_CACHE];
static unsigned int cache_next = 0;

static PyObject *format_address(const struct sockaddr_storage *ss, socklen_t len)
{
    char host[NI_MAXHOST];
    int port;
    if (ss->ss_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        port = ntohs(sin->sin_port);
    } else if (ss->ss_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        /* getnameinfo adds the "%scope" that Python's recvfrom shows for scoped addresses. */
        int rc = getnameinfo((const struct sockaddr *)ss, len, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
        if (rc != 0) {
            PyErr_Format(PyExc_OSError, "cannot format an IPv6 source address: %s", gai_strerror(rc));
            return NULL;
        }
        port = ntohs(sin6->sin6_port);
    } else {
        /* Not an IP datagram (cannot happen on the runtime's sockets): an empty address. */
        host[0] = '\0';
        port = 0;
    }
    return Py_BuildValue("(si)", host, port);
}

static PyObject *address_tuple(const struct sockaddr_storage *ss, socklen_t len)
{
    for (unsigned int i = 0; i < ADDR_CACHE; i++) {
        if (cache[i].tuple != NULL && cache[i].len == len && memcmp(&cache[i].addr, ss, len) == 0) {
            Py_INCREF(cache[i].tuple);
            return cache[i].tuple;
        }
    }
    PyObject *t = format_address(ss, len);
    if (t == NULL)
        return NULL;
    if (len <= (socklen_t)sizeof(struct sockaddr_storage)) {
        unsigned int slot = cache_next++ % ADDR_CACHE;
        Py_XDECREF(cache[slot].tuple);
        cache[slot].len = len;
        memcpy(&cache[slot].addr, ss, len);
        Py_INCREF(t);
        cache[slot].tuple = t;
    }
    return t;
}

/* Read up to `max` datagrams; returns how many, or -1 with errno set. lens/namelens are filled. */
static int read_some(int fd, int max, size_t *lens, socklen_t *namelens)
{
#ifdef __linux__
    for (int i = 0; i < max; i++) {
        iovs[i].iov_base = buffers + (size_t)i * SLOT_SIZE;
        iovs[i].iov_len = SLOT_SIZE;
        memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &names[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(names[i]);
    }
    int n;
    do {
        n = recvmmsg(fd, msgs, (unsigned int)max, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; i++) {
        lens[i] = msgs[i].msg_len;
        namelens[i] = msgs[i].msg_hdr.msg_namelen;
    }
    return n;
#else
    int n = 0;
    while (n < max) {
        socklen_t nl = sizeof(names[n]);
        ssize_t r = recvfrom(fd, buffers + (size_t)n * SLOT_SIZE, SLOT_SIZE, MSG_DONTWAIT,
                             (struct sockaddr *)&names[n], &nl);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (n > 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            return n > 0 ? n : -1;
        }
        lens[n] = (size_t)r;
        namelens[n] = nl;
        n++;
    }
    return n;
#endif
}

static PyObject *udpio_recv_batch(PyObject *self, PyObject *args)
{
    int fd, max;
    (void)self;
    if (!PyArg_ParseTuple(args, "ii:recv_batch", &fd, &max))
        return NULL;
    if (max < 1) {
        PyErr_SetString(PyExc_ValueError, "max_count must be at least 1");
        return NULL;
    }
    if (max > MAX_BATCH)
        max = MAX_BATCH;
    if (buffers == NULL) {
        buffers = PyMem_RawMalloc((size_t)MAX_BATCH * SLOT_SIZE);
        if (buffers == NULL)
            return PyErr_NoMemory();
    }
    size_t lens[MAX_BATCH];
    socklen_t namelens[MAX_BATCH];
    int n = read_some(fd, max, lens, namelens);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return PyList_New(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *data = PyBytes_FromStringAndSize((const char *)buffers + (size_t)i * SLOT_SIZE,
                                                   (Py_ssize_t)lens[i]);
        PyObject *addr = data != NULL ? address_tuple(&names[i], namelens[i]) : NULL;
        PyObject *item = addr != NULL ? PyTuple_Pack(2, data, addr) : NULL;
        Py_XDECREF(data);
        Py_XDECREF(addr);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

#define MAX_SEND 16

static PyObject *udpio_send_batch(PyObject *self, PyObject *args)
{
    int fd, port;
    PyObject *datagrams;
    const char *host;
    struct sockaddr_storage to;
    socklen_t tolen;
    (void)self;
    if (!PyArg_ParseTuple(args, "iO!si:send_batch", &fd, &PyTuple_Type, &datagrams, &host, &port))
        return NULL;
    const Py_ssize_t n = PyTuple_GET_SIZE(datagrams);
    if (n < 1 || n > MAX_SEND || port <= 0 || port > 65535) {
        PyErr_Format(PyExc_ValueError, "1..%d datagrams to a port in 1..65535", MAX_SEND);
        return NULL;
    }
    memset(&to, 0, sizeof(to));
    struct sockaddr_in *sin = (struct sockaddr_in *)&to;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&to;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)port);
        tolen = sizeof(*sin);
    } else if (strchr(host, '%') == NULL && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)port);
        tolen = sizeof(*sin6);
    } else {
        PyErr_SetString(PyExc_ValueError, "host must be a numeric IPv4 or unscoped IPv6 address");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(datagrams, i))) {
            PyErr_SetString(PyExc_TypeError, "datagrams must be bytes");
            return NULL;
        }
    int sent = 0;
#ifdef __linux__
    struct mmsghdr m[MAX_SEND];
    struct iovec v[MAX_SEND];
    memset(m, 0, sizeof(m));
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyTuple_GET_ITEM(datagrams, i);
        v[i].iov_base = PyBytes_AS_STRING(d);
        v[i].iov_len = (size_t)PyBytes_GET_SIZE(d);
        m[i].msg_hdr.msg_name = &to;
        m[i].msg_hdr.msg_namelen = tolen;
        m[i].msg_hdr.msg_iov = &v[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
    while (sent < n) {
        int r = sendmmsg(fd, m + sent, (unsigned int)(n - sent), MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        sent += r;
    }
#else
    while (sent < n) {
        PyObject *d = PyTuple_GET_ITEM(datagrams, sent);
        ssize_t r = sendto(fd, PyBytes_AS_STRING(d), (size_t)PyBytes_GET_SIZE(d), MSG_DONTWAIT,
                           (struct sockaddr *)&to, tolen);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        sent++;
    }
#endif
    if (sent == 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(sent);
}

static PyMethodDef udpio_methods[] = {
    {"send_batch", udpio_send_batch, METH_VARARGS,
     "send_batch(fd, datagrams, host, port) -> number sent; never blocks."},
    {"recv_batch", udpio_recv_batch, METH_VARARGS,
     "recv_batch(fd, max_count) -> list of (datagram, (host, port)); never blocks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef udpio_module = {
    PyModuleDef_HEAD_INIT, "ztcore.runtime._udpio",
    "Batched, non-blocking UDP receive (recvmmsg) and send (sendmmsg) for the ztcore runtime.", -1,
    udpio_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__udpio(void)
{
    return PyModule_Create(&udpio_module);
}
