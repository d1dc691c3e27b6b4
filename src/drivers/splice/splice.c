/* splice: the tcp driver with the zero-copy file path on. File-region
 * chunks of a message go disk -> socket with sendfile(2); a body the
 * transport sends to an fd (ferry_call_into_fd) goes socket -> pipe -> fd
 * with splice(2), provided the transport asked for exact header reads so
 * no body byte was read ahead into user memory. Where the fd refuses
 * splice (O_APPEND files, some descriptor types) the rest of that body is
 * copied, and counted (tcp.splice_fallbacks, tcp.rx_sink_copy_bytes). */
#include "drivers/tcp/tcp.h"

static int splice_open(ferry_ep *ep, const ferry_loc *loc, unsigned flags)
{
	return ferry__tcp_open_mode(ep, loc, flags, true);
}

const ferry_driver_ops ferry__splice_driver = {
        .name = "splice",
        .kind = FERRY_DRIVER_STREAM,
        .wrapper = false,
        .ep_size = FERRY_TCP_EP_BYTES,
        .key_tables = ferry__tcp_key_tables,
        .probe = NULL,
        .open = splice_open,
        .stream = &ferry__tcp_stream_ops,
};
