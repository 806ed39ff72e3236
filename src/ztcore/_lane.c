/*
 * ztcore._lane -- the established-session fast lane of a Node, in C.
 *
 * A round trip on a quiet link is mostly the per-step cost of the Python between the
 * socket and the reply (see bench/README.md), so the commonest packet of an
 * established session is taken here in one call: a hop-0 VL1 packet with cipher
 * suite 1 or 3, from a peer the Node registered as a session over the path it arrived
 * on (whole, or put back together from its pieces: _lane_fragments.h), carrying an uncompressed FRAME for a network the Node
 * registered for that peer (its rules accept everything, nothing is traced, the
 * peer passed the network's gate). The lane checks and decrypts it, does the
 * bookkeeping the general path would (the peer's and path's receive times, the
 * counters), and returns the frame for delivery; or, when the network has an ICMP
 * echo offload and the frame is an echo request to one of its IPv4 addresses that
 * the userspace responder would answer in one packet, returns the armored reply
 * ready to send back over the same path (what a NIC's ping offload does).
 *
 * The other direction, `send`: a unicast frame from our own MAC to a peer that has a
 * session and is a member as above (so the network's rules accept everything and it is
 * untraced) is armored for that session's path (in pieces if it needs more than one
 * datagram).
 *
 * Anything else -- other verbs, a bad MAC, compression, an unknown peer
 * or path -- is left alone (None) for the general path, which counts and logs it:
 * the lane is a cache of decisions the general path made, never a second judge.
 * The Node clears it whenever something it caches may have changed (ztcore.node).
 *
 * Cryptography is ztcore.crypto._armor's, through its C interface (_armor_api.h).
 *
 *     Lane(address: int, vl1_stats: dict, vl2_stats: dict)
 *     .add_session(address, local_socket, remote, key, siv, reply_suite, peer, path, peer_path) -> bool
 *     .add_member(network_id, address, mac, mac_first_octet, mac_mask) -> bool
 *     .set_echo(network_id, ipv4_addresses: tuple[bytes, ...], mtu) / .clear_echo(network_id)
 *     .clear()            drop sessions and members (the echo offloads stay)
 *     .receive(now, local_socket, remote, data) -> None (not the lane's) | bytes (a reply) |
 *              (network_id, source_mac, dest_mac, ethertype, payload) (a frame to deliver) |
 *              True (a piece kept, or dropped as the Reassembler would) |
 *              (packet,) (put together from pieces, but for the general path)
 *     .send(now, network_id, source_mac, dest_mac, ethertype, data) -> None |
 *              (local_socket, remote, datagram or tuple of datagrams)
 *     .sessions           number of sessions held
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>
#ifdef __linux__
#include <sys/random.h>
#endif

#include "crypto/_armor_api.h" /* also the packet layout: IDX_*, MAX_PACKET_LENGTH */

#define FRAGMENT_INDICATOR 0xff
#define FLAG_FRAGMENTED 0x40
#define VERB_FLAG_COMPRESSED 0x80
#define VERB_MASK 0x1f
#define VERB_FRAME 0x06
#define FRAME_HEAD 10 /* network ID, ethertype */
#define PHYSICAL_MTU 1432 /* datagrams; a longer packet goes in pieces (_lane_fragments.h) */
#define ETHERTYPE_IPV4 0x0800

#define MAX_SESSIONS 65536        /* never more than the Topology holds; a full lane just misses */
#define MAX_NETWORKS_PER_SESSION 8
#define MAX_NETWORKS 16 /* networks with lane members; more go the general way */
#define MAX_ECHO_NETWORKS 64
#define MAX_ECHO_ADDRESSES 16
#define N_IDS 64 /* packet IDs drawn per getrandom call */
#define MAX_FRAGMENTS 7 /* head included */
#define FRAGMENT_HEAD 16
#define RX_SLOTS 16
#define RX_ORPHANS 32
#define RX_TIMEOUT 5000 /* ms, as the general path's Reassembler */

typedef struct {
    uint64_t address; /* 0: empty slot (0 is never a valid ZeroTier address) */
    long local_socket;
    PyObject *remote;
    unsigned char key[32];
    PyObject *siv; /* an _armor Siv, or NULL (no suite 3 with this peer) */
    int reply_suite;
    PyObject *peer, *path, *peer_path;
    int n_networks;
    uint64_t networks[MAX_NETWORKS_PER_SESSION]; /* IDs; each is in the lane's Network table */
} Session;

/* A network some session is a member of: how MACs map to addresses there. */
typedef struct {
    uint64_t id, mac, mask;
    int first_octet;
} Network;

typedef struct {
    uint64_t network_id;
    int n;
    int mtu;
    unsigned char ipv4[MAX_ECHO_ADDRESSES][4];
} Echo;

typedef struct {
    PyObject_HEAD
    uint64_t me;
    PyObject *vl1_stats, *vl2_stats;
    Session *table; /* open addressing, linear probing; capacity a power of two */
    size_t capacity, count;
    Echo *echo; /* MAX_ECHO_NETWORKS entries, allocated with the first (a node in a
                   simulator of thousands has none: the object stays about 1.5 KB) */
    int n_echo;
    Network networks[MAX_NETWORKS];
    int n_networks;
    uint64_t ids[N_IDS];
    int ids_left;
    uint16_t ip_ident;
    struct RxSlot *rx; /* packets being put back together (_lane_fragments.h), allocated with
                          the first fragmented packet */
    uint64_t orphans[RX_ORPHANS]; /* IDs of fragments left to the general path, with their heads */
    int n_orphans, next_orphan;
} LaneObject;

static const ZtArmorApi *armor;
static PyObject *s_last_in, *s_last_receive, *s_last_nontrivial, *s_last_trust;
static PyObject *s_packets_in, *s_in_frame, *s_frames_in, *s_echo_offloaded;
static PyObject *s_last_out, *s_packets_out, *s_out_frame, *s_frames_out;

/* ---- helpers ------------------------------------------------------------------ */

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; ++i)
        v = (v << 8) | p[i];
    return v;
}

static void put_be(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; --i) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static size_t slot_of(uint64_t address, size_t capacity)
{
    return (size_t)((address * 0x9E3779B97F4A7C15ULL) >> 20) & (capacity - 1);
}

static Session *find(LaneObject *l, uint64_t address)
{
    if (l->capacity == 0)
        return NULL;
    for (size_t i = slot_of(address, l->capacity);; i = (i + 1) & (l->capacity - 1)) {
        Session *s = &l->table[i];
        if (s->address == address)
            return s;
        if (s->address == 0)
            return NULL;
    }
}

static const Network *network_of(const LaneObject *l, uint64_t id)
{
    for (int k = 0; k < l->n_networks; ++k)
        if (l->networks[k].id == id)
            return &l->networks[k];
    return NULL;
}

static int is_member(const Session *s, uint64_t network_id)
{
    for (int i = 0; i < s->n_networks; ++i)
        if (s->networks[i] == network_id)
            return 1;
    return 0;
}

static void session_release(Session *s)
{
    Py_CLEAR(s->remote);
    Py_CLEAR(s->siv);
    Py_CLEAR(s->peer);
    Py_CLEAR(s->path);
    Py_CLEAR(s->peer_path);
    memset(s, 0, sizeof(*s));
}

static void clear_sessions(LaneObject *l)
{
    for (size_t i = 0; i < l->capacity; ++i)
        if (l->table[i].address)
            session_release(&l->table[i]);
    l->count = 0;
    l->n_networks = 0;
}

/* Room for one more session (kept at most half full); -1 with an exception on failure. */
static int reserve(LaneObject *l)
{
    if ((l->count + 1) * 2 <= l->capacity)
        return 0;
    size_t capacity = l->capacity ? l->capacity * 2 : 8;
    Session *table = PyMem_Calloc(capacity, sizeof(Session));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < l->capacity; ++i) {
        Session *s = &l->table[i];
        if (s->address) {
            size_t j = slot_of(s->address, capacity);
            while (table[j].address)
                j = (j + 1) & (capacity - 1);
            table[j] = *s; /* the references move with it */
        }
    }
    PyMem_Free(l->table);
    l->table = table;
    l->capacity = capacity;
    return 0;
}

static int next_id(LaneObject *l, uint64_t *id)
{
    if (l->ids_left == 0) {
#ifdef __linux__
        size_t got = 0;
        while (got < sizeof(l->ids)) {
            ssize_t r = getrandom((unsigned char *)l->ids + got, sizeof(l->ids) - got, 0);
            if (r <= 0)
                return -1;
            got += (size_t)r;
        }
        l->ids_left = N_IDS;
#else
        return -1; /* no getrandom: echoes take the general path */
#endif
    }
    *id = l->ids[--l->ids_left];
    return 0;
}

static int bump(PyObject *stats, PyObject *key)
{
    PyObject *v = PyDict_GetItemWithError(stats, key);
    if (v == NULL && PyErr_Occurred())
        return -1;
    long long n = v ? PyLong_AsLongLong(v) : 0;
    if (n == -1 && PyErr_Occurred())
        return -1;
    PyObject *nv = PyLong_FromLongLong(n + 1);
    if (nv == NULL)
        return -1;
    int rc = PyDict_SetItem(stats, key, nv);
    Py_DECREF(nv);
    return rc;
}

#include "_lane_echo.h"

/* ---- the Lane type ------------------------------------------------------------- */

static int lane_init(LaneObject *l, PyObject *args, PyObject *kwds)
{
    unsigned long long me;
    PyObject *vl1, *vl2;
    static char *kwlist[] = {"address", "vl1_stats", "vl2_stats", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KO!O!:Lane", kwlist, &me, &PyDict_Type, &vl1, &PyDict_Type, &vl2))
        return -1;
    if (me == 0 || me > 0xffffffffffULL) {
        PyErr_SetString(PyExc_ValueError, "address must be a 40-bit ZeroTier address");
        return -1;
    }
    l->me = me;
    Py_INCREF(vl1);
    Py_XSETREF(l->vl1_stats, vl1);
    Py_INCREF(vl2);
    Py_XSETREF(l->vl2_stats, vl2);
    l->ip_ident = (uint16_t)(me * 2654435761u);
    return 0;
}

static int lane_traverse(LaneObject *l, visitproc visit, void *arg)
{
    Py_VISIT(l->vl1_stats);
    Py_VISIT(l->vl2_stats);
    for (size_t i = 0; i < l->capacity; ++i) {
        Session *s = &l->table[i];
        if (s->address) {
            Py_VISIT(s->remote);
            Py_VISIT(s->siv);
            Py_VISIT(s->peer);
            Py_VISIT(s->path);
            Py_VISIT(s->peer_path);
        }
    }
    return 0;
}

static int lane_clear_refs(LaneObject *l)
{
    clear_sessions(l);
    Py_CLEAR(l->vl1_stats);
    Py_CLEAR(l->vl2_stats);
    return 0;
}

static void lane_dealloc(LaneObject *l)
{
    PyObject_GC_UnTrack(l);
    lane_clear_refs(l);
    PyMem_Free(l->table);
    PyMem_Free(l->echo);
    PyMem_Free(l->rx);
    Py_TYPE(l)->tp_free((PyObject *)l);
}

static PyObject *lane_add_session(LaneObject *l, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "add_session(address, local_socket, remote, key, siv, reply_suite, peer, path, peer_path)");
        return NULL;
    }
    unsigned long long address = PyLong_AsUnsignedLongLong(args[0]);
    long local_socket = PyLong_AsLong(args[1]);
    long suite = PyLong_AsLong(args[5]);
    if (PyErr_Occurred())
        return NULL;
    if (address == 0 || address > 0xffffffffffULL || address == l->me) {
        PyErr_SetString(PyExc_ValueError, "address must be a peer's 40-bit ZeroTier address");
        return NULL;
    }
    if (!PyBytes_Check(args[3]) || PyBytes_GET_SIZE(args[3]) < 32) {
        PyErr_SetString(PyExc_ValueError, "key must be the agreed key (at least 32 bytes)");
        return NULL;
    }
    if (!armor->poly_ready()) {
        PyErr_SetString(PyExc_RuntimeError, "ztcore.crypto._armor is not bound to libsodium");
        return NULL;
    }
    PyObject *siv = args[4] == Py_None ? NULL : args[4];
    if (siv && !PyObject_TypeCheck(siv, armor->siv_type)) {
        PyErr_SetString(PyExc_TypeError, "siv must be a ztcore.crypto._armor.Siv or None");
        return NULL;
    }
    if (!(suite == 1 || (suite == 3 && siv))) {
        PyErr_SetString(PyExc_ValueError, "reply_suite must be 1, or 3 with a Siv");
        return NULL;
    }
    Session *s = find(l, address);
    if (s == NULL) {
        if (l->count >= MAX_SESSIONS)
            Py_RETURN_FALSE;
        if (reserve(l) < 0)
            return NULL;
        size_t i = slot_of(address, l->capacity);
        while (l->table[i].address)
            i = (i + 1) & (l->capacity - 1);
        s = &l->table[i];
        l->count++;
    } else {
        /* The same peer over another path, say: its memberships stay (they are the peer's). */
        const int keep = s->peer == args[6];
        Session old = *s;
        s->remote = s->siv = s->peer = s->path = s->peer_path = NULL;
        session_release(s);
        if (keep) {
            s->n_networks = old.n_networks;
            memcpy(s->networks, old.networks, sizeof(old.networks));
        }
        Py_XDECREF(old.remote);
        Py_XDECREF(old.siv);
        Py_XDECREF(old.peer);
        Py_XDECREF(old.path);
        Py_XDECREF(old.peer_path);
    }
    s->address = address;
    s->local_socket = local_socket;
    memcpy(s->key, PyBytes_AS_STRING(args[3]), 32);
    s->reply_suite = (int)suite;
    Py_INCREF(args[2]);
    s->remote = args[2];
    Py_XINCREF(siv);
    s->siv = siv;
    Py_INCREF(args[6]);
    s->peer = args[6];
    Py_INCREF(args[7]);
    s->path = args[7];
    Py_INCREF(args[8]);
    s->peer_path = args[8];
    Py_RETURN_TRUE;
}

static PyObject *lane_add_member(LaneObject *l, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "add_member(network_id, address, mac, mac_first_octet, mac_mask)");
        return NULL;
    }
    unsigned long long nwid = PyLong_AsUnsignedLongLong(args[0]);
    unsigned long long address = PyLong_AsUnsignedLongLong(args[1]);
    unsigned long long mac = PyLong_AsUnsignedLongLong(args[2]);
    long first = PyLong_AsLong(args[3]);
    unsigned long long mask = PyLong_AsUnsignedLongLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    if (first < 0 || first > 0xff || mac > 0xffffffffffffULL || mask > 0xffffffffffULL) {
        PyErr_SetString(PyExc_ValueError, "mac is 48 bits, mac_first_octet 8, mac_mask 40");
        return NULL;
    }
    Session *s = find(l, address);
    if (s == NULL)
        Py_RETURN_FALSE;
    if (is_member(s, nwid))
        Py_RETURN_TRUE;
    if (s->n_networks >= MAX_NETWORKS_PER_SESSION)
        Py_RETURN_FALSE;
    Network *net = (Network *)network_of(l, nwid);
    if (net == NULL) {
        if (l->n_networks >= MAX_NETWORKS)
            Py_RETURN_FALSE;
        net = &l->networks[l->n_networks++];
    }
    net->id = nwid;
    net->mac = mac;
    net->mask = mask;
    net->first_octet = (int)first;
    s->networks[s->n_networks++] = nwid;
    Py_RETURN_TRUE;
}

static PyObject *lane_clear(LaneObject *l, PyObject *unused)
{
    (void)unused;
    clear_sessions(l);
    Py_RETURN_NONE;
}

/* Head and FRAME header around the `n`-byte frame payload already at w + IDX_PAYLOAD + 10,
 * then sealed for the session: 0, or -1 (no packet ID, or an OpenSSL call failed). */
static int seal_frame(LaneObject *l, Session *s, uint64_t nwid, int ethertype, unsigned char *w, size_t n)
{
    uint64_t iv;
    if (next_id(l, &iv) < 0)
        return -1;
    const size_t wn = IDX_PAYLOAD + FRAME_HEAD + n;
    put_be(w, iv, 8);
    put_be(w + IDX_DEST, s->address, 5);
    put_be(w + IDX_SOURCE, l->me, 5);
    /* Longer than a datagram: flagged (the MAC covers the flag) and sent in pieces. */
    w[IDX_FLAGS] = (unsigned char)((s->reply_suite << 3) | (wn > PHYSICAL_MTU ? FLAG_FRAGMENTED : 0));
    memset(w + IDX_MAC, 0, 8);
    w[IDX_VERB] = VERB_FRAME;
    put_be(w + IDX_PAYLOAD, nwid, 8);
    put_be(w + IDX_PAYLOAD + 8, (uint64_t)ethertype, 2);
    return s->reply_suite == 3 ? armor->siv_seal(s->siv, iv, w, wn) : armor->poly_seal(s->key, w, wn);
}

/* The general path's bookkeeping for a FRAME sent over the session's path. */
static int sent(LaneObject *l, Session *s, PyObject *now)
{
    if (PyObject_SetAttr(s->path, s_last_out, now) < 0 || bump(l->vl1_stats, s_out_frame) < 0 ||
        bump(l->vl1_stats, s_packets_out) < 0 || bump(l->vl2_stats, s_frames_out) < 0)
        return -1;
    return 0;
}

/* The general path's Peer::received for a FRAME over a kept path, and its counters
 * (`whole`: one datagram; a packet in pieces counted each as it came, see count_piece). */
static int received(LaneObject *l, Session *s, PyObject *now, int whole)
{
    if (PyObject_SetAttr(s->path, s_last_in, now) < 0 || PyObject_SetAttr(s->peer, s_last_receive, now) < 0 ||
        PyObject_SetAttr(s->peer, s_last_nontrivial, now) < 0 || PyObject_SetAttr(s->peer, s_last_trust, now) < 0 ||
        PyObject_SetAttr(s->peer_path, s_last_receive, now) < 0)
        return -1;
    if ((whole && bump(l->vl1_stats, s_packets_in) < 0) || bump(l->vl1_stats, s_in_frame) < 0)
        return -1;
    return 0;
}

/* A datagram the lane keeps (a piece of a packet), counted as the general path would. */
static int count_piece(LaneObject *l)
{
    return bump(l->vl1_stats, s_packets_in);
}

/* Check, decrypt and take a packet of `n` bytes from session `s` (its flags byte says
 * suite 1 or 3, hops 0; `whole`: it came in one datagram): a reply, a frame to deliver, or NULL with *declined set (not the
 * lane's: nothing was changed) or with an exception. */
static PyObject *take(LaneObject *l, Session *s, PyObject *now, const unsigned char *d, size_t n, int whole,
                      int *declined)
{
    unsigned char plain[MAX_PACKET_LENGTH];
    const int suite = (d[IDX_FLAGS] >> 3) & 7;
    *declined = 1;
    if (n < IDX_PAYLOAD + FRAME_HEAD || (suite == 3 && s->siv == NULL))
        return NULL;
    int rc = suite == 3 ? armor->siv_open(s->siv, d, n, plain) : armor->poly_open(s->key, d, n, plain);
    if (rc != 0 || (plain[0] & VERB_FLAG_COMPRESSED) || (plain[0] & VERB_MASK) != VERB_FRAME)
        return NULL; /* a bad MAC, compression, another verb: the general path's */
    const uint64_t nwid = be(plain + 1, 8);
    const Network *net = is_member(s, nwid) ? network_of(l, nwid) : NULL;
    if (net == NULL)
        return NULL;
    *declined = 0;
    if (received(l, s, now, whole) < 0)
        return NULL;
    const int ethertype = (int)be(plain + 9, 2);
    const unsigned char *payload = plain + 1 + FRAME_HEAD;
    const size_t plen = n - IDX_PAYLOAD - FRAME_HEAD;

    const Echo *e = ethertype == ETHERTYPE_IPV4 ? echo_for(l, nwid) : NULL;
    if (e != NULL && plen + IDX_PAYLOAD + FRAME_HEAD <= PHYSICAL_MTU) {
        unsigned char w[PHYSICAL_MTU];
        size_t total = echo_reply(l, e, payload, plen, w + IDX_PAYLOAD + FRAME_HEAD);
        if (total && seal_frame(l, s, nwid, ETHERTYPE_IPV4, w, total) == 0) {
            if (bump(l->vl2_stats, s_frames_in) < 0 || bump(l->vl2_stats, s_echo_offloaded) < 0 ||
                sent(l, s, now) < 0)
                return NULL;
            return PyBytes_FromStringAndSize((const char *)w, (Py_ssize_t)(IDX_PAYLOAD + FRAME_HEAD + total));
        }
    }
    if (bump(l->vl2_stats, s_frames_in) < 0)
        return NULL;
    const uint64_t source_mac =
        ((uint64_t)net->first_octet << 40) | ((s->address ^ net->mask) & 0xffffffffffULL);
    return Py_BuildValue("(KKKiy#)", (unsigned long long)nwid, (unsigned long long)source_mac,
                         (unsigned long long)net->mac, ethertype, (const char *)payload, (Py_ssize_t)plen);
}

#include "_lane_fragments.h"

static PyObject *lane_receive(LaneObject *l, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "receive(now, local_socket, remote, data)");
        return NULL;
    }
    PyObject *now = args[0], *data = args[3];
    if (!PyBytes_CheckExact(data) || !PyLong_CheckExact(now))
        Py_RETURN_NONE;
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    const size_t n = (size_t)PyBytes_GET_SIZE(data);
    if (n > MAX_PACKET_LENGTH)
        Py_RETURN_NONE;
    if (n > IDX_SOURCE && d[IDX_SOURCE] == FRAGMENT_INDICATOR)
        return fragment_in(l, now, d, n); /* first: a fragment may be shorter than any head */
    if (n < IDX_PAYLOAD)
        Py_RETURN_NONE;
    const int flags = d[IDX_FLAGS];
    const int suite = (flags >> 3) & 7;
    if ((flags & 7) || (suite != 1 && suite != 3) || be(d + IDX_DEST, 5) != l->me)
        Py_RETURN_NONE; /* relayed, or suite 0 (HELLO) or 2, or not for us */
    Session *s = find(l, be(d + IDX_SOURCE, 5));
    if (s == NULL)
        Py_RETURN_NONE;
    const long local_socket = PyLong_AsLong(args[1]);
    if (local_socket == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (local_socket != s->local_socket)
        Py_RETURN_NONE;
    int same = PyObject_RichCompareBool(args[2], s->remote, Py_EQ);
    if (same <= 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (flags & FLAG_FRAGMENTED)
        return head_in(l, s, now, d, n);
    int declined;
    PyObject *r = take(l, s, now, d, n, 1, &declined);
    if (r == NULL && declined)
        Py_RETURN_NONE;
    return r;
}

static PyObject *lane_send(LaneObject *l, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "send(now, network_id, source_mac, dest_mac, ethertype, data)");
        return NULL;
    }
    PyObject *now = args[0], *data = args[5];
    if (!PyLong_CheckExact(now) || !PyBytes_CheckExact(data))
        Py_RETURN_NONE;
    const unsigned long long nwid = PyLong_AsUnsignedLongLong(args[1]);
    const unsigned long long source_mac = PyLong_AsUnsignedLongLong(args[2]);
    const unsigned long long dest_mac = PyLong_AsUnsignedLongLong(args[3]);
    const long ethertype = PyLong_AsLong(args[4]);
    if (PyErr_Occurred()) {
        PyErr_Clear(); /* not ints of the right size: the general path says why */
        Py_RETURN_NONE;
    }
    const size_t n = (size_t)PyBytes_GET_SIZE(data);
    const size_t wn = IDX_PAYLOAD + FRAME_HEAD + n;
    const size_t pieces = wn <= PHYSICAL_MTU ? 1 : 2 + (wn - PHYSICAL_MTU - 1) / (PHYSICAL_MTU - FRAGMENT_HEAD);
    if (ethertype < 0 || ethertype > 0xffff || pieces > MAX_FRAGMENTS)
        Py_RETURN_NONE;
    const Network *net = network_of(l, nwid);
    if (net == NULL)
        Py_RETURN_NONE;
    /* From our own MAC (not bridged) to a member's unicast MAC on this network. */
    if (source_mac != net->mac || dest_mac == net->mac || (dest_mac >> 40) != (uint64_t)net->first_octet)
        Py_RETURN_NONE;
    Session *s = find(l, (dest_mac & 0xffffffffffULL) ^ net->mask);
    if (s == NULL)
        Py_RETURN_NONE;
    if (!is_member(s, nwid))
        Py_RETURN_NONE;
    unsigned char w[MAX_PACKET_LENGTH];
    memcpy(w + IDX_PAYLOAD + FRAME_HEAD, PyBytes_AS_STRING(data), n);
    if (seal_frame(l, s, nwid, (int)ethertype, w, n) < 0 || sent(l, s, now) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *wire;
    if (pieces == 1) {
        wire = PyBytes_FromStringAndSize((const char *)w, (Py_ssize_t)wn);
    } else {
        /* The head, then fragments: packet ID and destination, 0xff, total | number, hops. */
        wire = PyTuple_New((Py_ssize_t)pieces);
        size_t pos = PHYSICAL_MTU;
        for (size_t i = 0; wire != NULL && i < pieces; ++i) {
            PyObject *piece;
            if (i == 0) {
                piece = PyBytes_FromStringAndSize((const char *)w, PHYSICAL_MTU);
            } else {
                const size_t chunk = wn - pos < PHYSICAL_MTU - FRAGMENT_HEAD ? wn - pos : PHYSICAL_MTU - FRAGMENT_HEAD;
                piece = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(FRAGMENT_HEAD + chunk));
                if (piece != NULL) {
                    unsigned char *f = (unsigned char *)PyBytes_AS_STRING(piece);
                    memcpy(f, w, 13);
                    f[13] = FRAGMENT_INDICATOR;
                    f[14] = (unsigned char)((pieces << 4) | i);
                    f[15] = 0;
                    memcpy(f + FRAGMENT_HEAD, w + pos, chunk);
                }
                pos += chunk;
            }
            if (piece == NULL)
                Py_CLEAR(wire);
            else
                PyTuple_SET_ITEM(wire, (Py_ssize_t)i, piece);
        }
    }
    if (wire == NULL)
        return NULL;
    return Py_BuildValue("(lON)", s->local_socket, s->remote, wire);
}

static PyObject *lane_sessions(LaneObject *l, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(l->count);
}

static PyMethodDef lane_methods[] = {
    {"add_session", (PyCFunction)(void (*)(void))lane_add_session, METH_FASTCALL,
     "add_session(address, local_socket, remote, key, siv, reply_suite, peer, path, peer_path, /) -> bool\n\n"
     "Take packets from `address` over (local_socket, remote); replies use reply_suite (1, or 3 with siv). "
     "False if the lane is full."},
    {"add_member", (PyCFunction)(void (*)(void))lane_add_member, METH_FASTCALL,
     "add_member(network_id, address, mac, mac_first_octet, mac_mask, /) -> bool\n\n"
     "Frames from session `address` on the network may take the lane (our MAC there is `mac`)."},
    {"set_echo", (PyCFunction)(void (*)(void))lane_set_echo, METH_FASTCALL,
     "set_echo(network_id, ipv4_addresses, mtu, /)\n\nAnswer ICMP echo requests to these addresses."},
    {"clear_echo", (PyCFunction)lane_clear_echo, METH_O, "clear_echo(network_id, /)"},
    {"send", (PyCFunction)(void (*)(void))lane_send, METH_FASTCALL,
     "send(now, network_id, source_mac, dest_mac, ethertype, data, /) -> None | (local_socket, remote, wire)\n\n"
     "A frame from the host side to a session's peer, armored for the session's path."},
    {"clear", (PyCFunction)lane_clear, METH_NOARGS, "clear()\n\nDrop every session and membership."},
    {"receive", (PyCFunction)(void (*)(void))lane_receive, METH_FASTCALL,
     "receive(now, local_socket, remote, data, /) -> None | bytes | (network_id, source_mac, dest_mac, "
     "ethertype, payload)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef lane_getset[] = {
    {"sessions", (getter)lane_sessions, NULL, "Number of sessions held.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ztcore._lane.Lane",
    .tp_basicsize = sizeof(LaneObject),
    .tp_dealloc = (destructor)lane_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Lane(address, vl1_stats, vl2_stats): the established-session fast lane (see the module).",
    .tp_traverse = (traverseproc)lane_traverse,
    .tp_clear = (inquiry)lane_clear_refs,
    .tp_methods = lane_methods,
    .tp_getset = lane_getset,
    .tp_init = (initproc)lane_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef lane_module = {
    PyModuleDef_HEAD_INIT, "ztcore._lane", "The established-session fast lane of a Node.", -1, NULL,
};

PyMODINIT_FUNC PyInit__lane(void)
{
    /* ztcore.crypto.armor binds the kernel to libsodium at import. */
    PyObject *bound = PyImport_ImportModule("ztcore.crypto.armor");
    if (bound == NULL)
        return NULL;
    Py_DECREF(bound);
    armor = (const ZtArmorApi *)PyCapsule_Import(ZT_ARMOR_API_NAME, 0);
    if (armor == NULL)
        return NULL;
    if (armor->abi != ZT_ARMOR_API_ABI) {
        PyErr_SetString(PyExc_ImportError, "ztcore._lane and ztcore.crypto._armor are from different builds");
        return NULL;
    }
    if (!(s_last_in = PyUnicode_InternFromString("last_in")) ||
        !(s_last_receive = PyUnicode_InternFromString("last_receive")) ||
        !(s_last_nontrivial = PyUnicode_InternFromString("last_nontrivial_receive")) ||
        !(s_last_trust = PyUnicode_InternFromString("last_trust")) ||
        !(s_packets_in = PyUnicode_InternFromString("packets_in")) ||
        !(s_in_frame = PyUnicode_InternFromString("in_FRAME")) ||
        !(s_frames_in = PyUnicode_InternFromString("frames_in")) ||
        !(s_echo_offloaded = PyUnicode_InternFromString("echo_offloaded")) ||
        !(s_last_out = PyUnicode_InternFromString("last_out")) ||
        !(s_packets_out = PyUnicode_InternFromString("packets_out")) ||
        !(s_out_frame = PyUnicode_InternFromString("out_FRAME")) ||
        !(s_frames_out = PyUnicode_InternFromString("frames_out")))
        return NULL;
    if (PyType_Ready(&LaneType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&lane_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&LaneType);
    if (PyModule_AddObject(m, "Lane", (PyObject *)&LaneType) < 0) {
        Py_DECREF(&LaneType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
