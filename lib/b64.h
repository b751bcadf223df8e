/* b64.h - base64 (RFC 4648) for host keys, fingerprints and key files. */
#ifndef FERRY_B64_H
#define FERRY_B64_H

#include <stddef.h>
#include <stdint.h>

/* Encode n bytes into out (size >= ferry__b64_len(n) + 1); pad selects '='
 * padding.  Returns the string length. */
size_t ferry__b64_encode(char *out, const uint8_t *in, size_t n, int pad);
size_t ferry__b64_len(size_t n);
/* Decode, skipping whitespace; out must hold 3 * (len / 4) + 3 bytes.
 * Returns the decoded length, or -1 on a bad character. */
long ferry__b64_decode(uint8_t *out, const char *in, size_t len);

#endif
