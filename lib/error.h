/* error.h - the thread's last error message, for the calls that fail with no
 * object to keep it in (see ferry_last_errmsg in ferry.h). */
#ifndef FERRY_ERROR_H
#define FERRY_ERROR_H

/* printf-style; "" (or a NULL fmt) clears it. */
void ferry__last_errmsg_set(const char *fmt, ...)
        __attribute__((format(printf, 1, 2)));

#endif
