#include <stdarg.h>
#include <stdio.h>

#include "error.h"
#include "ferry.h"

const char *ferry_strerror(int code)
{
	switch (code) {
#define FERRY_X_(name, value, text)                                            \
	case value:                                                            \
		return text;
		FERRY_ERROR_TABLE(FERRY_X_)
#undef FERRY_X_
	default:
		return "unknown error";
	}
}

const char *ferry_error_name(int code)
{
	switch (code) {
#define FERRY_X_(name, value, text)                                            \
	case value:                                                            \
		return #name;
		FERRY_ERROR_TABLE(FERRY_X_)
#undef FERRY_X_
	default:
		return "FERRY_EUNKNOWN";
	}
}

static _Thread_local char last_errmsg[FERRY_ERRMSG_SIZE];

void ferry__last_errmsg_set(const char *fmt, ...)
{
	last_errmsg[0] = '\0';
	if (!fmt)
		return;
	FERRY__FORMAT(last_errmsg, fmt);
}

const char *ferry_last_errmsg(void)
{
	return last_errmsg;
}

const char *ferry_version(void)
{
	return FERRY_VERSION_STRING;
}
