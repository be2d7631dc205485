/* Signed bundles: an ed25519 signature (nettle) over the section table,
 * which holds every section's SHA-256, so a bundle from elsewhere can be
 * checked against a key its user trusts before anything of it is used. */
#ifndef SMOLVM_BUNDLE_SIGNATURE_H
#define SMOLVM_BUNDLE_SIGNATURE_H

#include "bundle/bundle.h"

/* A new key pair: PREFIX.key (the private key: 128 hex digits, seed then
 * public key, 0600) and PREFIX.pub (the public key: 64 hex digits). Neither
 * may exist yet. */
int bundle_keygen(const char *prefix) __attribute__((warn_unused_result));

/* 0 when key_path holds a private key (not a public one, not damaged):
 * checked before a bundle to be signed is written. */
int bundle_check_signing_key(const char *key_path) __attribute__((warn_unused_result));

/* Adds the signature section over every section added so far, with the
 * private key in key_path: the last section before the commit. */
int bundle_sign(struct bundle_writer *w, const char *key_path) __attribute__((warn_unused_result));

/* The bundle at from, copied to to (its sections as stored, any signature
 * section of its own left out) and signed there with the private key in
 * key_path: a bundle written by a VMM that must not see the key (a jailed
 * VM's save --sign). to is written as bundle_writer_commit() writes. */
int bundle_sign_copy(const char *from, const char *to, const char *key_path)
    __attribute__((warn_unused_result));

/* 0 when b is signed by the public key in pub_path and no section listed
 * has changed since; else a message naming what is wrong. */
int bundle_check_signature(const struct bundle *b, const char *pub_path)
    __attribute__((warn_unused_result));

#endif
