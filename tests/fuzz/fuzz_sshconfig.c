/* fuzz_sshconfig - libFuzzer target for the ssh_config reader: any bytes
 * either parse or fail with a message naming a line; what parses holds
 * bounded, NUL-terminated values. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sshconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ferry__sshcfg c;
	char err[256];
	err[0] = '\0';
	int rc = ferry__sshcfg_parse(&c, (const char *)data, size, "fuzz",
	                             "myhost", err, sizeof(err));
	if (rc && rc != FERRY_EINVALID && rc != FERRY_ENOMEM)
		abort();
	if (rc == FERRY_EINVALID && strncmp(err, "fuzz line ", 10) != 0)
		abort();
	if (c.port < 0 || c.port > 65535 || c.connect_timeout_ms < 0 ||
	    c.identity_count > FERRY__SSHCFG_IDS)
		abort();
	const char *s[] = {c.hostname, c.user, c.known_hosts};
	for (size_t i = 0; i < 3; i++)
		if (s[i] && strlen(s[i]) >= 4096)
			abort();
	ferry__sshcfg_free(&c);
	return 0;
}
