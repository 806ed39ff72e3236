/*
 * The Internet checksum (RFC 1071) for the package's C kernels that build or check IP
 * packets (ztcore.netstack._wire, ztcore._lane's echo offload). Python reference:
 * ztcore.netstack.frames.internet_checksum.
 */

#ifndef ZTCORE_INET_CHECKSUM_H
#define ZTCORE_INET_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

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

#endif /* ZTCORE_INET_CHECKSUM_H */
