#include "net/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util/err.h"

/* An interface name the kernel takes: 1-15 of [A-Za-z0-9_.-], not "." or "..". */
static bool tap_name_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n >= sizeof(((struct vm_net_config *)0)->tap_name) || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return false;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/* A.B.C.D or A.B.C.D/N. */
static int parse_cidr(const char *text, struct vm_net_allow *a)
{
    char addr[INET_ADDRSTRLEN];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    unsigned long bits = 32;
    struct in_addr in;
    char *end;

    if (n >= sizeof(addr))
        return -1;
    memcpy(addr, text, n);
    addr[n] = '\0';
    if (inet_pton(AF_INET, addr, &in) != 1)
        return -1;
    if (slash) {
        errno = 0;
        bits = strtoul(slash + 1, &end, 10);
        if (errno || end == slash + 1 || *end || bits > 32 || slash[1] == '-' || slash[1] == '+')
            return -1;
    }
    a->mask = bits ? htonl(~0u << (32 - bits)) : 0;
    a->addr = in.s_addr & a->mask;
    return 0;
}

/* The options after "user": restrict, allow=CIDR (repeatable). */
static int parse_user_options(const char *arg, const char *opts, struct vm_net_config *net)
{
    char copy[512], *save = NULL, *opt;

    if (strlen(opts) >= sizeof(copy))
        return err_plain(EINVAL, "--net: '%.40s...' is too long", arg);
    snprintf(copy, sizeof(copy), "%s", opts);
    for (opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        if (strcmp(opt, "restrict") == 0) {
            net->restrict_outbound = true;
        } else if (strncmp(opt, "allow=", 6) == 0) {
            if (net->allow_count == VM_MAX_NET_ALLOW)
                return err_plain(EINVAL, "--net: more than %d allow=", VM_MAX_NET_ALLOW);
            if (parse_cidr(opt + 6, &net->allow[net->allow_count]) < 0)
                return err_plain(EINVAL, "--net: allow='%s' is not an IPv4 address or "
                                         "A.B.C.D/N", opt + 6);
            net->allow_count++;
        } else {
            return err_plain(EINVAL, "--net: unknown user option '%s' (restrict, allow=CIDR)",
                             opt);
        }
    }
    if (net->restrict_outbound && net->allow_count)
        return err_plain(EINVAL, "--net: restrict allows nothing out; allow= lists what may go");
    return 0;
}

int net_parse_mode(const char *arg, struct vm_net_config *net)
{
    net->restrict_outbound = false;
    net->allow_count = 0;
    if (strcmp(arg, "none") == 0) {
        net->mode = VM_NET_NONE;
    } else if (strcmp(arg, "user") == 0) {
        net->mode = VM_NET_USER;
    } else if (strncmp(arg, "user,", 5) == 0 && arg[5]) {
        net->mode = VM_NET_USER;
        return parse_user_options(arg, arg + 5, net);
    } else if (strncmp(arg, "tap=", 4) == 0 && tap_name_ok(arg + 4)) {
        net->mode = VM_NET_TAP;
        snprintf(net->tap_name, sizeof(net->tap_name), "%s", arg + 4);
    } else {
        return err_plain(EINVAL, "--net: '%s' is not none, user[,restrict|,allow=CIDR...] or "
                                 "tap=IFNAME", arg);
    }
    return 0;
}

/* A decimal port 1..65535, the whole of [s, end). */
static int parse_port(const char *s, const char *end, uint16_t *port)
{
    unsigned long v = 0;

    if (s == end || end - s > 5)
        return -1;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

static int parse_forward(const char *spec, struct vm_port_forward *f)
{
    char addr[INET_ADDRSTRLEN];
    const char *slash = strchr(spec, '/'), *end = slash ? slash : spec + strlen(spec);
    const char *last = NULL, *first = NULL;
    struct in_addr in;

    memset(f, 0, sizeof(*f));
    if (slash && strcmp(slash, "/udp") != 0 && strcmp(slash, "/tcp") != 0)
        return -1;
    f->udp = slash && strcmp(slash, "/udp") == 0;
    for (const char *p = spec; p < end; p++)
        if (*p == ':') {
            first = first ? first : p;
            last = p;
        }
    if (!last || parse_port(last + 1, end, &f->guest_port) < 0)
        return -1;
    if (first == last) /* HOSTPORT:GUESTPORT */
        return parse_port(spec, last, &f->host_port);
    /* HOSTIP:HOSTPORT:GUESTPORT: the host port sits between the last two colons. */
    const char *mid = last - 1;
    while (*mid != ':')
        mid--;
    if (parse_port(mid + 1, last, &f->host_port) < 0 || (size_t)(mid - spec) >= sizeof(addr))
        return -1;
    memcpy(addr, spec, (size_t)(mid - spec));
    addr[mid - spec] = '\0';
    if (inet_pton(AF_INET, addr, &in) != 1)
        return -1;
    f->host_addr = in.s_addr;
    return 0;
}

int net_parse_forward(const char *spec, struct vm_net_config *net)
{
    struct vm_port_forward f;

    if (parse_forward(spec, &f) < 0)
        return err_plain(EINVAL, "-p: '%s' is not [HOSTIP:]HOSTPORT:GUESTPORT[/udp] "
                                 "(IPv4, ports 1-65535)", spec);
    if (net->forward_count == VM_MAX_PORT_FORWARDS)
        return err_plain(EINVAL, "-p: more than %d port forwards", VM_MAX_PORT_FORWARDS);
    net->forwards[net->forward_count++] = f;
    return 0;
}

void net_format_forward(const struct vm_port_forward *f, char *out, size_t size)
{
    char addr[INET_ADDRSTRLEN];
    struct in_addr in = {.s_addr = f->host_addr};

    inet_ntop(AF_INET, &in, addr, sizeof(addr));
    snprintf(out, size, "%s:%u:%u/%s", addr, f->host_port, f->guest_port,
             f->udp ? "udp" : "tcp");
}

int net_parse_mac(const char *arg, struct vm_net_config *net)
{
    unsigned v[6];
    char tail;

    if (strlen(arg) != 17 ||
        sscanf(arg, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &tail) != 6)
        return err_plain(EINVAL, "--mac: '%s' is not six hex pairs like 52:54:00:12:34:56", arg);
    for (int i = 0; i < 6; i++)
        if (arg[3 * i + 2] != (i == 5 ? '\0' : ':') || v[i] > 0xff)
            return err_plain(EINVAL, "--mac: '%s' is not six hex pairs like 52:54:00:12:34:56",
                             arg);
    if (v[0] & 1)
        return err_plain(EINVAL, "--mac: %s is a multicast address", arg);
    for (int i = 0; i < 6; i++)
        net->mac[i] = (uint8_t)v[i];
    net->mac_set = true;
    return 0;
}

int net_parse_option(const char *name, const char *arg, struct vm_net_config *net)
{
    if (strcmp(name, "net") == 0)
        return net_parse_mode(arg, net);
    if (strcmp(name, "publish") == 0)
        return net_parse_forward(arg, net);
    if (strcmp(name, "mac") == 0)
        return net_parse_mac(arg, net);
    return err_plain(EINVAL, "--%s is not a network option", name);
}

int net_config_check(const struct vm_net_config *net)
{
    if (net->forward_count && net->mode != VM_NET_USER)
        return err_plain(EINVAL, "-p needs --net user");
    if ((net->restrict_outbound || net->allow_count) && net->mode != VM_NET_USER)
        return err_plain(EINVAL, "restrict and allow= are options of --net user");
    if (net->restrict_outbound && net->allow_count)
        return err_plain(EINVAL, "--net: restrict allows nothing out; allow= lists what may go");
    for (unsigned i = 0; i < net->forward_count; i++)
        for (unsigned j = 0; j < i; j++) {
            const struct vm_port_forward *a = &net->forwards[i], *b = &net->forwards[j];
            if (a->udp == b->udp && a->host_port == b->host_port &&
                (a->host_addr == b->host_addr || !a->host_addr || !b->host_addr))
                return err_plain(EINVAL, "-p: host port %u/%s is forwarded twice", a->host_port,
                                 a->udp ? "udp" : "tcp");
        }
    return 0;
}

int net_replace_forwards(struct vm_net_config *net, const struct vm_net_config *from)
{
    if (!from->forward_count)
        return 0;
    if (net->mode != VM_NET_USER)
        return err_plain(EINVAL, "-p: this bundle's VM has no user network (--net user)");
    net->forward_count = from->forward_count;
    memcpy(net->forwards, from->forwards, from->forward_count * sizeof(from->forwards[0]));
    return net_config_check(net);
}

void net_choose_mac(const struct vm_net_config *net, uint8_t mac[6])
{
    if (net->mac_set) {
        memcpy(mac, net->mac, 6);
        return;
    }
    mac[0] = 0x52;
    mac[1] = 0x54;
    mac[2] = 0x00;
    if (getrandom(mac + 3, 3, 0) != 3)
        memset(mac + 3, 0x12, 3); /* getrandom of 3 bytes does not fail after boot */
}

/* ---- JSON ---- */

static const char *mode_name(enum vm_net_mode m)
{
    /* An inherited fd is not saved. */
    return m == VM_NET_USER ? "user" : m == VM_NET_TAP ? "tap" : "none";
}

json_t *net_config_to_json(const struct vm_net_config *net)
{
    json_t *o = json_object(), *fwd = json_array();
    char text[64];

    json_object_set_new(o, "mode", json_string(mode_name(net->mode)));
    json_object_set_new(o, "restrict", json_boolean(net->restrict_outbound));
    if (net->mode == VM_NET_TAP)
        json_object_set_new(o, "tap", json_string(net->tap_name));
    if (net->allow_count) {
        json_t *allow = json_array();
        for (unsigned i = 0; i < net->allow_count; i++) {
            char addr[INET_ADDRSTRLEN];
            struct in_addr in = {.s_addr = net->allow[i].addr};
            inet_ntop(AF_INET, &in, addr, sizeof(addr));
            snprintf(text, sizeof(text), "%s/%d", addr, __builtin_popcount(net->allow[i].mask));
            json_array_append_new(allow, json_string(text));
        }
        json_object_set_new(o, "allow", allow);
    }
    if (net->mac_set) {
        snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", net->mac[0], net->mac[1],
                 net->mac[2], net->mac[3], net->mac[4], net->mac[5]);
        json_object_set_new(o, "mac", json_string(text));
    }
    for (unsigned i = 0; i < net->forward_count; i++) {
        net_format_forward(&net->forwards[i], text, sizeof(text));
        json_array_append_new(fwd, json_string(text));
    }
    json_object_set_new(o, "forwards", fwd);
    return o;
}

int net_config_from_json(json_t *o, struct vm_net_config *net)
{
    json_t *fwd = json_object_get(o, "forwards"), *v;
    json_t *restrict_ = json_object_get(o, "restrict");
    const char *mode = json_string_value(json_object_get(o, "mode"));
    json_t *mac = json_object_get(o, "mac"), *allow = json_object_get(o, "allow");
    size_t i;
    int r;

    memset(net, 0, sizeof(*net));
    net->fd = -1;
    if (!o)
        return 0;
    if (!json_is_object(o) || !mode || (restrict_ && !json_is_boolean(restrict_)) ||
        (mac && !json_is_string(mac)) || (fwd && !json_is_array(fwd)) ||
        (allow && !json_is_array(allow)))
        return err_plain(EINVAL, "config: bad \"net\"");
    if (strcmp(mode, "tap") == 0) {
        const char *tap = json_string_value(json_object_get(o, "tap"));
        char arg[32];
        if (!tap || strlen(tap) > 20)
            return err_plain(EINVAL, "config: bad \"net\" tap");
        snprintf(arg, sizeof(arg), "tap=%s", tap);
        if (net_parse_mode(arg, net) < 0)
            return err_plain(EINVAL, "config: bad \"net\" tap");
    } else if (strcmp(mode, "user") != 0 && strcmp(mode, "none") != 0) {
        return err_plain(EINVAL, "config: bad \"net\" mode");
    } else {
        net->mode = strcmp(mode, "user") == 0 ? VM_NET_USER : VM_NET_NONE;
    }
    net->restrict_outbound = json_is_true(restrict_);
    if (mac && (r = net_parse_mac(json_string_value(mac), net)) < 0)
        return err_plain(EINVAL, "config: bad \"net\" mac");
    if (fwd && json_array_size(fwd) > VM_MAX_PORT_FORWARDS)
        return err_plain(EINVAL, "config: more than %d \"net\" forwards", VM_MAX_PORT_FORWARDS);
    json_array_foreach(fwd, i, v) {
        if (!json_is_string(v) || net_parse_forward(json_string_value(v), net) < 0)
            return err_plain(EINVAL, "config: bad \"net\" forward %zu", i);
    }
    if (allow && json_array_size(allow) > VM_MAX_NET_ALLOW)
        return err_plain(EINVAL, "config: more than %d \"net\" allow", VM_MAX_NET_ALLOW);
    json_array_foreach(allow, i, v) {
        if (!json_is_string(v) || parse_cidr(json_string_value(v), &net->allow[i]) < 0)
            return err_plain(EINVAL, "config: bad \"net\" allow %zu", i);
        net->allow_count++;
    }
    if (net_config_check(net) < 0) {
        char why[160];
        snprintf(why, sizeof(why), "%s", err_msg());
        return err_plain(EINVAL, "config: \"net\": %s", why);
    }
    return 0;
}
