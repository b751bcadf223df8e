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

const char *ferry_version(void)
{
	return FERRY_VERSION_STRING;
}
