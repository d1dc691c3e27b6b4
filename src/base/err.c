/* Error names and descriptions, generated from the one X-macro in err.h.
 * -errno values are described by glibc's static tables (no buffers). */
#include <string.h>

#include "ferry/err.h"

const char *ferry_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define FERRY_ERR_DESC_(name, off, desc)                                                 \
	case FERRY_##name:                                                               \
		return desc;
		FERRY_ERRORS(FERRY_ERR_DESC_)
#undef FERRY_ERR_DESC_
	default:
		break;
	}
	if (err < 0 && err > -FERRY_ERR_BASE) {
		const char *d = strerrordesc_np(-err);
		if (d != NULL)
			return d;
	}
	return "unknown error";
}

const char *ferry_err_name(int err)
{
	switch (err) {
	case 0:
		return "OK";
#define FERRY_ERR_NAME_(name, off, desc)                                                 \
	case FERRY_##name:                                                               \
		return "FERRY_" #name;
		FERRY_ERRORS(FERRY_ERR_NAME_)
#undef FERRY_ERR_NAME_
	default:
		break;
	}
	if (err < 0 && err > -FERRY_ERR_BASE) {
		const char *n = strerrorname_np(-err);
		if (n != NULL)
			return n;
	}
	return "EUNKNOWN";
}
