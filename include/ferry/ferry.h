/** @file
 * ferry: reliable RPC over swappable drivers. Umbrella header. */
#ifndef FERRY_H
#define FERRY_H
#include "err.h"
#include "buf.h"
#include "rpc.h"
#include "metrics.h"
#endif
