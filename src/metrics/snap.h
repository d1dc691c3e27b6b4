/* The snapshot structure, shared by the dump code and the metrics service. */
#ifndef FERRY_SNAP_H
#define FERRY_SNAP_H

#include "ferry/metrics.h"

#define SNAP_COUNTERS_MAX 256
#define SNAP_NAME_BYTES   64
#define SNAP_HISTS_MAX    8

struct ferry_metrics_snap {
	uint64_t ts_ns;
	int ncounters, nhists;
	struct {
		char name[SNAP_NAME_BYTES];
		uint64_t value;
	} c[SNAP_COUNTERS_MAX];
	struct {
		char name[SNAP_NAME_BYTES];
		ferry_hist h;
	} h[SNAP_HISTS_MAX];
};

ferry_metrics_snap *ferry__metrics_snap_dup(const ferry_metrics_snap *s);

#endif
