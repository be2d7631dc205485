#include "net/filter.h"

#include <arpa/inet.h>
#include <string.h>

#define ETH_HEADER 14
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define PROTO_TCP 6
#define PROTO_UDP 17
#define TCP_SYN 0x02
#define TCP_ACK 0x10
#define NAT_NET 0x0a000200u  /* 10.0.2.0/24, host order */
#define NAT_HOST 0x0a000202u /* 10.0.2.2: the host's loopback, through the NAT */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool in_allowlist(const struct vm_net_config *cfg, uint32_t dst)
{
    for (unsigned i = 0; i < cfg->allow_count; i++)
        if ((htonl(dst) & cfg->allow[i].mask) == cfg->allow[i].addr)
            return true;
    return false;
}

static bool forwarded_udp_port(const struct vm_net_config *cfg, uint16_t port)
{
    for (unsigned i = 0; i < cfg->forward_count; i++)
        if (cfg->forwards[i].udp && cfg->forwards[i].guest_port == port)
            return true;
    return false;
}

/* To the host: what answers a forward, never what opens a connection. */
static bool to_host_allowed(const struct vm_net_config *cfg, const uint8_t *ip, size_t ihl,
                            size_t ip_len)
{
    const uint8_t *l4 = ip + ihl;
    size_t l4_len = ip_len - ihl;

    if (be32(ip + 4) & 0x1fff)
        return true; /* a later fragment: nothing without its first */
    if (ip[9] == PROTO_TCP)
        return l4_len >= 14 && !((l4[13] & TCP_SYN) && !(l4[13] & TCP_ACK));
    if (ip[9] == PROTO_UDP)
        return l4_len >= 8 && forwarded_udp_port(cfg, (uint16_t)(l4[0] << 8 | l4[1]));
    return false;
}

bool net_egress_allowed(const struct vm_net_config *cfg, const uint8_t *frame, size_t len)
{
    const uint8_t *ip = frame + ETH_HEADER;
    size_t ihl, ip_len;
    uint32_t dst;

    if (cfg->allow_count == 0)
        return true;
    if (len < ETH_HEADER)
        return false;
    switch (frame[12] << 8 | frame[13]) {
    case ETHERTYPE_ARP: return true;
    case ETHERTYPE_IPV4: break;
    default: return false;
    }
    ip_len = len - ETH_HEADER;
    ihl = ip_len >= 20 ? (size_t)(ip[0] & 0xf) * 4 : 0;
    if (ip_len < 20 || (ip[0] >> 4) != 4 || ihl < 20 || ihl > ip_len)
        return false;
    dst = be32(ip + 16);
    if (in_allowlist(cfg, dst) || dst == 0xffffffffu)
        return true;
    if (dst == NAT_HOST)
        return to_host_allowed(cfg, ip, ihl, ip_len);
    return (dst & 0xffffff00u) == NAT_NET;
}
