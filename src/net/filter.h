/* --net user,allow=CIDR...: the guest's outbound traffic checked in the
 * VMM, on the bytes the NIC copied out of guest memory, before the NAT sees
 * them: a guest cannot talk past it. */
#ifndef SMOLVM_NET_FILTER_H
#define SMOLVM_NET_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

/* Whether a frame the guest sends may go out. With no allowlist every frame
 * may. With one: ARP; IPv4 to an allowed network; to the NAT's own network
 * (DHCP, DNS at 10.0.2.3), except new connections to the host at 10.0.2.2
 * (TCP SYN, UDP but from a forwarded port: replies on -p forwards pass);
 * nothing else (IPv6, other protocols, malformed headers). */
bool net_egress_allowed(const struct vm_net_config *cfg, const uint8_t *frame, size_t len);

#endif
