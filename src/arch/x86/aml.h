/* A tiny AML (ACPI Machine Language) writer: just what smolvm's DSDT says,
 * encoded per the ACPI spec, chapter 20. Writes into a caller's buffer and
 * records overflow instead of writing past it. */
#ifndef SMOLVM_ARCH_X86_AML_H
#define SMOLVM_ARCH_X86_AML_H

#include <stddef.h>
#include <stdint.h>

struct aml {
    uint8_t *buf;
    size_t len;
    size_t cap;
    int overflow;
};

void aml_bytes(struct aml *a, const void *data, size_t n);
void aml_byte(struct aml *a, uint8_t b);
/* An integer with the shortest encoding (Zero, One, Byte/Word/DWord/QWord). */
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* A compressed EISA id ("PNP0501") as a DWord integer; -1 if malformed. */
int aml_eisa_id(struct aml *a, const char *id);
/* A NameString of exactly four characters, e.g. "_HID". */
void aml_name_seg(struct aml *a, const char *seg4);

/* Opens a PkgLength-framed body after an opcode; aml_close() encodes the
 * length once the body is written. Returns a mark for aml_close(). */
size_t aml_open(struct aml *a);
void aml_close(struct aml *a, size_t mark);

#define AML_NAME_OP 0x08
#define AML_PACKAGE_OP 0x12
#define AML_BUFFER_OP 0x11
#define AML_SCOPE_OP 0x10
#define AML_EXT_OP 0x5b
#define AML_DEVICE_OP 0x82 /* after AML_EXT_OP */
#define AML_METHOD_OP 0x14
#define AML_NOTIFY_OP 0x86

#endif
