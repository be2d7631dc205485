/* The guest network's options, as the command line and a bundle's config
 * say them: --net MODE, -p [HOSTIP:]HOSTPORT:GUESTPORT[/udp], --mac. Each
 * parser takes one option's text and fills struct vm_net_config
 * (core/config.h); a bad value is one message, -EINVAL. */
#ifndef SMOLVM_NET_CONFIG_H
#define SMOLVM_NET_CONFIG_H

#include <jansson.h>
#include <stddef.h>

#include "core/config.h"

/* One network option by its long name ("net", "publish", "mac"), as the
 * CLI's option tables call it. */
int net_parse_option(const char *name, const char *arg, struct vm_net_config *net)
    __attribute__((warn_unused_result));
/* "none", "user", "user,restrict", "tap=IFNAME". */
int net_parse_mode(const char *arg, struct vm_net_config *net) __attribute__((warn_unused_result));
/* One more port forward (docker's -p syntax; TCP unless /udp). */
int net_parse_forward(const char *spec, struct vm_net_config *net)
    __attribute__((warn_unused_result));
/* A unicast MAC, six hex pairs separated by ':'. */
int net_parse_mac(const char *arg, struct vm_net_config *net) __attribute__((warn_unused_result));
/* A forward as net_parse_forward() reads it back ("127.0.0.1:8080:80/tcp"). */
void net_format_forward(const struct vm_port_forward *f, char *out, size_t size);
/* Forwards that need the user-mode NAT, and duplicate host ports. */
int net_config_check(const struct vm_net_config *net) __attribute__((warn_unused_result));
/* A bundle's network with the forwards of start -p instead of its own (when
 * from has any). */
int net_replace_forwards(struct vm_net_config *net, const struct vm_net_config *from)
    __attribute__((warn_unused_result));
/* The MAC the guest sees: the pinned one, or a random locally administered
 * one (52:54:00:xx:xx:xx, as QEMU's). */
void net_choose_mac(const struct vm_net_config *net, uint8_t mac[6]);

/* The "net" object of a bundle's config, and back (hostile text refused
 * with a message; a missing object means no network). */
json_t *net_config_to_json(const struct vm_net_config *net);
int net_config_from_json(json_t *o, struct vm_net_config *net) __attribute__((warn_unused_result));

#endif
