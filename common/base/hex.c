/* Hex text: see hex.h. */
#include "common/base/hex.h"

#include <string.h>

void
coffer_hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

int
coffer_hex_digit(char c)
{
	if (c >= '0' && c <= '9') {
		return (c - '0');
	}
	if (c >= 'a' && c <= 'f') {
		return (c - 'a' + 10);
	}
	if (c >= 'A' && c <= 'F') {
		return (c - 'A' + 10);
	}
	return (-1);
}

bool
coffer_hex_is_lower(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
			return (false);
		}
	}
	return (true);
}

bool
coffer_hex_to_bytes(const char *hex, size_t hexlen, uint8_t *out, size_t n)
{
	if (hex == NULL || hexlen != 2 * n) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		int hi = coffer_hex_digit(hex[2 * i]);
		int lo = coffer_hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			return (false);
		}
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return (true);
}

int
coffer_hex_decode(const char *hex, uint8_t *out, size_t outlen, coffer_err *err)
{
	if (hex == NULL) {
		return (coffer_err_set(err, COFFER_EINVAL, "missing hex value"));
	}
	/* strnlen bounds the scan, so an unterminated or huge input costs at
	 * most 2 * outlen + 1 bytes of reading. */
	size_t n = strnlen(hex, 2 * outlen + 1);
	if (n != 2 * outlen) {
		coffer_err_set(err, COFFER_EINVAL,
		    "hex value has %s%zu digits, expected exactly %zu",
		    n > 2 * outlen ? "more than " : "", n > 2 * outlen ? 2 * outlen : n,
		    2 * outlen);
		coffer_err_hint(
		    err, "give the full value as %zu hex digits (%zu bytes)", 2 * outlen, outlen);
		return (COFFER_EINVAL);
	}
	for (size_t i = 0; i < outlen; i++) {
		int hi = coffer_hex_digit(hex[2 * i]);
		int lo = coffer_hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			size_t at = hi < 0 ? 2 * i : 2 * i + 1;
			unsigned char bad = (unsigned char)hex[at];
			coffer_err_set(err, COFFER_EINVAL,
			    "hex value has a non-hex character (0x%02x) at position %zu", bad,
			    at + 1);
			coffer_err_hint(err, "use only the digits 0-9 and a-f (or A-F)");
			return (COFFER_EINVAL);
		}
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return (0);
}
