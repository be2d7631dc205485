/* smolvm-net's system call filter: what its process may still do once
 * libslirp parses the guest's frames (the NAT's sockets, reading the host's
 * resolver settings), and nothing more (no program run, no process made,
 * no file written, no unix socket). A forbidden call ends the helper with
 * one line on stderr; the VM's link goes down. */
#ifndef SMOLVM_NET_SLIRP_SECCOMP_H
#define SMOLVM_NET_SLIRP_SECCOMP_H

/* Installs it in this (single-threaded) process: 0, or a negative errno. */
int slirp_seccomp_install(void);

#endif
