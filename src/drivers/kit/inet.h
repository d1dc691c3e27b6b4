/* Internet addressing shared by the socket drivers (udp now, tcp later):
 * host/port keys to sockaddrs, and sockaddrs back to locator text. */
#ifndef FERRY_INET_H
#define FERRY_INET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "ferry/driver.h"

/* The host and port keys every socket driver accepts (its key_tables
 * list this one after its own). */
extern const ferry_loc_key ferry__inet_keys[];

/* Resolve loc's host and port keys (host may be a name, an IPv4 or an IPv6
 * address, with or without [brackets]). passive: a listener, where host
 * defaults to 127.0.0.1 and port to 0. FERRY_EBADLOC with a message naming
 * the bad key in err. */
int ferry__inet_resolve(const ferry_loc *loc, bool passive, int socktype,
                        struct sockaddr_storage *ss, socklen_t *len, char *err,
                        size_t err_len);
/* "host=ADDR,port=N" for sa. */
int ferry__inet_locator(const struct sockaddr *sa, char *out, size_t len);
/* Largest UDP payload on the path to sa (IP_MTU of a probe socket connected
 * to it), or 0 when unknown. */
unsigned ferry__inet_path_payload(const struct sockaddr *sa, socklen_t len);
/* Largest UDP payload through the interface that owns address sa (a
 * listener's own), or 0 when no interface has it (a wildcard). */
unsigned ferry__inet_if_payload(const struct sockaddr *sa);

#endif
