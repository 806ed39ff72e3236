/*
 * The Internet checksum (RFC 1071) and the IPv4 header for the package's C kernels that
 * build or check IP packets (ztcore.netstack._wire, ztcore._lane's echo offload). Python
 * references: ztcore.netstack.frames.internet_checksum and build_ipv4.
 */

#ifndef ZTCORE_INET_H
#define ZTCORE_INET_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Add the big-endian 16-bit words of p[0..n) to `sum` (an odd last byte is zero-padded). */
static uint32_t sum16(const unsigned char *p, size_t n, uint32_t sum)
{
    for (; n > 1; p += 2, n -= 2)
        sum += ((uint32_t)p[0] << 8) | p[1];
    if (n)
        sum += (uint32_t)p[0] << 8;
    return sum;
}

/* The checksum of a sum: folded to 16 bits, one's complement (0 for data that checks out). */
static uint16_t fold16(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* A 20-byte IPv4 header without options, DF clear, its checksum computed, at p[0..20). */
static void put_ipv4_header(unsigned char *p, size_t total, unsigned ident, unsigned ttl, unsigned protocol,
                            const unsigned char src[4], const unsigned char dst[4])
{
    p[0] = 0x45;
    p[1] = 0;
    p[2] = (unsigned char)(total >> 8);
    p[3] = (unsigned char)total;
    p[4] = (unsigned char)(ident >> 8);
    p[5] = (unsigned char)ident;
    p[6] = p[7] = 0;
    p[8] = (unsigned char)ttl;
    p[9] = (unsigned char)protocol;
    p[10] = p[11] = 0;
    memcpy(p + 12, src, 4);
    memcpy(p + 16, dst, 4);
    const uint16_t ck = fold16(sum16(p, 20, 0));
    p[10] = (unsigned char)(ck >> 8);
    p[11] = (unsigned char)ck;
}

#endif /* ZTCORE_INET_H */
