/* error.h - the thread's last error message, for the calls that fail with no
 * object to keep it in (see ferry_last_errmsg in ferry.h). */
#ifndef FERRY_ERROR_H
#define FERRY_ERROR_H

#include <stdarg.h>
#include <stdio.h>

/* printf-style; "" (or a NULL fmt) clears it. */
void ferry__last_errmsg_set(const char *fmt, ...)
        __attribute__((format(printf, 1, 2)));

/* Inside a printf-style function ending in (fmt, ...): format its
 * arguments into the array buf (truncated to fit). */
#define FERRY__FORMAT(buf, fmt)                                                \
	do {                                                                   \
		va_list ferry_ap_;                                             \
		va_start(ferry_ap_, fmt);                                      \
		vsnprintf((buf), sizeof(buf), (fmt), ferry_ap_);               \
		va_end(ferry_ap_);                                             \
	} while (0)

#endif
