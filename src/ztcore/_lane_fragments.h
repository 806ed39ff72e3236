/*
 * ztcore._lane: packets of a session that arrive in pieces (a head with the FRAGMENTED
 * flag, then fragments; layout in ztcore.vl1.fragment). Included by _lane.c only.
 *
 * A head from a session over its path is kept here, and the fragments with its packet
 * ID join it, whatever path they come over (as in the general path's Reassembler; the
 * MAC over the whole packet decides). Put together, the packet is taken as a whole one
 * (`take`); if it is not the lane's -- another verb, compression, a bad MAC, the session
 * gone meanwhile -- it goes to the general path whole: receive() returns it in a
 * 1-tuple. A fragment that arrives before its head is the general path's, and so is that
 * head when it comes (its packet ID is remembered among the orphans): the two halves of
 * a packet are never split between the lane and the Reassembler. Bounded like the
 * general path: RX_SLOTS packets at once (the oldest goes), each for RX_TIMEOUT ms.
 */

#ifndef ZTCORE_LANE_FRAGMENTS_H
#define ZTCORE_LANE_FRAGMENTS_H

struct RxSlot {
    int used;
    uint64_t packet_id;
    uint64_t source;
    long long created;
    int total;      /* pieces, head included; 0 until a fragment says */
    unsigned have;  /* bit i: piece i is here (0 = the head) */
    size_t start[MAX_FRAGMENTS], len[MAX_FRAGMENTS];
    size_t used_bytes;
    unsigned char buf[MAX_PACKET_LENGTH];
};

static int is_orphan(LaneObject *l, uint64_t packet_id)
{
    for (int i = 0; i < l->n_orphans; ++i)
        if (l->orphans[i] == packet_id)
            return 1;
    return 0;
}

static void add_orphan(LaneObject *l, uint64_t packet_id)
{
    l->orphans[l->next_orphan] = packet_id;
    l->next_orphan = (l->next_orphan + 1) % RX_ORPHANS;
    if (l->n_orphans < RX_ORPHANS)
        l->n_orphans++;
}

static struct RxSlot *rx_find(LaneObject *l, uint64_t packet_id)
{
    if (l->rx == NULL)
        return NULL;
    for (int i = 0; i < RX_SLOTS; ++i)
        if (l->rx[i].used && l->rx[i].packet_id == packet_id)
            return &l->rx[i];
    return NULL;
}

/* A free slot, after forgetting stale ones; the oldest goes if none is free. */
static struct RxSlot *rx_new(LaneObject *l, long long now)
{
    if (l->rx == NULL && (l->rx = PyMem_Calloc(RX_SLOTS, sizeof(struct RxSlot))) == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    struct RxSlot *free_slot = NULL, *oldest = NULL;
    for (int i = 0; i < RX_SLOTS; ++i) {
        struct RxSlot *r = &l->rx[i];
        if (r->used && now - r->created > RX_TIMEOUT)
            r->used = 0;
        if (!r->used) {
            if (free_slot == NULL)
                free_slot = r;
        } else if (oldest == NULL || r->created < oldest->created) {
            oldest = r;
        }
    }
    struct RxSlot *r = free_slot ? free_slot : oldest;
    r->used = 1;
    r->total = 0;
    r->have = 0;
    r->used_bytes = 0;
    r->created = now;
    return r;
}

static void rx_put(struct RxSlot *r, int piece, const unsigned char *p, size_t n)
{
    r->start[piece] = r->used_bytes;
    r->len[piece] = n;
    memcpy(r->buf + r->used_bytes, p, n);
    r->used_bytes += n;
    r->have |= 1u << piece;
}

/* Once every piece is here: the packet, taken or handed to the general path whole. */
static PyObject *rx_complete(LaneObject *l, struct RxSlot *r, PyObject *now)
{
    unsigned char whole[MAX_PACKET_LENGTH];
    size_t n = 0;
    if (r->total == 0 || r->have != (1u << r->total) - 1)
        Py_RETURN_TRUE; /* kept until the rest arrives */
    r->used = 0;
    for (int i = 0; i < r->total; ++i) { /* fits: rx_put's callers keep used_bytes in bounds */
        memcpy(whole + n, r->buf + r->start[i], r->len[i]);
        n += r->len[i];
    }
    Session *s = find(l, r->source);
    if (s != NULL) {
        int declined;
        PyObject *taken = take(l, s, now, whole, n, 0, &declined);
        if (taken != NULL || !declined)
            return taken;
    }
    return Py_BuildValue("(y#)", (const char *)whole, (Py_ssize_t)n);
}

/* A FRAGMENTED head from session `s` over its path. */
static PyObject *head_in(LaneObject *l, Session *s, PyObject *now, const unsigned char *d, size_t n)
{
    const uint64_t packet_id = be(d, 8);
    if (is_orphan(l, packet_id))
        Py_RETURN_NONE; /* its fragments went the general way before it */
    if (count_piece(l) < 0) /* the lane's from here on */
        return NULL;
    if (rx_find(l, packet_id) != NULL)
        Py_RETURN_TRUE; /* a duplicate head: dropped */
    const long long t = PyLong_AsLongLong(now);
    if (t == -1 && PyErr_Occurred())
        return NULL;
    struct RxSlot *r = rx_new(l, t);
    if (r == NULL)
        return NULL;
    r->packet_id = packet_id;
    r->source = s->address;
    rx_put(r, 0, d, n);
    return rx_complete(l, r, now);
}

/* A fragment: the lane's if the lane holds its head (see the top of this file). */
static PyObject *fragment_in(LaneObject *l, PyObject *now, const unsigned char *d, size_t n)
{
    /* (Its hop count does not matter: like the Reassembler, the lane joins the pieces it
     * holds a head for, and the MAC over the whole packet decides.) */
    if (n <= FRAGMENT_HEAD || be(d + IDX_DEST, 5) != l->me)
        Py_RETURN_NONE;
    const uint64_t packet_id = be(d, 8);
    struct RxSlot *r = rx_find(l, packet_id);
    if (r == NULL) {
        add_orphan(l, packet_id);
        Py_RETURN_NONE;
    }
    if (count_piece(l) < 0) /* the lane's from here on */
        return NULL;
    const int total = d[14] >> 4, number = d[14] & 0x0f;
    if (total > MAX_FRAGMENTS || total < 2 || number == 0 || number >= total || (r->total && r->total != total) ||
        (r->have & (1u << number)))
        Py_RETURN_TRUE; /* malformed, mismatched or duplicate: dropped, as the Reassembler does */
    if (r->used_bytes + n - FRAGMENT_HEAD > MAX_PACKET_LENGTH) {
        r->used = 0; /* longer than any packet: dropped, as the Reassembler does */
        Py_RETURN_TRUE;
    }
    r->total = total;
    rx_put(r, number, d + FRAGMENT_HEAD, n - FRAGMENT_HEAD);
    return rx_complete(l, r, now);
}

#endif /* ZTCORE_LANE_FRAGMENTS_H */
